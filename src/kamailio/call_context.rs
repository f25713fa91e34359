//! The traced call a process is working on, for the records that are not
//! SIP messages: the log lines it prints and the REST queries it makes.
//!
//! A message's processing is bracketed by the core's pre- and post-script
//! callbacks. Inside that bracket, the call becomes current when the script
//! starts a trace that asks for more than SIP, or when a callback of a
//! traced transaction or dialog runs for the message (a reply coming in,
//! the failure route, a request within the dialog). Outside, nothing is
//! current: work that no message started (timers, RPC) is never
//! attributed to a call.

use crate::core::endpoint::Endpoint;
use crate::core::event::TraceTypes;
use crate::ffi::guard::guard;
use crate::kamailio::trace_info::TraceInfo;
use crate::kamailio::tracer::ScriptTarget;
use crate::kamailio::{connections, net, sys};
use std::cell::{Cell, RefCell};
use std::ffi::c_void;
use std::os::raw::{c_int, c_uint};

/// A traced call, as the records beyond SIP need it.
pub struct CallContext {
    pub types: TraceTypes,
    pub target: ScriptTarget,
    /// The record's correlation id: the one the script gave, else the Call-ID.
    pub correlation: Vec<u8>,
    pub call_id: Vec<u8>,
    /// The ends of the message being processed.
    pub src: Endpoint,
    pub dst: Endpoint,
}

thread_local! {
    static IN_MESSAGE: Cell<bool> = const { Cell::new(false) };
    static CURRENT: RefCell<Option<CallContext>> = const { RefCell::new(None) };
    /// Types asked by sip_trace_types() for the message with this id and pid.
    static PENDING_TYPES: Cell<Option<(u32, c_int, TraceTypes)>> = const { Cell::new(None) };
}

/// Registers the callbacks that bracket each message's processing.
pub fn mod_init() -> Result<(), String> {
    let kinds = sys::script_cb_flag_REQUEST_CB | sys::script_cb_flag_ONREPLY_CB;
    for (when, function) in
        [(sys::PRE_SCRIPT_CB, before_script as ScriptCb), (sys::POST_SCRIPT_CB, after_script as ScriptCb)]
    {
        // SAFETY: the core keeps the static function pointer.
        if unsafe { sys::register_script_cb(Some(function), when | kinds, std::ptr::null_mut()) } != 0 {
            return Err("cannot register the script callbacks".into());
        }
    }
    Ok(())
}

type ScriptCb = unsafe extern "C" fn(*mut sys::sip_msg, c_uint, *mut c_void) -> c_int;

unsafe extern "C" fn before_script(msg: *mut sys::sip_msg, _flags: c_uint, _param: *mut c_void) -> c_int {
    guard("the before-script callback", 1, || {
        leave();
        IN_MESSAGE.with(|m| m.set(true));
        // SAFETY: the core passes the live message it is about to route.
        if let Some(m) = unsafe { msg.as_ref() } {
            connections::seen(&m.rcv);
        }
        1
    })
}

unsafe extern "C" fn after_script(_msg: *mut sys::sip_msg, _flags: c_uint, _param: *mut c_void) -> c_int {
    guard("the after-script callback", 1, || {
        leave();
        IN_MESSAGE.with(|m| m.set(false));
        1
    })
}

/// Records what `sip_trace_types()` asked for the message being processed.
pub fn ask_types(msg: &sys::sip_msg, types: TraceTypes) {
    PENDING_TYPES.with(|p| p.set(Some((msg.id, msg.pid, types))));
}

/// The types asked for `msg`, SIP alone when none were.
pub fn asked_types(msg: &sys::sip_msg) -> TraceTypes {
    match PENDING_TYPES.with(Cell::get) {
        Some((id, pid, types)) if id == msg.id && pid == msg.pid => types,
        _ => TraceTypes::SIP,
    }
}

/// Makes the call of `msg` current, if its trace asks for more than SIP
/// and a message is being processed.
///
/// # Safety
/// `msg` must be null or a live message.
pub unsafe fn enter(msg: *const sys::sip_msg, types: TraceTypes, target: ScriptTarget, correlation: &[u8]) {
    if !types.beyond_sip() || !IN_MESSAGE.with(Cell::get) {
        return;
    }
    // SAFETY: per the contract.
    let Some(m) = (unsafe { msg.as_ref() }) else { return };
    let Some(buf) = net::message_bytes(m) else { return };
    let Some(call_id) = crate::core::sip::call_id(buf) else { return };
    let Some((src, dst)) = net::received(&m.rcv) else { return };
    let correlation = if correlation.is_empty() { call_id } else { correlation };
    let context =
        CallContext { types, target, correlation: correlation.to_vec(), call_id: call_id.to_vec(), src, dst };
    CURRENT.with(|c| *c.borrow_mut() = Some(context));
    set_log_lines_traced(types.contains(TraceTypes::XLOG));
}

/// Makes the call `info` traces current, for message `msg` of it.
///
/// # Safety
/// As for [`enter`].
pub unsafe fn enter_traced(msg: *const sys::sip_msg, info: &TraceInfo) {
    // SAFETY: per the contract.
    unsafe { enter(msg, info.types(), info.target, info.correlation().unwrap_or_default()) }
}

fn leave() {
    if CURRENT.with(|c| c.borrow_mut().take()).is_some() {
        set_log_lines_traced(false);
    }
}

fn set_log_lines_traced(on: bool) {
    // SAFETY: a plain int of this process, read by the log hook.
    unsafe { sys::siptrace_shim_log_traced = c_int::from(on) };
}

/// Runs `f` with the current call, if there is one and it traces `kind`.
pub fn with_current<R>(kind: TraceTypes, f: impl FnOnce(&CallContext) -> R) -> Option<R> {
    CURRENT.with(|c| match c.try_borrow() {
        Ok(current) => current.as_ref().filter(|ctx| ctx.types.contains(kind)).map(f),
        // Re-entered while the context is being replaced: not traced.
        Err(_) => None,
    })
}
