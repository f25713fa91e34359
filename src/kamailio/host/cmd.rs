//! Script functions (`cmd_export_t`): the entries of the export table,
//! the fixups that check and prepare their parameters while the config is
//! read, and the calls, which hand the function the message and its
//! parameters.

use super::msg::Msg;
use super::pv::Variable;
use super::sys;
use crate::ffi::guard::guard;
use crate::ffi::host_bytes;
use std::ffi::{c_void, CStr};
use std::os::raw::{c_char, c_int};

/// How a parameter is prepared while the config is read.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ParamKind {
    /// A string that may hold pseudo-variables, evaluated at each call.
    Text,
    /// A constant the function's `check` turns into a number.
    Code,
    /// A variable the function sets.
    Variable,
}

/// A script function, in each of its forms (by parameter count).
pub trait ScriptFunction: 'static {
    /// Its name in the config.
    const NAME: &'static CStr;

    /// How parameter `index` (from 1) of the form with `count` parameters
    /// is prepared.
    fn kind(_index: usize, _count: usize) -> ParamKind {
        ParamKind::Text
    }

    /// Checks parameter `index` as the config writes it; for a `Code`
    /// parameter, gives its number. An error is logged and refuses the
    /// config.
    fn check(_index: usize, _count: usize, _text: &str) -> Result<usize, String> {
        Ok(0)
    }

    fn run(msg: Msg<'_>, params: &Params<'_>) -> c_int;
}

/// The parameters of one call, as their fixups prepared them.
pub struct Params<'a> {
    msg: Msg<'a>,
    slots: [*mut c_char; 5],
    count: usize,
    kind: fn(usize, usize) -> ParamKind,
}

impl Params<'_> {
    /// How many parameters this form of the function takes.
    pub fn count(&self) -> usize {
        self.count
    }

    fn slot(&self, index: usize, kind: ParamKind) -> Option<*mut c_char> {
        ((1..=self.count).contains(&index) && (self.kind)(index, self.count) == kind)
            .then(|| self.slots[index - 1])
    }

    /// The value of `Text` parameter `index` for this message; `None` if it
    /// cannot be evaluated.
    pub fn text(&self, index: usize) -> Option<Vec<u8>> {
        let param = self.slot(index, ParamKind::Text)?;
        let mut value = sys::str_ { s: std::ptr::null_mut(), len: 0 };
        // SAFETY: a Text parameter was fixed by fixup_spve_all; the message
        // is live during the call.
        if unsafe { sys::get_str_fparam(&mut value, self.msg.as_ptr(), param as *mut sys::fparam_t) } != 0 {
            return None;
        }
        // SAFETY: a successful evaluation gives `len` bytes, valid until the
        // next evaluation; copied at once.
        Some(unsafe { host_bytes(value.s, value.len) }.unwrap_or_default().to_vec())
    }

    /// The number `check` gave `Code` parameter `index`.
    pub fn code(&self, index: usize) -> Option<usize> {
        self.slot(index, ParamKind::Code).map(|p| (p as usize).wrapping_sub(1))
    }

    /// The variable of `Variable` parameter `index`.
    pub fn variable(&self, index: usize) -> Option<Variable> {
        // SAFETY: the fixup stored a spec of the core's cache there.
        self.slot(index, ParamKind::Variable)
            .and_then(|p| unsafe { Variable::from_ptr(p as *mut sys::pv_spec_t) })
    }
}

type Fn2 = unsafe extern "C" fn(*mut sys::sip_msg, *mut c_char, *mut c_char) -> c_int;
type Fn3 = unsafe extern "C" fn(*mut sys::sip_msg, *mut c_char, *mut c_char, *mut c_char) -> c_int;
type Fn4 =
    unsafe extern "C" fn(*mut sys::sip_msg, *mut c_char, *mut c_char, *mut c_char, *mut c_char) -> c_int;
type Fn5 = unsafe extern "C" fn(
    *mut sys::sip_msg,
    *mut c_char,
    *mut c_char,
    *mut c_char,
    *mut c_char,
    *mut c_char,
) -> c_int;
type Fixup = unsafe extern "C" fn(*mut *mut c_void, c_int) -> c_int;

/// The export entry of `F` with `N` parameters (at most 5).
pub const fn export<F: ScriptFunction, const N: usize>() -> sys::cmd_export_t {
    // SAFETY: Kamailio calls a function with as many parameters as its
    // param_no says; the declared type is only the table's slot type.
    let function: Fn2 = unsafe {
        match N {
            0..=2 => call2::<F, N>,
            3 => std::mem::transmute::<Fn3, Fn2>(call3::<F>),
            4 => std::mem::transmute::<Fn4, Fn2>(call4::<F>),
            5 => std::mem::transmute::<Fn5, Fn2>(call5::<F>),
            _ => panic!("a script function takes at most 5 parameters"),
        }
    };
    let (fixup, free): (Option<Fixup>, Option<Fixup>) =
        if N == 0 { (None, None) } else { (Some(fixup::<F, N>), Some(free_fixup::<F, N>)) };
    sys::cmd_export_t {
        name: F::NAME.as_ptr() as *mut c_char,
        function: Some(function),
        param_no: N as c_int,
        fixup,
        free_fixup: free,
        flags: sys::ANY_ROUTE,
    }
}

