//! The tracer's statistics, `traced_requests` and `traced_replies`, read
//! from the counters the senders keep.

use crate::opensips::{module, sys};
use std::os::raw::{c_ulong, c_void};
use std::sync::atomic::Ordering;

unsafe extern "C" fn traced_requests(_ctx: *mut c_void) -> c_ulong {
    crate::ffi::guard::guard("statistics", 0, || {
        module::get().map_or(0, |m| m.shared.counters.traced_requests.load(Ordering::Relaxed) as c_ulong)
    })
}

unsafe extern "C" fn traced_replies(_ctx: *mut c_void) -> c_ulong {
    crate::ffi::guard::guard("statistics", 0, || {
        module::get().map_or(0, |m| m.shared.counters.traced_replies.load(Ordering::Relaxed) as c_ulong)
    })
}

type StatFn = unsafe extern "C" fn(*mut c_void) -> c_ulong;

const fn stat(name: &'static std::ffi::CStr, f: StatFn) -> sys::stat_export_t {
    // With STAT_IS_FUNC the statistic's pointer is its reading function.
    sys::stat_export_t {
        name: name.as_ptr() as *mut _,
        flags: (sys::STAT_IS_FUNC | sys::STAT_NO_RESET) as u16,
        stat_pointer: f as *mut *mut sys::stat_var,
    }
}

pub const fn stat_exports() -> [sys::stat_export_t; 3] {
    [
        stat(c"traced_requests", traced_requests),
        stat(c"traced_replies", traced_replies),
        sys::stat_export_t { name: std::ptr::null_mut(), flags: 0, stat_pointer: std::ptr::null_mut() },
    ]
}
