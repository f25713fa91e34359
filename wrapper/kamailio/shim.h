/* What Rust cannot express itself: values of the host's macros. */
#ifndef SIPTRACE_SHIM_H
#define SIPTRACE_SHIM_H

#include <stddef.h>

/* The strings the MODULE_VERSION macro gives a module. Rust exports them as
 * `module_version` and `module_flags`: C globals in a static library are not
 * exported from a Rust cdylib. */
extern const char siptrace_shim_module_version[];
extern const char siptrace_shim_module_flags[];
extern const unsigned int siptrace_shim_module_interface_ver;

/* Logging through Kamailio's LOG machinery, always with a fixed "%.*s"
 * format. `func` is NUL-terminated and names the caller. */
void siptrace_shim_log(int level, const char *func, const char *text, int len);
int siptrace_shim_log_enabled(int level);

/* The pkg and shm allocator macros. */
void *siptrace_shim_shm_malloc(size_t size);
void siptrace_shim_shm_free(void *p);
void *siptrace_shim_pkg_malloc(size_t size);
void siptrace_shim_pkg_free(void *p);

/* The cfg_update() macro: a long-running process of a module calls it
 * now and then so that config changes reach it. */
void siptrace_shim_cfg_update(void);

/* For a process forked by a module process, outside Kamailio's process
 * table: joins the config framework with a config reference of its own
 * and no per-child callbacks. */
void siptrace_shim_cfg_worker_init(void);

/* The log hook: every printed log line passes through it. While
 * siptrace_shim_log_traced is set, each line is also handed to
 * siptrace_log_line (in Rust) with its level, level name, location prefix,
 * function and text. */
extern int siptrace_shim_log_traced;
void siptrace_shim_log_hook_install(void);
void siptrace_log_line(int level, const char *lname, const char *loc,
		const char *func, const char *text, int len);

/* RPC commands: siptrace_shim_rpc_wrap fills `out` with functions that
 * forward to those of `orig` (NULL where it has none) and report what
 * passes to the Rust functions below. Which original they forward to is
 * set, per thread, by siptrace_shim_rpc_enter, which returns the previous
 * one for siptrace_shim_rpc_leave to put back. */
struct rpc;
const struct rpc *siptrace_shim_rpc_enter(const struct rpc *orig);
void siptrace_shim_rpc_leave(const struct rpc *prev);
void siptrace_shim_rpc_wrap(const struct rpc *orig, struct rpc *out);

#define SIPTRACE_RPC_SCAN_FAILED 1
#define SIPTRACE_RPC_DELAYED 2
/* A scanned parameter, as text; is_str: it was a string. */
void siptrace_rpc_param(const char *text, int len, int is_str);
/* A value added to the reply; `name` is its member name in a structure,
 * or NULL. */
void siptrace_rpc_value(
		const char *name, int name_len, const char *text, int len, int is_str);
void siptrace_rpc_fault_seen(int code, const char *text, int len);
void siptrace_rpc_event(int what);

#endif
