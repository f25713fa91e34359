//! The OpenSIPS host layer: the only code that reads OpenSIPS's structs or
//! calls its C API (`sys`). Policy code above it sees safe wrappers, one
//! file per part of OpenSIPS, and hands it Rust functions (trait impls)
//! where OpenSIPS wants C callbacks: the `extern "C"` trampolines live
//! here, each in `ffi::guard::guard`. A difference between OpenSIPS
//! releases is handled here, in the one wrapper that meets it, selected by
//! the cfgs build.rs emits for the tree it builds against.

pub mod b2b;
pub mod db;
pub mod dialog;
pub mod held;
pub mod hep;
pub mod log;
pub mod mi;
pub mod modparam;
pub mod msg;
pub mod process;
pub mod script;
pub mod shm;
pub mod sl;
pub mod stats;
pub mod sys;
pub mod tls;
pub mod tm;
pub mod trace_api;

use std::ffi::CStr;
use std::os::raw::{c_char, c_int};

/// The bytes of an OpenSIPS `str`; `None` when it has none.
///
/// # Safety
/// `s.s` must be null or valid for `s.len` bytes, unchanged for `'a`.
unsafe fn bytes<'a>(s: &sys::str_) -> Option<&'a [u8]> {
    // SAFETY: per the contract.
    unsafe { crate::ffi::host_bytes(s.s, s.len) }
}

/// A `str` through which OpenSIPS reads `bytes` (it does not write).
fn str_of(bytes: &[u8]) -> sys::str_ {
    sys::str_ { s: bytes.as_ptr() as *mut c_char, len: bytes.len() as c_int }
}

/// Whether a module exports `name` (so is loaded).
fn exported(name: &CStr) -> bool {
    // SAFETY: a lookup by a NUL-terminated name.
    unsafe { sys::find_export(name.as_ptr(), 0) }.is_some()
}

/// Another module's API: its export `load` fills a `T`. `Ok(None)` when
/// the module is not loaded, `Err(())` when it refuses.
///
/// # Safety
/// The export called `load` must have the C signature `int (*)(T *)`.
unsafe fn bind<T: Default>(load: &CStr) -> Result<Option<T>, ()> {
    // SAFETY: a lookup by a NUL-terminated name.
    let Some(f) = (unsafe { sys::find_export(load.as_ptr(), 0) }) else { return Ok(None) };
    // SAFETY: per the contract, the export has this signature; function
    // pointers of both types have the same size.
    let load: unsafe extern "C" fn(*mut T) -> c_int = unsafe { std::mem::transmute(f) };
    let mut api = T::default();
    // SAFETY: the module's loader fills `api`.
    if unsafe { load(&mut api) } < 0 {
        return Err(());
    }
    Ok(Some(api))
}
