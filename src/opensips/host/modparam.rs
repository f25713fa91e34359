//! Modparams: the entries of the module's parameter table, each set
//! through a function (a Rust setter behind a trampoline), the modules a
//! parameter makes OpenSIPS initialize first, and other modules' values.

use super::sys;
use crate::ffi::guard::guard;
use std::ffi::CStr;
use std::os::raw::{c_char, c_int, c_void};

/// `(1U << (8 * sizeof(int) - 1))`, which bindgen cannot evaluate.
const USE_FUNC_PARAM: sys::modparam_t = 1 << 31;

/// A string modparam: its value, `None` when it is not UTF-8 text.
/// Returns false to refuse it (after logging why).
pub trait StrSetter {
    const NAME: &'static CStr;
    fn set(value: Option<&str>) -> bool;
}

/// An integer modparam. Returns false to refuse it (after logging why).
pub trait IntSetter {
    const NAME: &'static CStr;
    fn set(value: isize) -> bool;
}

type Setter = unsafe extern "C" fn(sys::modparam_t, *mut c_void) -> c_int;

const fn entry(name: &'static CStr, kind: sys::modparam_t, f: Setter) -> sys::param_export_t {
    sys::param_export_t { name: name.as_ptr(), type_: kind | USE_FUNC_PARAM, param_pointer: f as *mut c_void }
}

pub const fn string<S: StrSetter>() -> sys::param_export_t {
    entry(S::NAME, sys::STR_PARAM, set_str::<S>)
}

pub const fn int<S: IntSetter>() -> sys::param_export_t {
    entry(S::NAME, sys::INT_PARAM, set_int::<S>)
}

pub const END: sys::param_export_t =
    sys::param_export_t { name: std::ptr::null(), type_: 0, param_pointer: std::ptr::null_mut() };

unsafe extern "C" fn set_str<S: StrSetter>(_type: sys::modparam_t, value: *mut c_void) -> c_int {
    guard("modparam", -1, || {
        // SAFETY: OpenSIPS passes a STR modparam's value as a NUL-terminated
        // string, or null.
        let text = (!value.is_null()).then(|| unsafe { CStr::from_ptr(value as *const c_char) });
        if S::set(text.and_then(|t| t.to_str().ok())) {
            0
        } else {
            -1
        }
    })
}

unsafe extern "C" fn set_int<S: IntSetter>(_type: sys::modparam_t, value: *mut c_void) -> c_int {
    // OpenSIPS passes an INT modparam's value in the pointer's bits.
    guard("modparam", -1, || if S::set(value as isize) { 0 } else { -1 })
}

/// A module a parameter's value needs initialized before this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    Module(&'static CStr),
    /// Any SQL database driver.
    SqlDriver,
}

/// What OpenSIPS asks after each line that sets a parameter.
pub trait Dependencies {
    const PARAM: &'static CStr;
    fn needs() -> Option<Needs>;
}

pub const fn dependency<D: Dependencies>() -> sys::modparam_dependency_t {
    sys::modparam_dependency_t { script_param: D::PARAM.as_ptr() as *mut c_char, get_deps_f: Some(deps::<D>) }
}

pub const DEPENDENCY_END: sys::modparam_dependency_t =
    sys::modparam_dependency_t { script_param: std::ptr::null_mut(), get_deps_f: None };

unsafe extern "C" fn deps<D: Dependencies>(
    _param: *const sys::param_export_t,
) -> *mut sys::module_dependency_t {
    guard("module dependencies", std::ptr::null_mut(), || {
        // SAFETY: the core's helper allocates the dependency for OpenSIPS.
        unsafe {
            match D::needs() {
                Some(Needs::Module(name)) => sys::alloc_module_dep(
                    sys::module_type_MOD_TYPE_DEFAULT,
                    name.as_ptr() as *mut c_char,
                    sys::DEP_ABORT,
                ),
                Some(Needs::SqlDriver) => sys::alloc_module_dep(
                    sys::module_type_MOD_TYPE_SQLDB,
                    std::ptr::null_mut(),
                    sys::DEP_ABORT,
                ),
                None => std::ptr::null_mut(),
            }
        }
    })
}

/// An INT modparam of another module, as that module has it now.
pub fn int_of(module: &CStr, name: &CStr) -> Option<c_int> {
    // SAFETY: a lookup by NUL-terminated names; an INT_PARAM's storage is an int.
    unsafe {
        (sys::find_param_export(module.as_ptr(), name.as_ptr(), sys::INT_PARAM) as *const c_int).as_ref()
    }
    .copied()
}

/// A STR modparam of another module, as that module has it now.
pub fn str_of(module: &CStr, name: &CStr) -> Option<Vec<u8>> {
    // SAFETY: a lookup by NUL-terminated names; a STR_PARAM's storage is a
    // char * to a NUL-terminated string, or null.
    let p = unsafe {
        (sys::find_param_export(module.as_ptr(), name.as_ptr(), sys::STR_PARAM) as *const *const c_char)
            .as_ref()
    }?;
    // SAFETY: as above.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(*p) }.to_bytes().to_vec())
}
