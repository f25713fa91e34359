//! RPC commands, for kamcmd and every other RPC transport.

use crate::ffi::guard::guard;
use crate::kamailio::{shared, stats, sys};
use std::ffi::{c_void, CStr};
use std::os::raw::c_char;
use std::sync::atomic::Ordering;

/// `siptrace.status on|off|check`: switch tracing for all processes, or
/// report whether it is on.
unsafe extern "C" fn status(rpc: *mut sys::rpc_t, ctx: *mut c_void) {
    guard("siptrace.status", (), || {
        // SAFETY: Kamailio passes its RPC API and the request context.
        let Some(rpc) = (unsafe { rpc.as_ref() }) else {
            return;
        };
        let fault = |code: i32, text: &CStr| {
            if let Some(fault) = rpc.fault {
                // SAFETY: fixed format, static argument.
                unsafe { fault(ctx, code, c"%s".as_ptr() as *mut c_char, text.as_ptr()) };
            }
        };
        let reply = |text: &CStr| {
            if let Some(printf) = rpc.rpl_printf {
                // SAFETY: fixed format, static argument.
                unsafe { printf(ctx, c"%s".as_ptr() as *mut c_char, text.as_ptr()) };
            }
        };
        let (Some(scan), Some(shared)) = (rpc.scan, shared::get()) else {
            fault(500, c"Internal error");
            return;
        };
        let mut arg = sys::str_ { s: std::ptr::null_mut(), len: 0 };
        // SAFETY: "S" scans one str parameter into `arg`.
        if unsafe { scan(ctx, c"S".as_ptr() as *mut c_char, &mut arg as *mut sys::str_) } < 1
            || arg.s.is_null()
        {
            fault(500, c"Not enough parameters (on, off or check)");
            return;
        }
        // SAFETY: a scanned str points at `len` bytes of the request.
        let arg = unsafe { std::slice::from_raw_parts(arg.s as *const u8, arg.len.max(0) as usize) };
        let on = &shared.trace_on;
        if arg.eq_ignore_ascii_case(b"on") {
            on.store(true, Ordering::Relaxed);
            reply(c"Enabled");
        } else if arg.eq_ignore_ascii_case(b"off") {
            on.store(false, Ordering::Relaxed);
            reply(c"Disabled");
        } else if arg.eq_ignore_ascii_case(b"check") {
            reply(if on.load(Ordering::Relaxed) { c"Enabled" } else { c"Disabled" });
        } else {
            fault(500, c"Bad parameter (on, off or check)");
        }
    })
}

/// `siptrace.stats`: every counter, the queue depth, drops by reason.
unsafe extern "C" fn stats(rpc: *mut sys::rpc_t, ctx: *mut c_void) {
    guard("siptrace.stats", (), || {
        // SAFETY: Kamailio passes its RPC API and the request context.
        let Some(rpc) = (unsafe { rpc.as_ref() }) else { return };
        let (Some(add), Some(struct_add)) = (rpc.add, rpc.struct_add) else { return };
        let mut handle: *mut c_void = std::ptr::null_mut();
        // SAFETY: "{" opens a struct and writes its handle.
        if unsafe { add(ctx, c"{".as_ptr() as *mut c_char, &mut handle as *mut *mut c_void) } < 0 {
            return;
        }
        for (name, read) in stats::STATS {
            // SAFETY: "J" takes a name and an unsigned long long.
            unsafe { struct_add(handle, c"J".as_ptr() as *mut c_char, name.as_ptr(), read()) };
        }
    })
}

/// Documentation strings, NULL-terminated, as Kamailio's RPC listing wants.
struct DocStrings([*const c_char; 2]);
// SAFETY: pointers to static C strings, never written.
unsafe impl Sync for DocStrings {}

static STATS_DOC: DocStrings = DocStrings([
    c"Trace counters: queued, sent and stored records, queue depth, reconnections, drops by reason.".as_ptr(),
    std::ptr::null(),
]);

static STATUS_DOC: DocStrings = DocStrings([
    c"Turn tracing on or off for all processes, or check it: on, off or check.".as_ptr(),
    std::ptr::null(),
]);

pub const RPC_COUNT: usize = 2;

/// The exported rpc_export_t array, NULL-terminated.
pub const fn rpc_exports() -> [sys::rpc_export_t; RPC_COUNT + 1] {
    [
        sys::rpc_export_t {
            name: c"siptrace.status".as_ptr(),
            function: Some(status),
            doc_str: STATUS_DOC.0.as_ptr() as *mut *const c_char,
            flags: 0,
        },
        sys::rpc_export_t {
            name: c"siptrace.stats".as_ptr(),
            function: Some(stats),
            doc_str: STATS_DOC.0.as_ptr() as *mut *const c_char,
            flags: 0,
        },
        sys::rpc_export_t { name: std::ptr::null(), function: None, doc_str: std::ptr::null_mut(), flags: 0 },
    ]
}
