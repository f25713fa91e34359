/* The log hook: every printed log line passes through it once
 * src/kamailio/host/log_hook.rs has made siptrace_shim_log_hook() the
 * core's structured-log function (and chained the one it replaces). While
 * siptrace_shim_log_traced is set, each line is also handed to
 * siptrace_log_line (in Rust, src/kamailio/host/log_hook.rs) with its
 * level, level name, location prefix, function and text. */
#ifndef SIPTRACE_LOG_HOOK_H
#define SIPTRACE_LOG_HOOK_H

extern int siptrace_shim_log_traced;
ksr_slog_f siptrace_shim_log_hook(void);
void siptrace_shim_log_hook_chain(ksr_slog_f prev);
void siptrace_log_line(int level, const char *lname, const char *loc,
		const char *func, const char *text, int len);

#endif
