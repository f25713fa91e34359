/* The C half of the binding: macros of the host, given function form. */
#include "wrapper.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

void siptrace_shim_cfg_worker_init(void)
{
	/* The reference to the config block inherited over fork belongs to the
	 * parent: forget it without releasing it, and take one of our own. */
	cfg_local = NULL;
	cfg_child_no_cb_init();
	cfg_update();
}

/* ---- Log lines of traced calls ----
 * Kamailio's log macros hand each line to _ksr_slog_func when it is set.
 * The hook below prints the line as the classic path would (or hands it to
 * the structured-logging engine that was set before it), and when the
 * process works on a call that traces its log lines, gives Rust the text. */

int siptrace_shim_log_traced = 0;
static ksr_slog_f siptrace_prev_slog = NULL;

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

void siptrace_shim_log_hook_install(void)
{
	if(_ksr_slog_func != siptrace_slog) {
		siptrace_prev_slog = _ksr_slog_func;
		_ksr_slog_func = siptrace_slog;
	}
}

/* ---- RPC commands ----
 * A traced command gets a table of these functions instead of its
 * transport's rpc_t. Each forwards to the transport's own function (the
 * "original", per thread, set by siptrace_shim_rpc_enter) and reports what
 * it sees to Rust: the parameters scanned, the values added to the reply,
 * a fault. Nothing here changes what the transport receives. */

static __thread const rpc_t *siptrace_rpc_orig = NULL;

const rpc_t *siptrace_shim_rpc_enter(const rpc_t *orig)
{
	const rpc_t *prev = siptrace_rpc_orig;
	siptrace_rpc_orig = orig;
	return prev;
}

void siptrace_shim_rpc_leave(const rpc_t *prev)
{
	/* The last original stays in place after the outermost command, for a
	 * command that would use its rpc_t after returning. */
	if(prev != NULL)
		siptrace_rpc_orig = prev;
}

/* Pointer arguments forwarded in one call; longer formats go in parts. */
#define SIPTRACE_RPC_PTRS 32

#define SIPTRACE_PTR_ARGS(p)                                                 \
	p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11], \
			p[12], p[13], p[14], p[15], p[16], p[17], p[18], p[19], p[20],     \
			p[21], p[22], p[23], p[24], p[25], p[26], p[27], p[28], p[29],     \
			p[30], p[31]

static int siptrace_rpc_is_modifier(char c)
{
	return c == '*' || c == '.';
}

/* Reports the value a scan wrote through `p` for format character `c`. */
static void siptrace_rpc_report_scanned(char c, void *p)
{
	char buf[64];
	int n = -1;
	if(p == NULL)
		return;
	switch(c) {
		case 'd':
			n = snprintf(buf, sizeof(buf), "%d", *(int *)p);
			break;
		case 'b':
		case 't':
		case 'u':
			n = snprintf(buf, sizeof(buf), "%u", *(unsigned int *)p);
			break;
		case 'f':
			n = snprintf(buf, sizeof(buf), "%g", *(double *)p);
			break;
		case 'l':
			n = snprintf(buf, sizeof(buf), "%ld", *(long *)p);
			break;
		case 'j':
			n = snprintf(buf, sizeof(buf), "%lu", *(unsigned long *)p);
			break;
		case 'L':
			n = snprintf(buf, sizeof(buf), "%lld", *(long long *)p);
			break;
		case 'J':
			n = snprintf(buf, sizeof(buf), "%llu", *(unsigned long long *)p);
			break;
		case 's': {
			const char *s = *(char **)p;
			if(s != NULL)
				siptrace_rpc_param(s, (int)strlen(s), 1);
			return;
		}
		case 'S': {
			const str *s = (const str *)p;
			if(s->s != NULL && s->len >= 0)
				siptrace_rpc_param(s->s, s->len, 1);
			return;
		}
		default:
			n = snprintf(buf, sizeof(buf), "%c...%c", c, c == '{' ? '}' : c);
			break;
	}
	if(n > 0)
		siptrace_rpc_param(buf, n < (int)sizeof(buf) ? n : (int)sizeof(buf) - 1,
				0);
}

/* Calls `fn` for the part of `fmt` that holds `count` value characters,
 * with their `per_char` pointer arguments each, read from `ap`. */
typedef int (*siptrace_ptr_fn)(void *, char *, ...);

