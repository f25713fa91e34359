//! The KEMI exports: the script functions for configs written in Lua,
//! Python and the other KEMI languages, as `KSR.siptrace.*`, with the C
//! module's names and parameters.

use crate::core::counters::DropReason;
use crate::core::record::Scope;
use crate::ffi::guard::guard;
use crate::ffi::Export;
use crate::kamailio::{net, script, sys, tracer};
use std::os::raw::{c_char, c_int, c_void};

type Msg = *mut sys::sip_msg;
type Str = *mut sys::str_;

/// The text of a KEMI string argument; `None` for a null one.
///
/// # Safety
/// `s` must be null or a valid str for the call.
unsafe fn text(s: Str) -> Option<String> {
    // SAFETY: per the contract.
    let s = unsafe { s.as_ref() }?;
    // SAFETY: a valid str points at `len` bytes.
    Some(String::from_utf8_lossy(unsafe { net::str_bytes(s) }.unwrap_or_default()).into_owned())
}

/// The scope a mode string asks for, if it is one the module implements;
/// otherwise a counted drop, as for the native functions' runtime values.
fn scope(function: &str, text: &str) -> Option<Scope> {
    match script::supported_scope(text) {
        Ok(scope) => Some(scope),
        Err(e) => {
            tracer::drop_record(DropReason::NoDestination, format_args!("{function}('{text}'): {e}"));
            None
        }
    }
}

unsafe extern "C" fn ki_sip_trace(msg: Msg) -> c_int {
    guard("KSR.siptrace.sip_trace()", -1, || script::trace_call(msg, None, None, None))
}

unsafe extern "C" fn ki_sip_trace_dst(msg: Msg, dst: Str) -> c_int {
    guard("KSR.siptrace.sip_trace_dst()", -1, || {
        // SAFETY: KEMI passes valid strs.
        let dst = unsafe { text(dst) };
        script::trace_call(msg, Some(dst.as_deref().unwrap_or_default()), None, None)
    })
}

unsafe extern "C" fn ki_sip_trace_dst_cid(msg: Msg, dst: Str, cid: Str) -> c_int {
    guard("KSR.siptrace.sip_trace_dst_cid()", -1, || {
        // SAFETY: KEMI passes valid strs.
        let (dst, cid) = unsafe { (text(dst), text(cid)) };
        script::trace_call(msg, Some(dst.as_deref().unwrap_or_default()), cid.as_deref(), None)
    })
}

unsafe extern "C" fn ki_sip_trace_dst_cid_type(msg: Msg, dst: Str, cid: Str, mode: Str) -> c_int {
    guard("KSR.siptrace.sip_trace_dst_cid_type()", -1, || {
        // SAFETY: KEMI passes valid strs.
        let (dst, cid, mode) = unsafe { (text(dst), text(cid), text(mode)) };
        let Some(scope) = scope("sip_trace_dst_cid_type", mode.as_deref().unwrap_or_default()) else {
            return -1;
        };
        script::trace_call(msg, Some(dst.as_deref().unwrap_or_default()), cid.as_deref(), Some(scope))
    })
}

unsafe extern "C" fn ki_sip_trace_mode(msg: Msg, mode: Str) -> c_int {
    guard("KSR.siptrace.sip_trace_mode()", -1, || {
        // SAFETY: KEMI passes a valid str.
        let mode = unsafe { text(mode) }.unwrap_or_default();
        match scope("sip_trace_mode", &mode) {
            Some(scope) => script::trace_call(msg, None, None, Some(scope)),
            None => -1,
        }
    })
}

unsafe extern "C" fn ki_hlog(msg: Msg, message: Str) -> c_int {
    guard("KSR.siptrace.hlog()", -1, || {
        // SAFETY: KEMI passes a valid str.
        let message = unsafe { text(message) }.unwrap_or_default();
        script::hlog(msg, None, &message)
    })
}

unsafe extern "C" fn ki_hlog_cid(msg: Msg, cid: Str, message: Str) -> c_int {
    guard("KSR.siptrace.hlog_cid()", -1, || {
        // SAFETY: KEMI passes valid strs.
        let (cid, message) = unsafe { (text(cid).unwrap_or_default(), text(message).unwrap_or_default()) };
        script::hlog(msg, Some(&cid), &message)
    })
}

unsafe extern "C" fn ki_sip_trace_types(msg: Msg, types: Str) -> c_int {
    guard("KSR.siptrace.sip_trace_types()", -1, || {
        // SAFETY: KEMI passes a valid str.
        let types = unsafe { text(types) }.unwrap_or_default();
        script::trace_types(msg, &types)
    })
}

const fn name(s: &'static std::ffi::CStr) -> sys::str_ {
    sys::str_ { s: s.as_ptr() as *mut c_char, len: (s.to_bytes().len()) as c_int }
}

const fn export(function: &'static std::ffi::CStr, f: *const c_void, strings: usize) -> sys::sr_kemi_t {
    let mut ptypes = [sys::SR_KEMIP_NONE as c_int; sys::SR_KEMI_PARAMS_MAX as usize];
    let mut i = 0;
    while i < strings {
        ptypes[i] = sys::SR_KEMIP_STR as c_int;
        i += 1;
    }
    sys::sr_kemi_t {
        mname: name(c"siptrace"),
        fname: name(function),
        rtype: sys::SR_KEMIP_INT as c_int,
        func: f as *mut c_void,
        ptypes,
    }
}

const fn end() -> sys::sr_kemi_t {
    sys::sr_kemi_t {
        mname: sys::str_ { s: std::ptr::null_mut(), len: 0 },
        fname: sys::str_ { s: std::ptr::null_mut(), len: 0 },
        rtype: 0,
        func: std::ptr::null_mut(),
        ptypes: [0; sys::SR_KEMI_PARAMS_MAX as usize],
    }
}

/// The table, closed by an empty entry. Kamailio keeps the pointer and
/// only reads it.
static EXPORTS: Export<[sys::sr_kemi_t; 9]> = Export([
    export(c"sip_trace", ki_sip_trace as *const c_void, 0),
    export(c"sip_trace_dst", ki_sip_trace_dst as *const c_void, 1),
    export(c"sip_trace_dst_cid", ki_sip_trace_dst_cid as *const c_void, 2),
    export(c"sip_trace_dst_cid_type", ki_sip_trace_dst_cid_type as *const c_void, 3),
    export(c"sip_trace_mode", ki_sip_trace_mode as *const c_void, 1),
    export(c"sip_trace_types", ki_sip_trace_types as *const c_void, 1),
    export(c"hlog", ki_hlog as *const c_void, 1),
    export(c"hlog_cid", ki_hlog_cid as *const c_void, 2),
    end(),
]);

/// Registers the table; called from mod_register.
pub fn register() -> Result<(), String> {
    // SAFETY: a static table that lives as long as the module.
    if unsafe { sys::sr_kemi_modules_add(EXPORTS.0.as_ptr() as *mut sys::sr_kemi_t) } != 0 {
        return Err("cannot register the KEMI functions".into());
    }
    Ok(())
}
