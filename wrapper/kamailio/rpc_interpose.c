/* The variadic functions of a traced RPC command's rpc_t (see
 * rpc_interpose.h). They must be C: each takes a format and variadic
 * arguments whose types only the format tells, and passes them on to the
 * transport's variadic function; Rust can neither read a va_list by
 * format nor make such a call. The formatting of the values and the
 * non-variadic functions are in Rust. */
#include "wrapper.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
				siptrace_rpc_scanned(chars[i], p[i * per_char]);
			/* A transport that fails on the first value returns 0. */
			if(ret < 0 || got < nmand)
				siptrace_rpc_scan_failed();
		}
		if(ret < 0)
			return ret - total;
		total += ret;
		if(*f == '\0' || ret < nvals)
			return total;
	}
}

int siptrace_shim_rpc_scan(void *ctx, char *fmt, ...)
{
	va_list ap;
	int ret;
	const rpc_t *orig = siptrace_rpc_original();
	if(orig == NULL)
		return -1;
	va_start(ap, fmt);
	ret = siptrace_rpc_forward_ptrs(
			(siptrace_ptr_fn)orig->scan, ctx, fmt, &ap, 1, 1);
	va_end(ap);
	return ret;
}

int siptrace_shim_rpc_struct_scan(void *handle, char *fmt, ...)
{
	va_list ap;
	int ret;
	const rpc_t *orig = siptrace_rpc_original();
	if(orig == NULL)
		return -1;
	va_start(ap, fmt);
	/* each value: its member name, then where to write it */
	ret = siptrace_rpc_forward_ptrs(
			(siptrace_ptr_fn)orig->struct_scan, handle, fmt, &ap, 2, 0);
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
	const char *name = NULL;
	int ret = 0;
	rpc_add_f fn;
	const rpc_t *orig = siptrace_rpc_original();

	if(orig == NULL)
		return -1;
	fn = kind == SIPTRACE_ADD	   ? orig->add
		 : kind == SIPTRACE_STRUCT_ADD ? orig->struct_add
									   : orig->array_add;
	if(fn == NULL)
		return -1;
	for(; *fmt; fmt++) {
		one[0] = *fmt;
		if(kind == SIPTRACE_STRUCT_ADD)
			name = va_arg(*ap, const char *);
/* Passes one value on, and reports it when the transport took it. */
#define SIPTRACE_FORWARD(type)                                          \
	{                                                                   \
		type v = va_arg(*ap, type);                                     \
		ret = kind == SIPTRACE_STRUCT_ADD ? fn(target, one, name, v)    \
										  : fn(target, one, v);         \
		if(ret < 0)                                                     \
			return ret;                                                 \
		siptrace_rpc_added(name, *fmt, &v);                             \
		break;                                                          \
	}
		switch(*fmt) {
			case 'd':
			case 'b':
				SIPTRACE_FORWARD(int)
			case 'u':
				SIPTRACE_FORWARD(unsigned int)
			case 't':
				/* int for some transports, time_t for others: the whole
				 * argument slot is passed on */
				SIPTRACE_FORWARD(long long)
			case 'f':
				SIPTRACE_FORWARD(double)
			case 'l':
				SIPTRACE_FORWARD(long)
			case 'j':
				SIPTRACE_FORWARD(unsigned long)
			case 'L':
				SIPTRACE_FORWARD(long long)
			case 'J':
				SIPTRACE_FORWARD(unsigned long long)
			case 's':
				SIPTRACE_FORWARD(char *)
			case 'S':
				SIPTRACE_FORWARD(str *)
			case '{':
			case '[': {
				void **v = va_arg(*ap, void **);
				ret = kind == SIPTRACE_STRUCT_ADD ? fn(target, one, name, v)
												  : fn(target, one, v);
				if(ret < 0)
					return ret;
				break;
			}
			default:
				/* Unknown to us: the transport sees the rest of the format
				 * and refuses it, as it would have, without reading an
				 * argument. */
				return kind == SIPTRACE_STRUCT_ADD ? fn(target, fmt, name)
												   : fn(target, fmt);
		}
#undef SIPTRACE_FORWARD
	}
	return ret;
}

/* The three adders differ only in which of the transport's functions
 * they forward to. */
#define SIPTRACE_ADDER(name, kind)                                   \
	int name(void *target, char *fmt, ...)                           \
	{                                                                \
		va_list ap;                                                  \
		int ret;                                                     \
		va_start(ap, fmt);                                           \
		ret = siptrace_rpc_forward_values(kind, target, fmt, &ap);   \
		va_end(ap);                                                  \
		return ret;                                                  \
	}

SIPTRACE_ADDER(siptrace_shim_rpc_add, SIPTRACE_ADD)
SIPTRACE_ADDER(siptrace_shim_rpc_struct_add, SIPTRACE_STRUCT_ADD)
SIPTRACE_ADDER(siptrace_shim_rpc_array_add, SIPTRACE_ARRAY_ADD)

#undef SIPTRACE_ADDER

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

int siptrace_shim_rpc_rpl_printf(void *ctx, char *fmt, ...)
{
	va_list ap;
	char *text;
	int len = 0, ret;
	const rpc_t *orig = siptrace_rpc_original();
	if(orig == NULL || orig->rpl_printf == NULL)
		return -1;
	va_start(ap, fmt);
	text = siptrace_rpc_vformat(fmt, ap, &len);
	va_end(ap);
	if(text == NULL)
		return -1;
	ret = orig->rpl_printf(ctx, "%s", text);
	if(ret >= 0)
		siptrace_rpc_printed(NULL, text, len);
	free(text);
	return ret;
}

int siptrace_shim_rpc_struct_printf(void *handle, char *name, char *fmt, ...)
{
	va_list ap;
	char *text;
	int len = 0, ret;
	const rpc_t *orig = siptrace_rpc_original();
	if(orig == NULL || orig->struct_printf == NULL)
		return -1;
	va_start(ap, fmt);
	text = siptrace_rpc_vformat(fmt, ap, &len);
	va_end(ap);
	if(text == NULL)
		return -1;
	ret = orig->struct_printf(handle, name, "%s", text);
	if(ret >= 0)
		siptrace_rpc_printed(name, text, len);
	free(text);
	return ret;
}

void siptrace_shim_rpc_fault(void *ctx, int code, char *fmt, ...)
{
	va_list ap;
	char *text;
	int len = 0;
	const rpc_t *orig = siptrace_rpc_original();
	if(orig == NULL || orig->fault == NULL)
		return;
	va_start(ap, fmt);
	text = siptrace_rpc_vformat(fmt, ap, &len);
	va_end(ap);
	if(text == NULL) {
		orig->fault(ctx, code, "%s", "");
		siptrace_rpc_fault_seen(code, "", 0);
		return;
	}
	orig->fault(ctx, code, "%s", text);
	siptrace_rpc_fault_seen(code, text, len);
	free(text);
}
