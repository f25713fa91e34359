//! KEMI exports: the script functions of configs written in Lua, Python
//! and the other KEMI languages (`KSR.<module>.<function>`), each taking
//! string arguments.

use super::msg::Msg;
use super::sys;
use crate::ffi::guard::guard;
use crate::ffi::host_bytes;
use std::ffi::{c_void, CStr};
use std::os::raw::{c_char, c_int};

/// A KEMI function.
pub trait KemiFunction: 'static {
    /// Its name under the module's.
    const NAME: &'static CStr;
    /// `args` holds its string arguments; `None` for a null one.
    fn run(msg: Msg<'_>, args: &[Option<String>]) -> c_int;
}

type Str = *mut sys::str_;

/// The text of a string argument; `None` for a null one.
///
/// # Safety
/// `s` must be null or a valid str for the call.
unsafe fn text(s: Str) -> Option<String> {
    // SAFETY: per the contract.
    let s = unsafe { s.as_ref() }?;
    // SAFETY: a valid str points at `len` bytes.
    Some(String::from_utf8_lossy(unsafe { host_bytes(s.s, s.len) }.unwrap_or_default()).into_owned())
}

fn call<F: KemiFunction>(msg: *mut sys::sip_msg, args: &[Str]) -> c_int {
    guard(F::NAME.to_str().unwrap_or("a KEMI function"), -1, || {
        // SAFETY: KEMI passes the live message and valid strs.
        let Some(msg) = (unsafe { Msg::from_ptr(msg) }) else { return -1 };
        // SAFETY: as above.
        let args: Vec<Option<String>> = args.iter().map(|&s| unsafe { text(s) }).collect();
        F::run(msg, &args)
    })
}

unsafe extern "C" fn ki0<F: KemiFunction>(msg: *mut sys::sip_msg) -> c_int {
    call::<F>(msg, &[])
}

unsafe extern "C" fn ki1<F: KemiFunction>(msg: *mut sys::sip_msg, a: Str) -> c_int {
    call::<F>(msg, &[a])
}

unsafe extern "C" fn ki2<F: KemiFunction>(msg: *mut sys::sip_msg, a: Str, b: Str) -> c_int {
    call::<F>(msg, &[a, b])
}

unsafe extern "C" fn ki3<F: KemiFunction>(msg: *mut sys::sip_msg, a: Str, b: Str, c: Str) -> c_int {
    call::<F>(msg, &[a, b, c])
}

unsafe extern "C" fn ki5<F: KemiFunction>(
    msg: *mut sys::sip_msg,
    a: Str,
    b: Str,
    c: Str,
    d: Str,
    e: Str,
) -> c_int {
    call::<F>(msg, &[a, b, c, d, e])
}

const fn name(s: &'static CStr) -> sys::str_ {
    sys::str_ { s: s.as_ptr() as *mut c_char, len: s.to_bytes().len() as c_int }
}

/// The entry of `F`, of module `module`, taking `N` strings (0 to 3, or 5).
pub const fn export<F: KemiFunction, const N: usize>(module: &'static CStr) -> sys::sr_kemi_t {
    let func = match N {
        0 => ki0::<F> as *const c_void,
        1 => ki1::<F> as *const c_void,
        2 => ki2::<F> as *const c_void,
        3 => ki3::<F> as *const c_void,
        5 => ki5::<F> as *const c_void,
        _ => panic!("a KEMI function here takes 0 to 3, or 5, strings"),
    };
    let mut ptypes = [sys::SR_KEMIP_NONE as c_int; sys::SR_KEMI_PARAMS_MAX as usize];
    let mut i = 0;
    while i < N {
        ptypes[i] = sys::SR_KEMIP_STR as c_int;
        i += 1;
    }
    sys::sr_kemi_t {
        mname: name(module),
        fname: name(F::NAME),
        rtype: sys::SR_KEMIP_INT as c_int,
        func: func as *mut c_void,
        ptypes,
    }
}

/// The entry that closes the table.
pub const fn end() -> sys::sr_kemi_t {
    sys::sr_kemi_t {
        mname: sys::str_ { s: std::ptr::null_mut(), len: 0 },
        fname: sys::str_ { s: std::ptr::null_mut(), len: 0 },
        rtype: 0,
        func: std::ptr::null_mut(),
        ptypes: [0; sys::SR_KEMI_PARAMS_MAX as usize],
    }
}

/// Registers a table closed by [`end`]; Kamailio keeps the pointer and
/// only reads it.
pub fn register(table: &'static [sys::sr_kemi_t]) -> Result<(), String> {
    // SAFETY: a static table, closed by an empty entry, that lives as long
    // as the module.
    if unsafe { sys::sr_kemi_modules_add(table.as_ptr() as *mut sys::sr_kemi_t) } != 0 {
        return Err("cannot register the KEMI functions".into());
    }
    Ok(())
}
