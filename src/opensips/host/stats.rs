//! Statistics the module exports, each read through a function when
//! OpenSIPS shows it.

use super::sys;
use crate::ffi::guard::guard;
use std::ffi::CStr;
use std::os::raw::{c_ulong, c_void};

pub trait Stat {
    const NAME: &'static CStr;
    fn read() -> u64;
}

pub const fn export<S: Stat>() -> sys::stat_export_t {
    let f: unsafe extern "C" fn(*mut c_void) -> c_ulong = read::<S>;
    // With STAT_IS_FUNC the statistic's pointer is its reading function.
    sys::stat_export_t {
        name: S::NAME.as_ptr() as *mut _,
        flags: (sys::STAT_IS_FUNC | sys::STAT_NO_RESET) as u16,
        stat_pointer: f as *mut *mut sys::stat_var,
    }
}

pub const END: sys::stat_export_t =
    sys::stat_export_t { name: std::ptr::null_mut(), flags: 0, stat_pointer: std::ptr::null_mut() };

unsafe extern "C" fn read<S: Stat>(_ctx: *mut c_void) -> c_ulong {
    guard("statistics", 0, || S::read() as c_ulong)
}
