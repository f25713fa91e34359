//! The modparams of OpenSIPS's `tracer`. Each one goes through a function,
//! so that a bad value, or a parameter this module does not implement yet,
//! stops OpenSIPS at startup with a message that names it.

use crate::core::endpoint::Endpoint;
use crate::core::trace_id::{self, TraceId};
use crate::guard::guard;
use crate::opensips::sys;
use std::ffi::CStr;
use std::os::raw::{c_char, c_int, c_void};
use std::sync::Mutex;

/// What the modparams said, until mod_init takes it.
#[derive(Debug, Default)]
pub struct Params {
    pub trace_ids: Vec<TraceId>,
    pub trace_on: Option<bool>,
    /// `trace_local_ip`: this server's end on what it sends, as traced.
    pub local_ip: Option<Endpoint>,
}

pub static PARAMS: Mutex<Params> =
    Mutex::new(Params { trace_ids: Vec::new(), trace_on: None, local_ip: None });

fn with_params<R>(f: impl FnOnce(&mut Params) -> R) -> R {
    f(&mut PARAMS.lock().unwrap_or_else(|e| e.into_inner()))
}

/// The tracer's other parameters, refused until they are implemented:
/// (name, whether it takes a string).
const NOT_YET: [(&CStr, bool); 16] = [
    (c"date_column", true),
    (c"callid_column", true),
    (c"trace_attrs_column", true),
    (c"msg_column", true),
    (c"method_column", true),
    (c"status_column", true),
    (c"fromproto_column", true),
    (c"fromip_column", true),
    (c"fromport_column", true),
    (c"toproto_column", true),
    (c"toip_column", true),
    (c"toport_column", true),
    (c"fromtag_column", true),
    (c"direction_column", true),
    (c"file_mode", false),
    (c"syslog_default_level", false),
];

pub const PARAM_COUNT: usize = 4 + NOT_YET.len();

/// `(1U << (8 * sizeof(int) - 1))`, which bindgen cannot evaluate.
const USE_FUNC_PARAM: sys::modparam_t = 1 << 31;

type ParamFn = unsafe extern "C" fn(sys::modparam_t, *mut c_void) -> c_int;

const fn entry(name: &CStr, string: bool, f: ParamFn) -> sys::param_export_t {
    sys::param_export_t {
        name: name.as_ptr(),
        type_: (if string { sys::STR_PARAM } else { sys::INT_PARAM }) | USE_FUNC_PARAM,
        param_pointer: f as *mut c_void,
    }
}

pub const fn param_exports() -> [sys::param_export_t; PARAM_COUNT + 1] {
    let null = sys::param_export_t { name: std::ptr::null(), type_: 0, param_pointer: std::ptr::null_mut() };
    let mut table = [null; PARAM_COUNT + 1];
    table[0] = entry(c"trace_id", true, set_trace_id);
    table[1] = entry(c"trace_on", false, set_trace_on);
    table[2] = entry(c"trace_local_ip", true, set_local_ip);
    table[3] = entry(c"syslog_default_facility", true, refuse::<{ NOT_YET.len() }>);
    let mut i = 0;
    while i < NOT_YET.len() {
        table[4 + i] = entry(NOT_YET[i].0, NOT_YET[i].1, REFUSERS[i]);
        i += 1;
    }
    table
}

/// One refusing function per parameter, as OpenSIPS does not say which
/// parameter a function is called for.
const REFUSERS: [ParamFn; NOT_YET.len()] = [
    refuse::<0>,
    refuse::<1>,
    refuse::<2>,
    refuse::<3>,
    refuse::<4>,
    refuse::<5>,
    refuse::<6>,
    refuse::<7>,
    refuse::<8>,
    refuse::<9>,
    refuse::<10>,
    refuse::<11>,
    refuse::<12>,
    refuse::<13>,
    refuse::<14>,
    refuse::<15>,
];

