//! The modparam table. Every parameter is exported with a setter function,
//! so a bad value is refused while Kamailio reads the config, with a line
//! that names the parameter and the value.

use crate::kamailio::config::{ParamType, ParamValue, PARAMS};
use crate::ffi::guard::guard;
use crate::kamailio::{module, sys};
use std::ffi::{c_void, CStr};
use std::os::raw::{c_char, c_int};

/// Kamailio calls the function in param_pointer instead of writing there.
const PARAM_USE_FUNC: u32 = 1 << 31;

type Setter = unsafe extern "C" fn(sys::modparam_t, *mut c_void) -> c_int;

/// Kamailio's setter call does not say which parameter it is for, so each
/// parameter gets its own instance, indexing into `PARAMS`.
unsafe extern "C" fn set_param<const I: usize>(ptype: sys::modparam_t, value: *mut c_void) -> c_int {
    guard("modparam", -1, || {
        let (name, ty) = PARAMS[I];
        let name = name.to_str().unwrap_or_default();
        let text;
        let value = match ty {
            // Kamailio passes integers in the pointer itself.
            ParamType::Int => ParamValue::Int(value as isize as c_int),
            ParamType::Str => {
                debug_assert!(ptype & sys::PARAM_STR != 0);
                // SAFETY: for a str parameter Kamailio passes a str*.
                let s = unsafe { (value as *const sys::str_).as_ref() };
                let bytes = match s {
                    Some(s) if !s.s.is_null() && s.len >= 0 => {
                        // SAFETY: a valid str points at `len` bytes.
                        unsafe { std::slice::from_raw_parts(s.s as *const u8, s.len as usize) }
                    }
                    _ => &[][..],
                };
                text = String::from_utf8_lossy(bytes).into_owned();
                ParamValue::Str(&text)
            }
        };
        match module::set_param(name, value) {
            Ok(()) => 0,
            Err(e) => {
                crate::log_error!("{e}");
                -1
            }
        }
    })
}

#[rustfmt::skip]
const SETTERS: [Setter; PARAMS.len()] = [
    set_param::<0>, set_param::<1>, set_param::<2>, set_param::<3>, set_param::<4>, set_param::<5>,
    set_param::<6>, set_param::<7>, set_param::<8>, set_param::<9>, set_param::<10>, set_param::<11>,
    set_param::<12>, set_param::<13>, set_param::<14>, set_param::<15>, set_param::<16>, set_param::<17>,
    set_param::<18>, set_param::<19>, set_param::<20>, set_param::<21>, set_param::<22>, set_param::<23>,
    set_param::<24>, set_param::<25>, set_param::<26>, set_param::<27>, set_param::<28>, set_param::<29>,
    set_param::<30>, set_param::<31>, set_param::<32>, set_param::<33>, set_param::<34>, set_param::<35>,
    set_param::<36>, set_param::<37>, set_param::<38>, set_param::<39>, set_param::<40>, set_param::<41>,
    set_param::<42>, set_param::<43>, set_param::<44>, set_param::<45>,
];

pub const PARAM_COUNT: usize = PARAMS.len();

/// The exported param_export_t array, NULL-terminated.
pub const fn param_exports() -> [sys::param_export_t; PARAM_COUNT + 1] {
    let mut table =
        [sys::param_export_t { name: std::ptr::null_mut(), type_: 0, param_pointer: std::ptr::null_mut() };
            PARAM_COUNT + 1];
    let mut i = 0;
    while i < PARAM_COUNT {
        let (name, ty): (&CStr, ParamType) = PARAMS[i];
        let kind = match ty {
            ParamType::Int => sys::PARAM_INT,
            ParamType::Str => sys::PARAM_STR,
        };
        table[i] = sys::param_export_t {
            name: name.as_ptr() as *mut c_char,
            type_: kind | PARAM_USE_FUNC,
            param_pointer: SETTERS[i] as *mut c_void,
        };
        i += 1;
    }
    table
}
