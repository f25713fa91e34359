//! Transaction tracing: the "t" mode of `sip_trace()` and `sip_trace_mode()`,
//! and `sip_trace()` on a message that carries `trace_flag`.
//!
//! The script traces the request where it asks. TM callbacks then trace what
//! the transaction sends and receives: the request on every branch, the
//! replies received, the replies sent (local ones and 100 Trying included),
//! the ACK of a negative reply, and an end-to-end CANCEL with its reply.
//! TM passes a retransmission flag; retransmissions are not traced again.
//! SL callbacks trace the stateless replies to a traced request, and the
//! ACKs the SL module absorbs (`trace_sl_acks`).
//!
//! What a traced transaction needs later is a `TraceInfo` block in shared
//! memory. Each transaction holds it through a single TM callback that
//! carries every event type, so TM releases it exactly once, with the
//! transaction.

use crate::core::endpoint::Endpoint;
use crate::core::event::TraceTypes;
use crate::core::record::Scope;
use crate::core::record::{Direction, Timestamp, TraceRecord};
use crate::ffi::guard::guard;
use crate::kamailio::trace_info::{release_callback, TraceInfo};
use crate::kamailio::tracer::{self, ScriptTarget};
use crate::kamailio::users::{self, Users};
use crate::kamailio::{call_context, connections, dialog, module, net, sys};
use std::ffi::c_void;
use std::os::raw::c_int;
use std::sync::OnceLock;

/// The TM callback events a traced transaction listens to.
const TRANSACTION_EVENTS: u32 = sys::TMCB_REQUEST_SENT
    | sys::TMCB_RESPONSE_IN
    | sys::TMCB_RESPONSE_SENT
    | sys::TMCB_ACK_NEG_IN
    | sys::TMCB_E2ECANCEL_IN;

/// TM's API, bound in mod_init.
struct Tm(sys::tm_binds);

// SAFETY: tm_binds is a table of function pointers (and unused pointer
// slots) that TM fills once, in mod_init before Kamailio forks; it is only
// read afterwards.
unsafe impl Sync for Tm {}
unsafe impl Send for Tm {}

static TM: OnceLock<Tm> = OnceLock::new();

fn tm() -> Option<&'static sys::tm_binds> {
    TM.get().map(|t| &t.0)
}

/// Binds TM and SL, when they are loaded, and registers the SL callbacks.
/// Without TM, transaction tracing falls back to the current message, as
/// the C module does.
pub fn mod_init(trace_sl_acks: bool) -> Result<(), String> {
    let mut binds = sys::tm_binds::default();
    // SAFETY: load_tm_api fills `binds` from the tm module, if it is loaded.
    if unsafe { sys::load_tm_api(&mut binds) } == 0 {
        let _ = TM.set(Tm(binds));
    } else {
        crate::log_info!("the tm module is not loaded; transaction tracing will trace single messages");
    }
    let mut sl = sys::sl_api_t::default();
    // SAFETY: sl_load_api fills `sl` from the sl module, if it is loaded.
    if unsafe { sys::sl_load_api(&mut sl) } != 0 {
        crate::log_info!("the sl module is not loaded; stateless replies will not be traced");
        return Ok(());
    }
    let register = sl.register_cb.ok_or("the sl module gave no register_cb")?;
    let mut callbacks =
        vec![(sys::SLCB_REPLY_READY, on_sl_reply as unsafe extern "C" fn(*mut sys::sl_cbp_t))];
    if trace_sl_acks {
        callbacks.push((sys::SLCB_ACK_FILTERED, on_sl_ack));
    }
    for (kind, function) in callbacks {
        let mut element = sys::sl_cbelem_t { type_: kind, cbf: Some(function), ..Default::default() };
        // SAFETY: SL copies the element; the function is static.
        if unsafe { register(&mut element) } != 0 {
            return Err("cannot register the SL callbacks".into());
        }
    }
    Ok(())
}

/// What the script call should do after `start`.
pub enum Start {
    /// Trace the current message too.
    TraceCurrent,
    /// Nothing more: the transaction this CANCEL or ACK belongs to is
    /// already traced, and its callbacks trace this message.
    AlreadyTraced,
}