static int siptrace_rpc_forward_ptrs(siptrace_ptr_fn fn, void *target,
		char *fmt, va_list *ap, int per_char, int report)
{
	void *p[SIPTRACE_RPC_PTRS];
	char part[SIPTRACE_RPC_PTRS + 64];
	char chars[SIPTRACE_RPC_PTRS];
	int total = 0, ret, i, nvals, nmand, nptrs, plen, optional = 0;
	const char *f = fmt;

	if(fn == NULL)
		return -1;
	while(1) {
		/* One part: modifiers (the optional marker carried over) and at most
		 * SIPTRACE_RPC_PTRS pointers. */
		plen = 0;
		nvals = 0;
		nmand = 0;
		nptrs = 0;
		if(optional)
			part[plen++] = '*';
		while(*f && plen < (int)sizeof(part) - 1) {
			if(siptrace_rpc_is_modifier(*f)) {
				if(*f == '*')
					optional = 1;
				part[plen++] = *f++;
				continue;
			}
			if(nptrs + per_char > SIPTRACE_RPC_PTRS)
				break;
			if(!optional)
				nmand++;
			chars[nvals++] = *f;
			part[plen++] = *f++;
			for(i = 0; i < per_char; i++)
				p[nptrs++] = va_arg(*ap, void *);
		}
		part[plen] = '\0';
		for(i = nptrs; i < SIPTRACE_RPC_PTRS; i++)
			p[i] = NULL;
		ret = fn(target, part, SIPTRACE_PTR_ARGS(p));
		if(report) {
			int got = ret < 0 ? -ret : ret;
			for(i = 0; i < got && i < nvals; i++)
				siptrace_rpc_report_scanned(chars[i], p[i * per_char]);
			/* A transport that fails on the first value returns 0. */
			if(ret < 0 || got < nmand)
				siptrace_rpc_event(SIPTRACE_RPC_SCAN_FAILED);
		}
		if(ret < 0)
			return ret - total;
		total += ret;
		if(*f == '\0' || ret < nvals)
			return total;
	}
}

static int siptrace_rpc_scan(void *ctx, char *fmt, ...)
{
	va_list ap;
	int ret;
	if(siptrace_rpc_orig == NULL)
		return -1;
	va_start(ap, fmt);
	ret = siptrace_rpc_forward_ptrs(
			(siptrace_ptr_fn)siptrace_rpc_orig->scan, ctx, fmt, &ap, 1, 1);
	va_end(ap);
	return ret;
}

static int siptrace_rpc_struct_scan(void *handle, char *fmt, ...)
{
	va_list ap;
	int ret;
	if(siptrace_rpc_orig == NULL)
		return -1;
	va_start(ap, fmt);
	/* each value: its member name, then where to write it */
	ret = siptrace_rpc_forward_ptrs(
			(siptrace_ptr_fn)siptrace_rpc_orig->struct_scan, handle, fmt, &ap,
			2, 0);
	va_end(ap);
	return ret;
}

enum siptrace_rpc_adder
{
	SIPTRACE_ADD,
	SIPTRACE_STRUCT_ADD,
	SIPTRACE_ARRAY_ADD
};

/* Forwards the values of an add, struct_add or array_add one format
 * character at a time, each with its own argument type, and reports each.
 * Returns what the transport returned for the last one, or its first
 * failure. */
static int siptrace_rpc_forward_values(
		enum siptrace_rpc_adder kind, void *target, char *fmt, va_list *ap)
{
	char one[2] = {0, 0};
	char buf[64];
	const char *name = NULL;
	const char *text;
	int len, is_str, ret = 0;
	rpc_add_f fn;
	const rpc_t *orig = siptrace_rpc_orig;

