//! Module parameters (`param_export_t`): each is exported with a setter
//! function, so that a bad value is refused while Kamailio reads the
//! config, with a line that names the parameter and the value.

use super::sys;
use crate::ffi::guard::guard;
use crate::ffi::host_bytes;
use crate::kamailio::config::{ParamType, ParamValue};
use std::ffi::{c_void, CStr};
use std::os::raw::{c_char, c_int};

/// Kamailio calls the function in param_pointer instead of writing there.
const PARAM_USE_FUNC: u32 = 1 << 31;

/// Where the values of the parameters go.
pub trait ParamSink: 'static {
    /// Every parameter, with its type, in the order of the setters.
    const PARAMS: &'static [(&'static CStr, ParamType)];
    /// Takes `value` for parameter `name`; an error is logged and refuses
    /// the config.
    fn set(name: &str, value: ParamValue<'_>) -> Result<(), String>;
}

pub type Setter = unsafe extern "C" fn(sys::modparam_t, *mut c_void) -> c_int;

/// Kamailio's setter call does not say which parameter it is for, so each
/// parameter gets its own instance, indexing into `S::PARAMS`.
///
/// # Safety
/// Only Kamailio calls it, with a parameter of the type its entry gives:
/// an int in `value` itself, or a `str *`.
pub unsafe extern "C" fn setter<S: ParamSink, const I: usize>(
    ptype: sys::modparam_t,
    value: *mut c_void,
) -> c_int {
    guard("modparam", -1, || {
        let (name, ty) = S::PARAMS[I];
        let name = name.to_str().unwrap_or_default();
        let text;
        let value = match ty {
            // Kamailio passes integers in the pointer itself.
            ParamType::Int => ParamValue::Int(value as isize as c_int),
            ParamType::Str => {
                debug_assert!(ptype & sys::PARAM_STR != 0);
                // SAFETY: for a str parameter Kamailio passes a str*.
                let s = unsafe { (value as *const sys::str_).as_ref() };
                // SAFETY: a valid str points at `len` bytes.
                let bytes = s.and_then(|s| unsafe { host_bytes(s.s, s.len) }).unwrap_or_default();
                text = String::from_utf8_lossy(bytes).into_owned();
                ParamValue::Str(&text)
            }
        };
        match S::set(name, value) {
            Ok(()) => 0,
            Err(e) => {
                crate::log_error!("{e}");
                -1
            }
        }
    })
}

/// The entry of one parameter, set through `setter`.
pub const fn export(name: &'static CStr, ty: ParamType, setter: Setter) -> sys::param_export_t {
    let kind = match ty {
        ParamType::Int => sys::PARAM_INT,
        ParamType::Str => sys::PARAM_STR,
    };
    sys::param_export_t {
        name: name.as_ptr() as *mut c_char,
        type_: kind | PARAM_USE_FUNC,
        param_pointer: setter as *mut c_void,
    }
}

/// The entry that closes the table.
pub const fn end() -> sys::param_export_t {
    sys::param_export_t { name: std::ptr::null_mut(), type_: 0, param_pointer: std::ptr::null_mut() }
}