/// Starts tracing the transaction of request `msg`, and with the dialog
/// scope the dialog that this initial INVITE creates.
///
/// # Safety
/// `msg` must be the live message the script is routing.
pub unsafe fn start(
    msg: *mut sys::sip_msg,
    target: ScriptTarget,
    correlation: &[u8],
    scope: Scope,
    types: TraceTypes,
) -> Result<Start, String> {
    let Some(tm) = tm() else { return Ok(Start::TraceCurrent) };
    // SAFETY: per the contract.
    let m = unsafe { &mut *msg };
    if m.first_line.type_ != sys::SIP_REQUEST as _ {
        return Err(format!("{} tracing has to start on a request", scope.name()));
    }
    // SAFETY: a request's first line holds the request variant.
    let method = unsafe { m.first_line.u.request.method_value } as u32;
    // SAFETY: msg is live; TM's lookups take it as they take any request.
    if unsafe { belongs_to_traced_transaction(tm, msg, method) } {
        return Ok(Start::AlreadyTraced);
    }
    // An ACK never gets a transaction: callbacks registered on it would only
    // wait in TM's list for the process's next request.
    if method == sys::request_method_METHOD_ACK && scope == Scope::Transaction {
        return Ok(Start::TraceCurrent);
    }
    let with_dialog = scope == Scope::Dialog && dialog::available();
    if scope == Scope::Dialog {
        if method != sys::request_method_METHOD_INVITE || has_to_tag(m) {
            return Err("dialog tracing has to start on the initial INVITE".into());
        }
        if !with_dialog {
            crate::log_warn!(
                "the dialog module is not loaded; dialog tracing traces the INVITE's transaction"
            );
        }
    }
    let info = TraceInfo::alloc(target, correlation, types).ok_or("out of shared memory")?;
    // SAFETY: `info` is held here until the release below; the message is live.
    let result = unsafe { follow(msg, info) }.and_then(|()| {
        if with_dialog {
            // SAFETY: as above.
            unsafe { dialog::start(msg, info) }
        } else {
            Ok(())
        }
    });
    // SAFETY: this function's own reference.
    unsafe { TraceInfo::release(info) };
    result.map(|()| Start::TraceCurrent)
}

/// Whether a request carries a To tag: it belongs to a dialog already.
fn has_to_tag(msg: &sys::sip_msg) -> bool {
    net::message_bytes(msg)
        .and_then(|buf| crate::core::sip::extract(buf).ok())
        .is_some_and(|fields| !fields.to_tag.is_empty())
}

/// Traces what the transaction of request `msg` sends and receives, with
/// `info`, of which the transaction becomes a holder.
///
/// # Safety
/// `msg` must be a live request; `info` a live block the caller holds.
pub unsafe fn follow(msg: *mut sys::sip_msg, info: *mut TraceInfo) -> Result<(), String> {
    let tm = tm().ok_or("the tm module is not loaded")?;
    let register = tm.register_tmcb.ok_or("the tm module gave no register_tmcb")?;
    // SAFETY: the caller holds `info`.
    unsafe { TraceInfo::retain(info) };
    // The failure route of a call that traces more than SIP runs with the
    // call current, for its log lines and REST queries.
    let events = if unsafe { &*info }.types().beyond_sip() {
        TRANSACTION_EVENTS | sys::TMCB_ON_FAILURE
    } else {
        TRANSACTION_EVENTS
    };
    // SAFETY: TM keeps the callback with the transaction (or the request,
    // until its transaction exists) and releases `info` with it, once.
    let registered = unsafe {
        register(
            msg,
            std::ptr::null_mut(),
            events as c_int,
            Some(on_event),
            info as _,
            Some(release_callback),
        )
    };
    if registered <= 0 {
        // SAFETY: TM did not take the reference.
        unsafe { TraceInfo::release(info) };
        return Err("TM refused the transaction callbacks".into());
    }
    // SAFETY: the caller's contract.
    unsafe { (*msg).msg_flags |= sys::FL_SIPTRACE };
    Ok(())
}