/// The entry that closes the table.
pub const fn end() -> sys::cmd_export_t {
    sys::cmd_export_t {
        name: std::ptr::null_mut(),
        function: None,
        param_no: 0,
        fixup: None,
        free_fixup: None,
        flags: 0,
    }
}

fn call<F: ScriptFunction, const N: usize>(msg: *mut sys::sip_msg, slots: [*mut c_char; 5]) -> c_int {
    guard(F::NAME.to_str().unwrap_or("a script function"), -1, || {
        // SAFETY: Kamailio passes the live message it routes.
        let Some(msg) = (unsafe { Msg::from_ptr(msg) }) else { return -1 };
        F::run(msg, &Params { msg, slots, count: N, kind: F::kind })
    })
}

unsafe extern "C" fn call2<F: ScriptFunction, const N: usize>(
    msg: *mut sys::sip_msg,
    p1: *mut c_char,
    p2: *mut c_char,
) -> c_int {
    call::<F, N>(msg, [p1, p2, std::ptr::null_mut(), std::ptr::null_mut(), std::ptr::null_mut()])
}

unsafe extern "C" fn call3<F: ScriptFunction>(
    msg: *mut sys::sip_msg,
    p1: *mut c_char,
    p2: *mut c_char,
    p3: *mut c_char,
) -> c_int {
    call::<F, 3>(msg, [p1, p2, p3, std::ptr::null_mut(), std::ptr::null_mut()])
}

unsafe extern "C" fn call4<F: ScriptFunction>(
    msg: *mut sys::sip_msg,
    p1: *mut c_char,
    p2: *mut c_char,
    p3: *mut c_char,
    p4: *mut c_char,
) -> c_int {
    call::<F, 4>(msg, [p1, p2, p3, p4, std::ptr::null_mut()])
}

unsafe extern "C" fn call5<F: ScriptFunction>(
    msg: *mut sys::sip_msg,
    p1: *mut c_char,
    p2: *mut c_char,
    p3: *mut c_char,
    p4: *mut c_char,
    p5: *mut c_char,
) -> c_int {
    call::<F, 5>(msg, [p1, p2, p3, p4, p5])
}

unsafe extern "C" fn fixup<F: ScriptFunction, const N: usize>(
    param: *mut *mut c_void,
    param_no: c_int,
) -> c_int {
    guard("a script function's fixup", -1, || {
        let index = usize::try_from(param_no).unwrap_or(0);
        // SAFETY: before its fixup, a parameter is the config's string.
        let text = unsafe { CStr::from_ptr(*param as *const c_char) }.to_string_lossy().into_owned();
        let code = match F::check(index, N, &text) {
            Ok(code) => code,
            Err(e) => {
                crate::log_error!("{e}");
                return -1;
            }
        };
        match F::kind(index, N) {
            // SAFETY: the core's fixup for string-or-pseudo-variable values.
            ParamKind::Text => unsafe { sys::fixup_spve_all(param, param_no) },
            ParamKind::Code => {
                // Kept off zero, which reads as no parameter.
                // SAFETY: the slot holds the parameter; the number replaces it.
                unsafe { *param = code.wrapping_add(1) as *mut c_void };
                0
            }
            ParamKind::Variable => match Variable::writable(&text) {
                Some(variable) => {
                    // SAFETY: as above; the spec belongs to the core's cache.
                    unsafe { *param = variable.as_ptr() as *mut c_void };
                    0
                }
                None => {
                    let name = F::NAME.to_string_lossy();
                    crate::log_error!("{name}(): '{text}' is not a variable that can be set");
                    -1
                }
            },
        }
    })
}

unsafe extern "C" fn free_fixup<F: ScriptFunction, const N: usize>(
    param: *mut *mut c_void,
    param_no: c_int,
) -> c_int {
    guard("a script function's free fixup", -1, || match F::kind(usize::try_from(param_no).unwrap_or(0), N) {
        // SAFETY: a Text parameter was fixed by fixup_spve_all.
        ParamKind::Text => unsafe { sys::fixup_free_spve_all(param, param_no) },
        ParamKind::Code => {
            // SAFETY: the slot holds a number, nothing to free.
            unsafe { *param = std::ptr::null_mut() };
            0
        }
        // The spec belongs to the core's cache.
        ParamKind::Variable => 0,
    })
}