	if(orig == NULL)
		return -1;
	fn = kind == SIPTRACE_ADD	   ? orig->add
		 : kind == SIPTRACE_STRUCT_ADD ? orig->struct_add
									   : orig->array_add;
	if(fn == NULL)
		return -1;
	for(; *fmt; fmt++) {
		one[0] = *fmt;
		text = buf;
		len = -1;
		is_str = 0;
		if(kind == SIPTRACE_STRUCT_ADD)
			name = va_arg(*ap, const char *);
#define SIPTRACE_CALL(v)                            \
	(kind == SIPTRACE_STRUCT_ADD ? fn(target, one, name, v) \
								 : fn(target, one, v))
		switch(*fmt) {
			case 'd': {
				int v = va_arg(*ap, int);
				ret = SIPTRACE_CALL(v);
				len = snprintf(buf, sizeof(buf), "%d", v);
				break;
			}
			case 'u': {
				unsigned int v = va_arg(*ap, unsigned int);
				ret = SIPTRACE_CALL(v);
				len = snprintf(buf, sizeof(buf), "%u", v);
				break;
			}
			case 'b': {
				int v = va_arg(*ap, int);
				ret = SIPTRACE_CALL(v);
				len = snprintf(buf, sizeof(buf), "%d", v);
				break;
			}
			case 't': {
				/* int for some transports, time_t for others: the whole
				 * argument slot is passed on */
				long long v = va_arg(*ap, long long);
				ret = SIPTRACE_CALL(v);
				len = snprintf(buf, sizeof(buf), "%d", (int)v);
				break;
			}
			case 'f': {
				double v = va_arg(*ap, double);
				ret = SIPTRACE_CALL(v);
				len = snprintf(buf, sizeof(buf), "%g", v);
				break;
			}
			case 'l': {
				long v = va_arg(*ap, long);
				ret = SIPTRACE_CALL(v);
				len = snprintf(buf, sizeof(buf), "%ld", v);
				break;
			}
			case 'j': {
				unsigned long v = va_arg(*ap, unsigned long);
				ret = SIPTRACE_CALL(v);
				len = snprintf(buf, sizeof(buf), "%lu", v);
				break;
			}
			case 'L': {
				long long v = va_arg(*ap, long long);
				ret = SIPTRACE_CALL(v);
				len = snprintf(buf, sizeof(buf), "%lld", v);
				break;
			}
			case 'J': {
				unsigned long long v = va_arg(*ap, unsigned long long);
				ret = SIPTRACE_CALL(v);
				len = snprintf(buf, sizeof(buf), "%llu", v);
				break;
			}
			case 's': {
				char *v = va_arg(*ap, char *);
				ret = SIPTRACE_CALL(v);
				if(v != NULL) {
					text = v;
					len = (int)strlen(v);
					is_str = 1;
				}
				break;
			}
			case 'S': {
				str *v = va_arg(*ap, str *);
				ret = SIPTRACE_CALL(v);
				if(v != NULL && v->s != NULL && v->len >= 0) {
					text = v->s;
					len = v->len;
					is_str = 1;
				}
				break;
			}
			case '{':
			case '[': {
				void **v = va_arg(*ap, void **);
				ret = SIPTRACE_CALL(v);
				break;
			}
			default:
				/* Unknown to us: the transport sees the rest of the format
				 * and refuses it, as it would have, without reading an
				 * argument. */
				return kind == SIPTRACE_STRUCT_ADD ? fn(target, fmt, name)
												   : fn(target, fmt);
		}
#undef SIPTRACE_CALL
		if(ret < 0)
			return ret;
		if(len >= 0) {
			if(!is_str && len >= (int)sizeof(buf))
				len = sizeof(buf) - 1;
			siptrace_rpc_value(name, name ? (int)strlen(name) : 0, text, len,
					is_str);
		}
	}
	return ret;
}

static int siptrace_rpc_add(void *ctx, char *fmt, ...)
{
	va_list ap;
	int ret;
	va_start(ap, fmt);
	ret = siptrace_rpc_forward_values(SIPTRACE_ADD, ctx, fmt, &ap);
	va_end(ap);
	return ret;
}

static int siptrace_rpc_struct_add(void *handle, char *fmt, ...)
{
	va_list ap;
	int ret;
	va_start(ap, fmt);
	ret = siptrace_rpc_forward_values(SIPTRACE_STRUCT_ADD, handle, fmt, &ap);
	va_end(ap);
	return ret;
}

static int siptrace_rpc_array_add(void *handle, char *fmt, ...)
{
	va_list ap;
	int ret;
	va_start(ap, fmt);
	ret = siptrace_rpc_forward_values(SIPTRACE_ARRAY_ADD, handle, fmt, &ap);
	va_end(ap);
	return ret;
}

/* Formats printf-style arguments into a new buffer (plain malloc), or
 * returns NULL. */
static char *siptrace_rpc_vformat(const char *fmt, va_list ap, int *len)
{
	va_list copy;
	char *text;
	int n;
	va_copy(copy, ap);
	n = vsnprintf(NULL, 0, fmt, copy);
	va_end(copy);
	if(n < 0)
		return NULL;
	text = malloc((size_t)n + 1);
	if(text == NULL)
		return NULL;
	vsnprintf(text, (size_t)n + 1, fmt, ap);
	*len = n;
	return text;
}

static int siptrace_rpc_rpl_printf(void *ctx, char *fmt, ...)
{
	va_list ap;
	char *text;
	int len = 0, ret;
	if(siptrace_rpc_orig == NULL || siptrace_rpc_orig->rpl_printf == NULL)
		return -1;
	va_start(ap, fmt);
	text = siptrace_rpc_vformat(fmt, ap, &len);
	va_end(ap);
	if(text == NULL)
		return -1;
	ret = siptrace_rpc_orig->rpl_printf(ctx, "%s", text);
	if(ret >= 0)
		siptrace_rpc_value(NULL, 0, text, len, 1);
	free(text);
	return ret;
}