/// Whether `msg` is a CANCEL or a negative-reply ACK of a transaction that
/// is already traced: its callbacks trace it, so the script call must not.
///
/// # Safety
/// `msg` must be the live request the script is routing.
unsafe fn belongs_to_traced_transaction(tm: &sys::tm_binds, msg: *mut sys::sip_msg, method: u32) -> bool {
    let traced = |t: *mut sys::cell| {
        // SAFETY: a found transaction is referenced by the lookup.
        unsafe { t.as_ref().and_then(|t| t.uas.request.as_ref()) }
            .is_some_and(|r| r.msg_flags & sys::FL_SIPTRACE != 0)
    };
    let (Some(unref), Some(gett), Some(sett)) = (tm.unref_cell, tm.t_gett, tm.t_sett) else {
        return false;
    };
    // SAFETY: TM's lookups on a live request; each found cell is
    // referenced once by the lookup, and released here.
    unsafe {
        if method == sys::request_method_METHOD_CANCEL {
            let Some(lookup) = tm.t_lookup_original else { return false };
            let invite = lookup(msg);
            if invite.is_null() {
                return false;
            }
            let result = traced(invite);
            unref(invite);
            return result;
        }
        if method == sys::request_method_METHOD_ACK {
            let Some(lookup) = tm.t_lookup_request else { return false };
            let current = gett();
            let mut canceled: c_int = 0;
            let mut result = false;
            // 1: the ACK of a negative reply, its transaction set as current.
            if lookup(msg, 0, &mut canceled) == 1 {
                let t = gett();
                if !t.is_null() && t as isize != -1 {
                    result = traced(t);
                    unref(t);
                }
            }
            sett(current, sys::T_BR_UNDEFINED);
            return result;
        }
    }
    false
}

/// Whether `msg` belongs to a traced request.
fn is_traced(msg: *const sys::sip_msg) -> bool {
    // SAFETY: TM and SL pass null or live messages.
    unsafe { msg.as_ref() }.is_some_and(|m| m.msg_flags & sys::FL_SIPTRACE != 0)
}

fn is_faked(msg: *const sys::sip_msg) -> bool {
    msg.is_null() || msg as isize == -1
}

/// Queues one message of a traced transaction, unless tracing is off and
/// no traced user asks for it.
fn enqueue(
    direction: Direction,
    ends: (Endpoint, Endpoint),
    payload: &[u8],
    info: Option<&TraceInfo>,
    connection: Option<i32>,
) {
    let users = users::current();
    let traced_users = match &users {
        Users::Skip => return,
        Users::Default => None,
        Users::List(packed) => Some(&packed[..]),
    };
    if info.is_some_and(|i| !i.types().contains(TraceTypes::SIP)) {
        return;
    }
    let default = ScriptTarget { uri_given: false, dest: None };
    let target = info.map_or(default, |i| i.target);
    let (src, dst) = tracer::script_ends(direction, ends.0, ends.1);
    let extra = connection.map(crate::core::event::net_correlation);
    let record = TraceRecord {
        time: Timestamp::now(),
        direction,
        src,
        dst,
        payload,
        correlation_id: info.and_then(TraceInfo::correlation),
        extra_correlation: extra.as_deref().map(str::as_bytes),
        proto_type: crate::core::hep::proto_type::SIP,
        traced_users,
    };
    tracer::enqueue(&record, &tracer::script_outputs(&target));
}

/// Traces a message Kamailio received, from its own buffer.
///
/// # Safety
/// `msg` must be null or a live message.
pub unsafe fn trace_received(msg: *const sys::sip_msg, info: Option<&TraceInfo>) {
    // SAFETY: per the contract.
    let Some(m) = (unsafe { msg.as_ref() }) else { return };
    let (Some(ends), Some(payload)) = (net::received(&m.rcv), net::message_bytes(m)) else { return };
    enqueue(Direction::In, ends, payload, info, connections::received_on(&m.rcv));
}

