/* The log hook (see log_hook.h). It must be C: Kamailio's log macros hand
 * each line to _ksr_slog_func as a printf format with its variadic
 * arguments, and the line is printed as the core would, with the core's
 * own variadic functions. */
#include "wrapper.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

int siptrace_shim_log_traced = 0;
static ksr_slog_f siptrace_prev_slog = NULL;

/* Prints the line as the classic path would (or hands it to the
 * structured-logging engine that was set before the hook), and when the
 * process works on a call that traces its log lines, gives Rust the text. */
static void siptrace_slog(ksr_logdata_t *kld, const char *fmt, ...)
{
	char stack_buf[2048];
	char *text = stack_buf;
	int len;
	va_list ap;
	const char *func = kld->v_func ? kld->v_func : "";
	const char *loc = kld->v_locinfo ? kld->v_locinfo : "";
	const char *lname = kld->v_lname ? kld->v_lname : "";

	va_start(ap, fmt);
	len = vsnprintf(stack_buf, sizeof(stack_buf), fmt, ap);
	va_end(ap);
	if(len < 0) {
		return;
	}
	if((size_t)len >= sizeof(stack_buf)) {
		/* Plain malloc: usable from any thread, and not Kamailio's pools,
		 * whose own log lines would come back here. */
		text = malloc((size_t)len + 1);
		if(text == NULL) {
			text = stack_buf;
			len = sizeof(stack_buf) - 1;
		} else {
			va_start(ap, fmt);
			vsnprintf(text, (size_t)len + 1, fmt, ap);
			va_end(ap);
		}
	}
	if(siptrace_shim_log_traced) {
		siptrace_log_line(kld->v_level, lname, loc, func, text, len);
	}
	if(siptrace_prev_slog) {
		siptrace_prev_slog(kld, "%.*s", len, text);
	} else if(log_stderr) {
		if(log_color)
			dprint_color(kld->v_level);
		fprintf(stderr, "%2d(%d) %s: %.*s%s%s%s%.*s", process_no, my_pid(),
				lname, LOGV_PREFIX_LEN, LOGV_PREFIX_STR, loc, func,
				*func ? _FUNC_SUFFIX_ : "", len, text);
		if(log_color)
			dprint_color_reset();
	} else {
		_km_log_func(kld->v_facility, "%s: %.*s%s%s%s%.*s", lname,
				LOGV_PREFIX_LEN, LOGV_PREFIX_STR, loc, func,
				*func ? _FUNC_SUFFIX_ : "", len, text);
	}
	if(text != stack_buf) {
		free(text);
	}
}

ksr_slog_f siptrace_shim_log_hook(void)
{
	return siptrace_slog;
}

void siptrace_shim_log_hook_chain(ksr_slog_f prev)
{
	siptrace_prev_slog = prev;
}
