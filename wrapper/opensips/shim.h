/* What Rust cannot express of OpenSIPS's API: the module's version
 * strings, the log and allocator macros. */
#ifndef SIPTRACE_OS_SHIM_H
#define SIPTRACE_OS_SHIM_H

#include <stddef.h>

/* MODULE_VERSION's strings, built from the tree's defines. */
extern const char siptrace_os_version[];
extern const char siptrace_os_compile_flags[];
extern const char siptrace_os_scm_type[];
extern const char siptrace_os_scm_rev[];

/* One log line at `level`, always through a fixed "%.*s" format. */
int siptrace_os_log_enabled(int level);
void siptrace_os_log(int level, const char *text, int len);
/* A trace line to a `syslog` destination: `text` as it is, at `level`
 * with `facility`, through every log output OpenSIPS has. */
void siptrace_os_log_to(int facility, int level, const char *text, int len);
/* The core's log_facility and log_level, the defaults of `syslog`. */
int siptrace_os_log_facility(void);
int siptrace_os_log_level(void);

/* Shared memory, for state every process sees. */
void *siptrace_os_shm_malloc(size_t size);
void siptrace_os_shm_free(void *p);

#endif
