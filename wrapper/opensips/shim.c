/* The C half of the OpenSIPS binding; see shim.h. */
#include "wrapper.h"
#include "version.h"
#include "mem/shm_mem.h"

const char siptrace_os_version[] = OPENSIPS_FULL_VERSION;
const char siptrace_os_compile_flags[] = OPENSIPS_COMPILE_FLAGS;
const char siptrace_os_scm_type[] = VERSIONTYPE;
const char siptrace_os_scm_rev[] = THISREVISION;

int siptrace_os_log_enabled(int level)
{
	return is_printable(level);
}

void siptrace_os_log(int level, const char *text, int len)
{
	LM_GEN(level, "%.*s\n", len, text);
}

void siptrace_os_log_to(int facility, int level, const char *text, int len)
{
	LM_GEN2(facility, level, "%.*s", len, text);
}

int siptrace_os_log_facility(void)
{
	return log_facility;
}

int siptrace_os_log_level(void)
{
	return log_level ? *log_level : L_NOTICE;
}

void *siptrace_os_shm_malloc(size_t size)
{
	return shm_malloc(size);
}

void siptrace_os_shm_free(void *p)
{
	shm_free(p);
}