unsafe extern "C" fn refuse<const I: usize>(_type: sys::modparam_t, _value: *mut c_void) -> c_int {
    guard("modparam", -1, || {
        let name = NOT_YET.get(I).map_or("syslog_default_facility", |(n, _)| n.to_str().unwrap_or("?"));
        crate::log_error!(
            "modparam '{name}' is not implemented yet by this tracer module; remove it (it concerns \
             database columns, or file or syslog destinations)"
        );
        -1
    })
}

/// The text of a STR modparam.
///
/// # Safety
/// `value` must be the NUL-terminated string OpenSIPS passes.
unsafe fn text<'a>(value: *mut c_void) -> Option<&'a str> {
    if value.is_null() {
        return None;
    }
    // SAFETY: per the contract.
    unsafe { CStr::from_ptr(value as *const c_char) }.to_str().ok()
}

unsafe extern "C" fn set_trace_id(_type: sys::modparam_t, value: *mut c_void) -> c_int {
    guard("modparam trace_id", -1, || {
        // SAFETY: a STR modparam's value.
        let Some(text) = (unsafe { text(value) }) else {
            crate::log_error!("modparam 'trace_id' has a value that is not text");
            return -1;
        };
        match trace_id::parse(text) {
            Ok(id) => {
                with_params(|p| p.trace_ids.push(id));
                0
            }
            Err(e) => {
                crate::log_error!(
                    "modparam 'trace_id' has a bad value '{}': {e}",
                    crate::core::config::redact_url(text)
                );
                -1
            }
        }
    })
}

unsafe extern "C" fn set_local_ip(_type: sys::modparam_t, value: *mut c_void) -> c_int {
    guard("modparam trace_local_ip", -1, || {
        // SAFETY: a STR modparam's value.
        let Some(text) = (unsafe { text(value) }) else {
            crate::log_error!("modparam 'trace_local_ip' has a value that is not text");
            return -1;
        };
        // Empty leaves the real addresses, as in OpenSIPS's tracer.
        if text.trim().is_empty() {
            with_params(|p| p.local_ip = None);
            return 0;
        }
        match trace_id::parse_local_ip(text) {
            Ok(end) => {
                with_params(|p| p.local_ip = Some(end));
                0
            }
            Err(e) => {
                crate::log_error!("modparam 'trace_local_ip' has a bad value '{text}': {e}");
                -1
            }
        }
    })
}

unsafe extern "C" fn set_trace_on(_type: sys::modparam_t, value: *mut c_void) -> c_int {
    guard("modparam trace_on", -1, || match value as isize {
        v @ (0 | 1) => {
            with_params(|p| p.trace_on = Some(v == 1));
            0
        }
        v => {
            crate::log_error!("modparam 'trace_on' has a bad value '{v}': it is 0 or 1");
            -1
        }
    })
}

/// The modules `trace_id` needs initialized first: proto_hep for a hep:
/// destination, a database driver for a database one (the first of either
/// kind decides, as in OpenSIPS's tracer). OpenSIPS asks after each
/// `trace_id` line.
pub unsafe extern "C" fn trace_id_deps(_param: *const sys::param_export_t) -> *mut sys::module_dependency_t {
    use crate::core::trace_id::TraceTarget;
    guard("module dependencies", std::ptr::null_mut(), || {
        let needs = with_params(|p| {
            p.trace_ids.iter().find_map(|id| match &id.target {
                TraceTarget::Hep(_) => Some(true),
                TraceTarget::Db { .. } => Some(false),
                _ => None,
            })
        });
        // SAFETY: the core's helper allocates the dependency for OpenSIPS.
        unsafe {
            match needs {
                Some(true) => sys::alloc_module_dep(
                    sys::module_type_MOD_TYPE_DEFAULT,
                    c"proto_hep".as_ptr() as *mut c_char,
                    sys::DEP_ABORT,
                ),
                Some(false) => sys::alloc_module_dep(
                    sys::module_type_MOD_TYPE_SQLDB,
                    std::ptr::null_mut(),
                    sys::DEP_ABORT,
                ),
                None => std::ptr::null_mut(),
            }
        }
    })
}
