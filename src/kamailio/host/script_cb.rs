//! The core's script callbacks: run before and after the script routes
//! each message.

use super::msg::Msg;
use super::sys;
use crate::ffi::guard::guard;
use std::ffi::c_void;
use std::os::raw::{c_int, c_uint};

/// When a hook runs: before the script routes a message, or after.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum When {
    Before,
    After,
}

/// What runs around the script.
pub trait ScriptHook: 'static {
    /// `message` is the one being routed, when the core gives it.
    fn run(message: Option<Msg<'_>>);
}

/// Registers `H` around the request routes, and with `replies_too`
/// around the reply routes as well.
pub fn register<H: ScriptHook>(when: When, replies_too: bool) -> bool {
    let at = match when {
        When::Before => sys::PRE_SCRIPT_CB,
        When::After => sys::POST_SCRIPT_CB,
    };
    let mut kinds = sys::script_cb_flag_REQUEST_CB;
    if replies_too {
        kinds |= sys::script_cb_flag_ONREPLY_CB;
    }
    // SAFETY: the core keeps the static function pointer.
    unsafe { sys::register_script_cb(Some(hook::<H>), at | kinds, std::ptr::null_mut()) == 0 }
}

unsafe extern "C" fn hook<H: ScriptHook>(
    msg: *mut sys::sip_msg,
    _flags: c_uint,
    _param: *mut c_void,
) -> c_int {
    guard("a script callback", 1, || {
        // SAFETY: the core passes null or the live message it routes.
        H::run(unsafe { Msg::from_ptr(msg) });
        // Anything else than 0 lets Kamailio go on.
        1
    })
}
