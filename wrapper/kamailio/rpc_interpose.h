/* The variadic functions of the rpc_t a traced RPC command gets (see
 * src/kamailio/host/rpc_interpose.rs, which builds the table). Each
 * forwards to the same function of the transport's own rpc_t, which
 * siptrace_rpc_original gives, and reports what passes to Rust. */
#ifndef SIPTRACE_RPC_INTERPOSE_H
#define SIPTRACE_RPC_INTERPOSE_H

struct rpc;

void siptrace_shim_rpc_fault(void *ctx, int code, char *fmt, ...);
int siptrace_shim_rpc_add(void *ctx, char *fmt, ...);
int siptrace_shim_rpc_scan(void *ctx, char *fmt, ...);
int siptrace_shim_rpc_rpl_printf(void *ctx, char *fmt, ...);
int siptrace_shim_rpc_struct_add(void *handle, char *fmt, ...);
int siptrace_shim_rpc_array_add(void *handle, char *fmt, ...);
int siptrace_shim_rpc_struct_scan(void *handle, char *fmt, ...);
int siptrace_shim_rpc_struct_printf(void *handle, char *name, char *fmt, ...);

/* In Rust. The transport's rpc_t for the running command, or NULL. */
const struct rpc *siptrace_rpc_original(void);
/* A value a scan wrote at `p` for format character `c`. */
void siptrace_rpc_scanned(char c, const void *p);
/* A scan that failed or found fewer values than it asked for. */
void siptrace_rpc_scan_failed(void);
/* A value given to an add for format character `c`, at `p`; `name` is
 * its member name in a structure, or NULL. */
void siptrace_rpc_added(const char *name, char c, const void *p);
/* Text printed into the reply; `name` as above. */
void siptrace_rpc_printed(const char *name, const char *text, int len);
void siptrace_rpc_fault_seen(int code, const char *text, int len);

#endif