/// The ends of a message sent to `dst`, or, without one, from the socket
/// `req` arrived on to an unknown peer.
///
/// # Safety
/// `dst` must be null or a live dest_info; `req` a live message.
unsafe fn sent_ends(dst: *const sys::dest_info, req: &sys::sip_msg) -> Option<(Endpoint, Endpoint)> {
    // SAFETY: per the contract.
    match unsafe { dst.as_ref() } {
        Some(d) => unsafe { net::sent(d) },
        None => Some((net::received(&req.rcv)?.1, net::unknown_source())),
    }
}

/// The one TM callback of a traced transaction.
unsafe extern "C" fn on_event(t: *mut sys::cell, kind: c_int, ps: *mut sys::tmcb_params) {
    guard("the transaction callback", (), || {
        // SAFETY: TM passes live parameters whose `param` points at the
        // TraceInfo registered with this callback.
        let Some(ps) = (unsafe { ps.as_ref() }) else { return };
        let info = unsafe { ps.param.as_ref().and_then(|p| (*p as *const TraceInfo).as_ref()) };
        let kind = kind as u32;
        // SAFETY: TM's cell and messages are live during the callback.
        unsafe {
            match kind {
                sys::TMCB_REQUEST_SENT => request_sent(t, ps, info),
                sys::TMCB_RESPONSE_IN => reply_received(t, ps, info),
                sys::TMCB_RESPONSE_SENT | sys::TMCB_RESPONSE_READY => reply_sent(t, kind, ps, info),
                sys::TMCB_ACK_NEG_IN => negative_ack_received(ps, info),
                sys::TMCB_E2ECANCEL_IN => cancel_received(ps, info),
                sys::TMCB_ON_FAILURE => {
                    if let Some(info) = info {
                        call_context::enter_traced(ps.req, info);
                    }
                }
                _ => {}
            }
        }
    })
}

/// A request the transaction sent on a branch, or the CANCEL it sent for
/// an INVITE.
unsafe fn request_sent(t: *mut sys::cell, ps: &sys::tmcb_params, info: Option<&TraceInfo>) {
    if ps.flags as u32 & sys::TMCB_RETR_F != 0 {
        return;
    }
    // SAFETY: the caller's contract.
    let Some(payload) = (unsafe { net::str_bytes(&ps.send_buf) }) else { return };
    let mut req = ps.req;
    if req.is_null() {
        // TM sends a CANCEL with no request of its own: it belongs to the INVITE.
        let Some(cell) = (unsafe { t.as_ref() }) else { return };
        if u32::from(cell.flags) & sys::T_IS_INVITE_FLAG == 0 || !payload.starts_with(b"CANCEL ") {
            return;
        }
        req = cell.uas.request;
    }
    if !is_traced(req) {
        return;
    }
    // SAFETY: checked non-null above; dst is null or live.
    let Some(ends) = (unsafe { sent_ends(ps.dst, &*req) }) else { return };
    let connection = unsafe { ps.dst.as_ref() }.and_then(connections::sent_on);
    enqueue(Direction::Out, ends, payload, info, connection);
}

unsafe fn reply_received(t: *mut sys::cell, ps: &sys::tmcb_params, info: Option<&TraceInfo>) {
    // SAFETY: the caller's contract.
    let local = !unsafe { t.as_ref() }.is_some_and(|c| !c.uas.request.is_null());
    if local || is_faked(ps.rpl) || !is_traced(ps.req) {
        return;
    }
    if let Some(info) = info {
        // SAFETY: the reply is live; its onreply_route runs next.
        unsafe { call_context::enter_traced(ps.rpl, info) };
    }
    unsafe { trace_received(ps.rpl, info) };
}

/// A reply the transaction sent: relayed, or made locally (a faked reply).
unsafe fn reply_sent(t: *mut sys::cell, kind: u32, ps: &sys::tmcb_params, info: Option<&TraceInfo>) {
    // SAFETY: the caller's contract.
    let Some(cell) = (unsafe { t.as_ref() }) else { return };
    let Some(req) = (unsafe { cell.uas.request.as_ref() }) else { return };
    if ps.flags as u32 & sys::TMCB_RETR_F != 0 {
        return;
    }
    // The reply of a traced CANCEL: its transaction was never marked.
    if kind != sys::TMCB_RESPONSE_READY && !is_traced(req) {
        return;
    }
    let response = &cell.uas.response;
    let payload = unsafe { net::str_bytes(&ps.send_buf) }.or_else(|| {
        let s = sys::str_ { s: response.buffer, len: response.buffer_len };
        unsafe { net::str_bytes(&s) }
    });
    let Some(payload) = payload else { return };
    let Some(ends) = (unsafe { sent_ends(ps.dst, req) }) else { return };
    // A reply goes back on the connection its request came in on.
    let connection = unsafe { ps.dst.as_ref() }
        .and_then(connections::sent_on)
        .or_else(|| connections::received_on(&req.rcv));
    enqueue(Direction::Out, ends, payload, info, connection);
}

