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
use crate::kamailio::connections;
use crate::kamailio::host::log_hook;
use crate::kamailio::host::msg::{Msg, MsgKey};
use crate::kamailio::host::script_cb::{self, ScriptHook, When};
use crate::kamailio::state;
use crate::kamailio::trace_info::{self, TraceRef};
use crate::kamailio::tracer::ScriptTarget;
use std::cell::{Cell, RefCell};

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
    /// Types asked by sip_trace_types() for the message with this key.
    static PENDING_TYPES: Cell<Option<(MsgKey, TraceTypes)>> = const { Cell::new(None) };
}

/// Registers the callbacks that bracket each message's processing.
pub fn mod_init() -> Result<(), String> {
    if !script_cb::register::<BeforeScript>(When::Before, true)
        || !script_cb::register::<AfterScript>(When::After, true)
    {
        return Err("cannot register the script callbacks".into());
    }
    Ok(())
}

struct BeforeScript;

impl ScriptHook for BeforeScript {
    fn run(message: Option<Msg<'_>>) {
        leave();
        IN_MESSAGE.with(|m| m.set(true));
        if let (Some(msg), Some(state)) = (message, state::get()) {
            connections::seen(state, msg.received());
        }
    }
}

struct AfterScript;

impl ScriptHook for AfterScript {
    fn run(_message: Option<Msg<'_>>) {
        leave();
        IN_MESSAGE.with(|m| m.set(false));
    }
}

/// Records what `sip_trace_types()` asked for the message being processed.
pub fn ask_types(msg: Msg<'_>, types: TraceTypes) {
    PENDING_TYPES.with(|p| p.set(Some((msg.key(), types))));
}

/// The types asked for `msg`, SIP alone when none were.
pub fn asked_types(msg: Msg<'_>) -> TraceTypes {
    match PENDING_TYPES.with(Cell::get) {
        Some((key, types)) if key == msg.key() => types,
        _ => TraceTypes::SIP,
    }
}

/// Makes the call of `msg` current, if its trace asks for more than SIP
/// and a message is being processed.
pub fn enter(msg: Msg<'_>, types: TraceTypes, target: ScriptTarget, correlation: &[u8]) {
    if !types.beyond_sip() || !IN_MESSAGE.with(Cell::get) {
        return;
    }
    let Some(buf) = msg.bytes() else { return };
    let Some(call_id) = crate::core::sip::call_id(buf) else { return };
    let Some((src, dst)) = msg.received().ends() else { return };
    let correlation = if correlation.is_empty() { call_id } else { correlation };
    let context =
        CallContext { types, target, correlation: correlation.to_vec(), call_id: call_id.to_vec(), src, dst };
    CURRENT.with(|c| *c.borrow_mut() = Some(context));
    log_hook::set_traced(types.contains(TraceTypes::XLOG));
}

/// Makes the call `info` traces current, for message `msg` of it.
pub fn enter_traced(msg: Msg<'_>, info: &TraceRef) {
    enter(msg, info.types, info.target, trace_info::correlation(info).unwrap_or_default())
}

fn leave() {
    if CURRENT.with(|c| c.borrow_mut().take()).is_some() {
        log_hook::set_traced(false);
    }
}

/// Runs `f` with the current call, if there is one and it traces `kind`.
pub fn with_current<R>(kind: TraceTypes, f: impl FnOnce(&CallContext) -> R) -> Option<R> {
    CURRENT.with(|c| match c.try_borrow() {
        Ok(current) => current.as_ref().filter(|ctx| ctx.types.contains(kind)).map(f),
        // Re-entered while the context is being replaced: not traced.
        Err(_) => None,
    })
}
