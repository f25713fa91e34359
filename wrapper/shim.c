/* The C half of the binding: macros of the host, given function form. */
#include "wrapper.h"

const char siptrace_shim_module_version[] = SER_FULL_VERSION;
const char siptrace_shim_module_flags[] = SER_COMPILE_FLAGS;
const unsigned int siptrace_shim_module_interface_ver = MODULE_INTERFACE_VER;

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

void *siptrace_shim_pkg_malloc(size_t size)
{
	return pkg_malloc(size);
}

void siptrace_shim_pkg_free(void *p)
{
	pkg_free(p);
}

void siptrace_shim_cfg_update(void)
{
	cfg_update();
}
