/* Values and functions of Kamailio's that are macros, given a name Rust
 * can link to: bindgen cannot expand a macro that expands to code, and the
 * version strings are built by the preprocessor from the tree's defines. */
#ifndef SIPTRACE_MACROS_H
#define SIPTRACE_MACROS_H

#include <stddef.h>

/* The strings the MODULE_VERSION macro gives a module. Rust exports them as
 * `module_version` and `module_flags`: C globals in a static library are not
 * exported from a Rust cdylib. */
extern const char siptrace_shim_module_version[];
extern const char siptrace_shim_module_flags[];

/* Logging through Kamailio's LOG machinery, always with a fixed "%.*s"
 * format. `func` is NUL-terminated and names the caller. */
void siptrace_shim_log(int level, const char *func, const char *text, int len);
int siptrace_shim_log_enabled(int level);

/* The shm and pkg allocator macros. */
void *siptrace_shim_shm_malloc(size_t size);
void siptrace_shim_shm_free(void *p);
void siptrace_shim_pkg_free(void *p);

/* The cfg_update() macro: a long-running process of a module calls it
 * now and then so that config changes reach it. */
void siptrace_shim_cfg_update(void);

/* For a process forked by a module process, outside Kamailio's process
 * table: joins the config framework with a config reference of its own
 * and no per-child callbacks. */
void siptrace_shim_cfg_worker_init(void);

#endif
