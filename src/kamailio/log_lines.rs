//! The log lines of traced calls: each line the process prints while it
//! works on a call that traces `xlog` goes out as a HEP log record (type
//! 100), correlated with the call. The hook that sees every line is in the
//! C shim; it calls [`siptrace_log_line`] only while such a call is current.

use crate::core::event::{JsonObject, TraceTypes};
use crate::core::hep::proto_type;
use crate::core::record::{Direction, Timestamp, TraceRecord};
use crate::ffi::guard::guard;
use crate::kamailio::{call_context, sys, tracer};
use std::ffi::CStr;
use std::os::raw::{c_char, c_int};

/// Puts the hook in place; the lines keep going where they went. Called
/// in mod_init: a process forked later cannot get it from another.
pub fn install() {
    // SAFETY: sets the core's log hook once, in the main process before it
    // forks; the hook prints as the core would.
    unsafe { sys::siptrace_shim_log_hook_install() };
}

/// One printed log line, while the process works on a call that traces
/// its log lines.
///
/// # Safety
/// The strings are NUL-terminated, `text` holds `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn siptrace_log_line(
    _level: c_int,
    lname: *const c_char,
    loc: *const c_char,
    func: *const c_char,
    text: *const c_char,
    len: c_int,
) {
    guard("the log line hook", (), || {
        let cstr = |p: *const c_char| {
            // SAFETY: per the contract; null reads as empty.
            if p.is_null() {
                &[][..]
            } else {
                unsafe { CStr::from_ptr(p) }.to_bytes()
            }
        };
        let Ok(len) = usize::try_from(len) else { return };
        if text.is_null() {
            return;
        }
        // SAFETY: per the contract.
        let body = unsafe { std::slice::from_raw_parts(text as *const u8, len) };
        let func = cstr(func);
        let mut line = Vec::with_capacity(len + 64);
        line.extend_from_slice(cstr(loc));
        if !func.is_empty() {
            line.extend_from_slice(func);
            line.extend_from_slice(b"(): ");
        }
        line.extend_from_slice(body.strip_suffix(b"\n").unwrap_or(body));
        let level = cstr(lname);
        call_context::with_current(TraceTypes::XLOG, |call| {
            let outputs = tracer::hep_outputs(&call.target);
            if outputs.is_empty() {
                return;
            }
            let mut payload = JsonObject::new();
            payload.string("Event", level).string("text", &line);
            let payload = payload.finish();
            let extra = crate::core::event::sip_correlation(&call.call_id);
            let record = TraceRecord {
                time: Timestamp::now(),
                direction: Direction::Out,
                src: call.src,
                dst: call.dst,
                payload: payload.as_bytes(),
                correlation_id: Some(&call.correlation),
                extra_correlation: Some(extra.as_bytes()),
                proto_type: proto_type::LOG,
                traced_users: None,
            };
            tracer::enqueue(&record, &outputs);
        });
    })
}
