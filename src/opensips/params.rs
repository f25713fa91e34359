//! The modparams of OpenSIPS's `tracer`, all of them. Each one goes through
//! a function, so that a bad value stops OpenSIPS at startup with a message
//! that names the parameter and the value.

use crate::core::endpoint::Endpoint;
use crate::core::trace_id::{self, TraceId};
use crate::ffi::guard::guard;
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
    /// The `*_column` parameters, in the order of `COLUMN_PARAMS`.
    pub columns: [Option<String>; 14],
    /// `file_mode`: the permissions a `file:` destination is created with.
    pub file_mode: Option<u32>,
    pub syslog_level: Option<i32>,
    pub syslog_facility: Option<c_int>,
}

pub static PARAMS: Mutex<Params> = Mutex::new(Params {
    trace_ids: Vec::new(),
    trace_on: None,
    local_ip: None,
    columns: [const { None }; 14],
    file_mode: None,
    syslog_level: None,
    syslog_facility: None,
});

fn with_params<R>(f: impl FnOnce(&mut Params) -> R) -> R {
    f(&mut PARAMS.lock().unwrap_or_else(|e| e.into_inner()))
}

/// The `*_column` parameters, in the order of the row's values (db.rs).
pub const COLUMN_PARAMS: [&CStr; 14] = [
    c"msg_column",
    c"callid_column",
    c"method_column",
    c"status_column",
    c"fromproto_column",
    c"fromip_column",
    c"fromport_column",
    c"toproto_column",
    c"toip_column",
    c"toport_column",
    c"date_column",
    c"direction_column",
    c"fromtag_column",
    c"trace_attrs_column",
];

pub const PARAM_COUNT: usize = 6 + COLUMN_PARAMS.len();

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
    table[3] = entry(c"file_mode", false, set_file_mode);
    table[4] = entry(c"syslog_default_level", false, set_syslog_level);
    table[5] = entry(c"syslog_default_facility", true, set_syslog_facility);
    let mut i = 0;
    while i < COLUMN_PARAMS.len() {
        table[6 + i] = entry(COLUMN_PARAMS[i], true, COLUMN_SETTERS[i]);
        i += 1;
    }
    table
}

/// One function per column parameter, as OpenSIPS does not say which
/// parameter a function is called for.
const COLUMN_SETTERS: [ParamFn; COLUMN_PARAMS.len()] = [
    set_column::<0>,
    set_column::<1>,
    set_column::<2>,
    set_column::<3>,
    set_column::<4>,
    set_column::<5>,
    set_column::<6>,
    set_column::<7>,
    set_column::<8>,
    set_column::<9>,
    set_column::<10>,
    set_column::<11>,
    set_column::<12>,
    set_column::<13>,
];

unsafe extern "C" fn set_column<const I: usize>(_type: sys::modparam_t, value: *mut c_void) -> c_int {
    guard("modparam", -1, || {
        let name = COLUMN_PARAMS[I].to_str().unwrap_or("column");
        // SAFETY: a STR modparam's value.
        match unsafe { text(value) }.map(str::trim) {
            Some(column) if is_identifier(column) => {
                with_params(|p| p.columns[I] = Some(column.to_string()));
                0
            }
            other => {
                crate::log_error!(
                    "modparam '{name}' has a bad value '{}': a column name is letters, digits and _",
                    other.unwrap_or("")
                );
                -1
            }
        }
    })
}

fn is_identifier(name: &str) -> bool {
    name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && name.len() <= 64
}

unsafe extern "C" fn set_file_mode(_type: sys::modparam_t, value: *mut c_void) -> c_int {
    guard("modparam file_mode", -1, || match value as isize {
        mode @ 0..=0o7777 => {
            with_params(|p| p.file_mode = Some(mode as u32));
            0
        }
        mode => {
            crate::log_error!("modparam 'file_mode' has a bad value '{mode:o}' (octal): it is 0 to 07777");
            -1
        }
    })
}

unsafe extern "C" fn set_syslog_level(_type: sys::modparam_t, value: *mut c_void) -> c_int {
    guard("modparam syslog_default_level", -1, || {
        match crate::core::trace_text::parse_level(&(value as isize).to_string()) {
            Ok(level) => {
                with_params(|p| p.syslog_level = Some(level));
                0
            }
            Err(e) => {
                crate::log_error!("modparam 'syslog_default_level' has a bad value: {e}");
                -1
            }
        }
    })
}

unsafe extern "C" fn set_syslog_facility(_type: sys::modparam_t, value: *mut c_void) -> c_int {
    guard("modparam syslog_default_facility", -1, || {
        // SAFETY: a STR modparam's value.
        let name = unsafe { text(value) }.unwrap_or("");
        match crate::core::trace_text::facility(name) {
            Some(facility) => {
                with_params(|p| p.syslog_facility = Some(facility));
                0
            }
            None => {
                crate::log_error!(
                    "modparam 'syslog_default_facility' has a bad value '{name}': it is a syslog facility \
                     such as LOG_LOCAL0"
                );
                -1
            }
        }
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
                    crate::core::sql::redact_url(text)
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