static int siptrace_rpc_struct_printf(void *handle, char *name, char *fmt, ...)
{
	va_list ap;
	char *text;
	int len = 0, ret;
	if(siptrace_rpc_orig == NULL || siptrace_rpc_orig->struct_printf == NULL)
		return -1;
	va_start(ap, fmt);
	text = siptrace_rpc_vformat(fmt, ap, &len);
	va_end(ap);
	if(text == NULL)
		return -1;
	ret = siptrace_rpc_orig->struct_printf(handle, name, "%s", text);
	if(ret >= 0)
		siptrace_rpc_value(
				name, name ? (int)strlen(name) : 0, text, len, 1);
	free(text);
	return ret;
}

static void siptrace_rpc_fault(void *ctx, int code, char *fmt, ...)
{
	va_list ap;
	char *text;
	int len = 0;
	if(siptrace_rpc_orig == NULL || siptrace_rpc_orig->fault == NULL)
		return;
	va_start(ap, fmt);
	text = siptrace_rpc_vformat(fmt, ap, &len);
	va_end(ap);
	if(text == NULL) {
		siptrace_rpc_orig->fault(ctx, code, "%s", "");
		siptrace_rpc_fault_seen(code, "", 0);
		return;
	}
	siptrace_rpc_orig->fault(ctx, code, "%s", text);
	siptrace_rpc_fault_seen(code, text, len);
	free(text);
}

static int siptrace_rpc_send(void *ctx)
{
	if(siptrace_rpc_orig == NULL || siptrace_rpc_orig->send == NULL)
		return -1;
	return siptrace_rpc_orig->send(ctx);
}

static rpc_capabilities_t siptrace_rpc_capabilities(void *ctx)
{
	if(siptrace_rpc_orig == NULL || siptrace_rpc_orig->capabilities == NULL)
		return 0;
	return siptrace_rpc_orig->capabilities(ctx);
}

static struct rpc_delayed_ctx *siptrace_rpc_delayed_ctx_new(void *ctx)
{
	struct rpc_delayed_ctx *d;
	if(siptrace_rpc_orig == NULL || siptrace_rpc_orig->delayed_ctx_new == NULL)
		return NULL;
	d = siptrace_rpc_orig->delayed_ctx_new(ctx);
	if(d != NULL)
		siptrace_rpc_event(SIPTRACE_RPC_DELAYED);
	return d;
}

static void siptrace_rpc_delayed_ctx_close(struct rpc_delayed_ctx *dctx)
{
	if(siptrace_rpc_orig != NULL && siptrace_rpc_orig->delayed_ctx_close)
		siptrace_rpc_orig->delayed_ctx_close(dctx);
}

void siptrace_shim_rpc_wrap(const rpc_t *orig, rpc_t *out)
{
	memset(out, 0, sizeof(*out));
#define SIPTRACE_WRAP(member, fn, type) \
	out->member = orig->member ? (type)fn : NULL
	SIPTRACE_WRAP(fault, siptrace_rpc_fault, rpc_fault_f);
	SIPTRACE_WRAP(send, siptrace_rpc_send, rpc_send_f);
	SIPTRACE_WRAP(add, siptrace_rpc_add, rpc_add_f);
	SIPTRACE_WRAP(scan, siptrace_rpc_scan, rpc_scan_f);
	SIPTRACE_WRAP(rpl_printf, siptrace_rpc_rpl_printf, rpc_rpl_printf_f);
	SIPTRACE_WRAP(struct_add, siptrace_rpc_struct_add, rpc_struct_add_f);
	SIPTRACE_WRAP(array_add, siptrace_rpc_array_add, rpc_array_add_f);
	SIPTRACE_WRAP(struct_scan, siptrace_rpc_struct_scan, rpc_struct_scan_f);
	SIPTRACE_WRAP(struct_printf, siptrace_rpc_struct_printf,
			rpc_struct_printf_f);
	SIPTRACE_WRAP(capabilities, siptrace_rpc_capabilities, rpc_capabilities_f);
	SIPTRACE_WRAP(delayed_ctx_new, siptrace_rpc_delayed_ctx_new,
			rpc_delayed_ctx_new_f);
	SIPTRACE_WRAP(delayed_ctx_close, siptrace_rpc_delayed_ctx_close,
			rpc_delayed_ctx_close_f);
#undef SIPTRACE_WRAP
}
