/* Kamailio's macros in function form (see macros.h): the version strings
 * the preprocessor builds, the log, allocator and config macros. They must
 * be C because they are macros, and LOG_FX is variadic as well. */
#include "wrapper.h"

const char siptrace_shim_module_version[] = SER_FULL_VERSION;
const char siptrace_shim_module_flags[] = SER_COMPILE_FLAGS;

void siptrace_shim_log(int level, const char *func, const char *text, int len)
{
	LOG_FX(DEFAULT_FACILITY, level, NULL, MOD_NAME ": ", func, "%.*s\n", len,
			text);
}

int siptrace_shim_log_enabled(int level)
{
	return is_printable(level);
}

void *siptrace_shim_shm_malloc(size_t size)
{
	return shm_malloc(size);
}

void siptrace_shim_shm_free(void *p)
{
	shm_free(p);
}

void siptrace_shim_pkg_free(void *p)
{
	pkg_free(p);
}

void siptrace_shim_cfg_update(void)
{
	cfg_update();
}

void siptrace_shim_cfg_worker_init(void)
{
	/* The reference to the config block inherited over fork belongs to the
	 * parent: forget it without releasing it, and take one of our own. */
	cfg_local = NULL;
	cfg_child_no_cb_init();
	cfg_update();
}