unsafe fn negative_ack_received(ps: &sys::tmcb_params, info: Option<&TraceInfo>) {
    // SAFETY: the caller's contract.
    let Some(ack) = (unsafe { ps.req.as_ref() }) else { return };
    // TM has been seen to pass other requests here; only ACKs count.
    let is_ack = ack.first_line.type_ == sys::SIP_REQUEST as _
        && unsafe { ack.first_line.u.request.method_value } as u32 == sys::request_method_METHOD_ACK;
    if is_ack {
        unsafe { trace_received(ps.req, info) };
    }
}

/// An end-to-end CANCEL of a traced INVITE: traced in, and its own reply
/// traced when it is ready.
unsafe fn cancel_received(ps: &sys::tmcb_params, info: Option<&TraceInfo>) {
    if ps.flags as u32 & sys::TMCB_RETR_F != 0 {
        return;
    }
    let cancel = ps.req;
    let (Some(tm), Some(c)) = (tm(), unsafe { cancel.as_mut() }) else { return };
    let Some(register) = tm.register_tmcb else { return };
    let param = info.map_or(std::ptr::null_mut(), |i| i as *const TraceInfo as *mut TraceInfo);
    if !param.is_null() {
        // SAFETY: the INVITE's callback holds `info` while this runs.
        unsafe { TraceInfo::retain(param) };
    }
    // SAFETY: registering on the live CANCEL, which releases its reference.
    if unsafe {
        register(
            cancel,
            std::ptr::null_mut(),
            sys::TMCB_RESPONSE_READY as c_int,
            Some(on_event),
            param as *mut c_void,
            Some(release_callback),
        )
    } <= 0
    {
        if !param.is_null() {
            // SAFETY: TM did not take the reference.
            unsafe { TraceInfo::release(param) };
        }
        crate::log_warn!("cannot trace the reply to a CANCEL: TM refused the callback");
    }
    c.msg_flags |= sys::FL_SIPTRACE;
    unsafe { trace_received(cancel, info) };
}

/// A stateless reply to a request the script traced as a transaction.
unsafe extern "C" fn on_sl_reply(cbp: *mut sys::sl_cbp_t) {
    guard("the stateless reply callback", (), || {
        // SAFETY: SL passes live parameters for the reply it sends.
        let Some(p) = (unsafe { cbp.as_ref() }) else { return };
        if !is_traced(p.req) {
            return;
        }
        let req = unsafe { &*p.req };
        let Some(payload) = (unsafe { p.reply.as_ref() }).and_then(|s| unsafe { net::str_bytes(s) }) else {
            return;
        };
        let Some((_, local)) = net::received(&req.rcv) else { return };
        let peer = unsafe { p.dst.as_ref() }.and_then(|d| net::socket_addr(&d.to));
        let dst = match peer {
            Some(addr) => Endpoint { transport: local.transport, addr },
            None => net::unknown_source(),
        };
        enqueue(Direction::Out, (local, dst), payload, None, connections::received_on(&req.rcv));
    })
}

/// An ACK the SL module absorbed: the ACK of one of its own replies.
unsafe extern "C" fn on_sl_ack(cbp: *mut sys::sl_cbp_t) {
    guard("the stateless ACK callback", (), || {
        if module::get().is_none() {
            return;
        }
        // SAFETY: SL passes the live ACK it filtered.
        if let Some(p) = unsafe { cbp.as_ref() } {
            unsafe { trace_received(p.req, None) };
        }
    })
}
