//! The script's side of OpenSIPS: a script function's export, with its
//! parameters and their fixups, and the callbacks the core runs before
//! the script for each message.

use super::msg::Msg;
use super::sys;
use crate::ffi::guard::guard;
use std::ffi::CStr;
use std::os::raw::{c_int, c_void};

/// The routes a function may be called from.
pub const REQUEST_ROUTE: u32 = sys::REQUEST_ROUTE;
pub const FAILURE_ROUTE: u32 = sys::FAILURE_ROUTE;
pub const ONREPLY_ROUTE: u32 = sys::ONREPLY_ROUTE;
pub const BRANCH_ROUTE: u32 = sys::BRANCH_ROUTE;

/// What a fixup makes of a parameter's text, at startup.
pub enum Fixed {
    /// The function gets the text (the fixup only checked it).
    Keep,
    /// The function gets this value (`Args::value`); 0 reads as not given.
    Value(usize),
    /// The text is refused (the fixup logged why): OpenSIPS does not start.
    Refuse,
}

pub trait Fixup {
    fn fix(text: &[u8]) -> Fixed;
}

/// A parameter of a script function: text.
#[derive(Clone, Copy)]
pub struct Param(sys::cmd_param);

impl Param {
    const fn new(optional: bool, fixup: sys::fixup_function) -> Param {
        let flags = sys::CMD_PARAM_STR | if optional { sys::CMD_PARAM_OPT } else { 0 };
        Param(sys::cmd_param { flags: flags as c_int, fixup, free_fixup: None })
    }

    /// Text the function reads as it is (`Args::text`).
    pub const fn text(optional: bool) -> Param {
        Param::new(optional, None)
    }

    /// Text that `F` checks, or turns into a value, at startup.
    pub const fn fixed<F: Fixup>(optional: bool) -> Param {
        Param::new(optional, Some(fixup::<F>))
    }
}

/// A script function.
pub trait Function {
    const NAME: &'static CStr;
    /// `REQUEST_ROUTE | ...`
    const ROUTES: u32;
    /// At most 8.
    const PARAMS: &'static [Param];
    fn run(msg: &mut Msg, args: &Args) -> c_int;
}

/// The parameters a function gets, as its `PARAMS` say.
pub struct Args {
    raw: [*mut c_void; 8],
    params: &'static [Param],
}

impl Args {
    /// The value a fixup made of parameter `i`; 0 when not given.
    pub fn value(&self, i: usize) -> usize {
        self.raw.get(i).map_or(0, |&p| p as usize)
    }

    /// The text of parameter `i`, a `Param::text`; `None` when it is not
    /// given or empty.
    pub fn text(&self, i: usize) -> Option<&[u8]> {
        let param = self.params.get(i)?;
        if param.0.fixup.is_some() {
            return None;
        }
        // SAFETY: without a fixup, OpenSIPS passes a text parameter as a
        // `str`, valid during the call, or null when not given.
        unsafe { (self.raw[i] as *const sys::str_).as_ref().and_then(|s| super::bytes(s)) }
    }
}

const NO_PARAM: sys::cmd_param = sys::cmd_param { flags: 0, fixup: None, free_fixup: None };

pub const fn export<F: Function>() -> sys::cmd_export_t {
    // The ninth entry ends the list.
    assert!(F::PARAMS.len() <= 8);
    let mut params = [NO_PARAM; 9];
    let mut i = 0;
    while i < F::PARAMS.len() {
        params[i] = F::PARAMS[i].0;
        i += 1;
    }
    sys::cmd_export_t {
        name: F::NAME.as_ptr(),
        function: Some(function::<F>),
        params,
        flags: F::ROUTES as c_int,
    }
}

pub const END: sys::cmd_export_t =
    sys::cmd_export_t { name: std::ptr::null(), function: None, params: [NO_PARAM; 9], flags: 0 };

unsafe extern "C" fn fixup<F: Fixup>(param: *mut *mut c_void) -> c_int {
    guard("fixup", -1, || {
        // SAFETY: OpenSIPS passes the place of the parameter, which holds
        // its `str` until a fixup replaces it.
        let Some(place) = (unsafe { param.as_mut() }) else { return -1 };
        // SAFETY: as above; the `str` stays valid during the fixup.
        let Some(s) = (unsafe { (*place as *const sys::str_).as_ref() }) else { return -1 };
        // SAFETY: as above.
        match F::fix(unsafe { super::bytes(s) }.unwrap_or_default()) {
            Fixed::Keep => 0,
            Fixed::Value(value) => {
                *place = value as *mut c_void;
                0
            }
            Fixed::Refuse => -1,
        }
    })
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn function<F: Function>(
    msg: *mut sys::sip_msg,
    p1: *mut c_void,
    p2: *mut c_void,
    p3: *mut c_void,
    p4: *mut c_void,
    p5: *mut c_void,
    p6: *mut c_void,
    p7: *mut c_void,
    p8: *mut c_void,
) -> c_int {
    guard(F::NAME.to_str().unwrap_or("script function"), -1, || {
        // SAFETY: OpenSIPS passes the message being processed.
        let Some(msg) = (unsafe { Msg::from_ptr(msg) }) else { return -1 };
        F::run(msg, &Args { raw: [p1, p2, p3, p4, p5, p6, p7, p8], params: F::PARAMS })
    })
}

/// Which messages a callback before the script sees.
#[derive(Debug, Clone, Copy)]
pub enum Messages {
    Requests,
    RequestsAndReplies,
}

/// Has the core call `f` with each message, before the script. From mod_init.
pub fn before_script(which: Messages, f: fn(&mut Msg)) -> Result<(), String> {
    let kinds = sys::PRE_SCRIPT_CB
        | match which {
            Messages::Requests => sys::REQ_TYPE_CB,
            Messages::RequestsAndReplies => sys::REQ_TYPE_CB | sys::RPL_TYPE_CB,
        };
    // SAFETY: registering before forking; the core hands `f` back to
    // `before` as its parameter.
    if unsafe { sys::__register_script_cb(Some(before), kinds as c_int, f as *mut c_void, 0) } < 0 {
        return Err("cannot register the script callback".into());
    }
    Ok(())
}

unsafe extern "C" fn before(msg: *mut sys::sip_msg, param: *mut c_void) -> c_int {
    guard("script callback", sys::SCB_RUN_ALL as c_int, || {
        // SAFETY: the parameter `before_script` registered: an `fn(&mut Msg)`,
        // of the same size as a data pointer on the platforms OpenSIPS runs on.
        let f: fn(&mut Msg) = unsafe { std::mem::transmute::<*mut c_void, fn(&mut Msg)>(param) };
        // SAFETY: the message about to be processed.
        if let Some(msg) = unsafe { Msg::from_ptr(msg) } {
            f(msg);
        }
        sys::SCB_RUN_ALL as c_int
    })
}
