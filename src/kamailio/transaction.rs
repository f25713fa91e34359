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

use crate::core::counters::Counters;
use crate::core::endpoint::Endpoint;
use crate::core::event::TraceTypes;
use crate::core::record::Scope;
use crate::core::record::{Direction, Timestamp, TraceRecord};
use crate::core::session::table::SessionCounter;
use crate::kamailio::host::msg::{Method, Msg};
use crate::kamailio::host::net::unknown_source;
use crate::kamailio::host::sl::{self, SlHandler, SlReply};
use crate::kamailio::host::socket::DestInfo;
use crate::kamailio::host::tm::{Cell, RegisterError, Tm, TmEvent, TmEventKind, TmEvents, TmHandler};
use crate::kamailio::state::{self, State};
use crate::kamailio::trace_info::{self, Origin, TraceInfo, TraceRef};
use crate::kamailio::tracer::{self, ScriptTarget};
use crate::kamailio::users::{self, Users};
use crate::kamailio::{call_context, connections, dialog};

/// Binds TM, when it is loaded, and registers the SL callbacks, when SL
/// is. Without TM, transaction tracing falls back to the current message,
/// as the C module does.
pub fn mod_init(trace_sl_acks: bool) -> Result<Option<Tm>, String> {
    let tm = Tm::bind();
    if tm.is_none() {
        crate::log_info!("the tm module is not loaded; transaction tracing will trace single messages");
    }
    if !sl::register::<Stateless>(trace_sl_acks)? {
        crate::log_info!("the sl module is not loaded; stateless replies will not be traced");
    }
    Ok(tm)
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
pub fn start(
    state: &State,
    msg: Msg<'_>,
    target: ScriptTarget,
    correlation: &[u8],
    scope: Scope,
    types: TraceTypes,
) -> Result<Start, String> {
    let Some(tm) = &state.tm else { return Ok(Start::TraceCurrent) };
    let Some(method) = msg.method() else {
        return Err(format!("{} tracing has to start on a request", scope.name()));
    };
    if belongs_to_traced_transaction(tm, msg, method) {
        return Ok(Start::AlreadyTraced);
    }
    // An ACK never gets a transaction: callbacks registered on it would only
    // wait in TM's list for the process's next request.
    if method == Method::Ack && scope == Scope::Transaction {
        return Ok(Start::TraceCurrent);
    }
    let dialogs = state.dialogs.as_ref().filter(|_| scope == Scope::Dialog);
    if scope == Scope::Dialog {
        if method != Method::Invite || has_to_tag(msg) {
            return Err("dialog tracing has to start on the initial INVITE".into());
        }
        if dialogs.is_none() {
            crate::log_warn!(
                "the dialog module is not loaded; dialog tracing traces the INVITE's transaction"
            );
        }
    }
    // An explicit call traces a method trace_skip_methods names, and its
    // transaction's replies.
    let skipped_method = !state.config.noise.skip_methods.is_empty()
        && msg
            .bytes()
            .and_then(crate::core::sip::summary)
            .and_then(|s| s.method())
            .is_some_and(|m| state.config.noise.skip_methods.contains(m));
    // This function's own holder, released when it returns.
    let info = TraceInfo::alloc(state, target, correlation, types, Origin::Script { skipped_method })
        .ok_or("out of shared memory")?;
    follow(state, msg, &info)?;
    if let Some(dialogs) = dialogs {
        dialog::start(state, dialogs, msg, &info)?;
    }
    Ok(Start::TraceCurrent)
}

/// Whether a request carries a To tag: it belongs to a dialog already.
fn has_to_tag(msg: Msg<'_>) -> bool {
    msg.bytes()
        .and_then(|buf| crate::core::sip::extract(buf).ok())
        .is_some_and(|fields| !fields.to_tag.is_empty())
}

/// The events a traced transaction's callback listens to.
fn events(info: &TraceRef) -> TmEvents {
    let events = TmEvents::REQUEST_SENT
        | TmEvents::RESPONSE_IN
        | TmEvents::RESPONSE_SENT
        | TmEvents::ACK_NEG_IN
        | TmEvents::E2ECANCEL_IN;
    // The failure route of a call that traces more than SIP runs with the
    // call current, for its log lines and REST queries.
    if info.types.beyond_sip() {
        events | TmEvents::ON_FAILURE
    } else {
        events
    }
}

fn register_error(e: RegisterError) -> &'static str {
    match e {
        RegisterError::Unavailable => "the tm module gave no register_tmcb",
        RegisterError::Refused => "TM refused the transaction callbacks",
    }
}

/// Traces what the transaction of request `msg` sends and receives, with
/// `info`, of which the transaction becomes a holder.
pub fn follow(state: &State, msg: Msg<'_>, info: &TraceRef) -> Result<(), String> {
    let tm = state.tm.as_ref().ok_or("the tm module is not loaded")?;
    tm.register::<Transactions>(msg, events(info), Some(info.clone())).map_err(register_error)?;
    msg.mark_traced();
    Ok(())
}

/// As [`follow`], for transaction `cell` that TM has just made for `msg`.
pub fn follow_on(state: &State, cell: Cell<'_>, msg: Msg<'_>, info: &TraceRef) -> Result<(), String> {
    let tm = state.tm.as_ref().ok_or("the tm module is not loaded")?;
    tm.register_on::<Transactions>(cell, msg, events(info), Some(info.clone())).map_err(register_error)?;
    msg.mark_traced();
    Ok(())
}

/// Whether `msg` is a CANCEL or a negative-reply ACK of a transaction that
/// is already traced: its callbacks trace it, so the script call must not.
fn belongs_to_traced_transaction(tm: &Tm, msg: Msg<'_>, method: Method) -> bool {
    let traced = |t: Cell<'_>| t.request().is_some_and(Msg::is_traced);
    match method {
        Method::Cancel => tm.with_cancelled(msg, traced).unwrap_or(false),
        Method::Ack => tm.with_acked(msg, traced).unwrap_or(false),
        _ => false,
    }
}

/// Queues one message of a traced transaction, unless tracing is off and
/// no traced user asks for it (a trace session's are queued either way),
/// or its method is one `trace_skip_methods` names (unless an explicit
/// script call started the trace on such a request, or `explicit` says
/// the message answers one).
fn enqueue(
    state: &State,
    direction: Direction,
    ends: (Endpoint, Endpoint),
    payload: &[u8],
    info: Option<&TraceRef>,
    connection: Option<i32>,
    explicit: bool,
) {
    let origin = info.map(|i| i.origin);
    let users = match origin {
        Some(Origin::Session { .. }) => Users::Default,
        _ => users::current(state),
    };
    let traced_users = match &users {
        Users::Skip => return,
        Users::Default => None,
        Users::List(packed) => Some(&packed[..]),
    };
    if info.is_some_and(|i| !i.types.contains(TraceTypes::SIP)) {
        return;
    }
    let explicit = explicit || matches!(origin, Some(Origin::Script { skipped_method: true }));
    if !explicit && state.config.noise.skips_message(payload) {
        Counters::add(&state.shared.counters.skipped_method);
        return;
    }
    let default = ScriptTarget { uri_given: false, dest: None };
    let target = info.map_or(default, |i| i.target);
    let (src, dst) = tracer::script_ends(state, direction, ends.0, ends.1);
    let extra = connection.map(crate::core::event::net_correlation);
    let record = TraceRecord {
        time: Timestamp::now(),
        direction,
        src,
        dst,
        payload,
        correlation_id: info.and_then(trace_info::correlation),
        extra_correlation: extra.as_deref().map(str::as_bytes),
        proto_type: crate::core::hep::proto_type::SIP,
        traced_users,
    };
    match origin {
        Some(Origin::Session { slot, id }) => {
            let queued = tracer::enqueue(state, &record, &tracer::session_outputs(state, target.dest));
            if let Some(table) = state.sessions {
                table.count(slot, id, if queued { SessionCounter::Sent } else { SessionCounter::Dropped }, 1);
            }
        }
        _ => {
            tracer::enqueue(state, &record, &tracer::script_outputs(state, &target));
        }
    }
}

/// Traces a message Kamailio received, from its own buffer.
pub fn trace_received(state: &State, msg: Msg<'_>, info: Option<&TraceRef>) {
    let (Some(ends), Some(payload)) = (msg.received().ends(), msg.bytes()) else { return };
    enqueue(
        state,
        Direction::In,
        ends,
        payload,
        info,
        connections::received_on(state, msg.received()),
        false,
    );
}

/// The ends of a message sent to `dst`, or, without one, from the socket
/// `req` arrived on to an unknown peer.
fn sent_ends(dst: Option<DestInfo<'_>>, req: Msg<'_>) -> Option<(Endpoint, Endpoint)> {
    match dst {
        Some(d) => d.ends(),
        None => Some((req.received().ends()?.1, unknown_source())),
    }
}

/// The one TM callback of a traced transaction.
struct Transactions;

impl TmHandler for Transactions {
    type Param = TraceInfo;

    fn on_event(event: &TmEvent<'_>, info: Option<&TraceRef>) {
        let Some(state) = state::get() else { return };
        match event.kind() {
            TmEventKind::RequestSent => request_sent(state, event, info),
            TmEventKind::ResponseIn => reply_received(state, event, info),
            TmEventKind::ResponseSent | TmEventKind::ResponseReady => reply_sent(state, event, info),
            TmEventKind::AckNegIn => negative_ack_received(state, event, info),
            TmEventKind::E2eCancelIn => cancel_received(state, event, info),
            TmEventKind::OnFailure => {
                if let (Some(info), Some(req)) = (info, event.request()) {
                    call_context::enter_traced(req, info);
                }
            }
            TmEventKind::Other => {}
        }
    }
}

/// A request the transaction sent on a branch, or the CANCEL it sent for
/// an INVITE.
fn request_sent(state: &State, event: &TmEvent<'_>, info: Option<&TraceRef>) {
    if event.is_retransmission() {
        return;
    }
    let Some(payload) = event.sent() else { return };
    let req = match event.request() {
        Some(req) => req,
        None => {
            // TM sends a CANCEL with no request of its own: it belongs to the INVITE.
            let Some(cell) = event.cell() else { return };
            if !cell.is_invite() || !payload.starts_with(b"CANCEL ") {
                return;
            }
            let Some(req) = cell.request() else { return };
            req
        }
    };
    if !req.is_traced() {
        return;
    }
    let Some(ends) = sent_ends(event.dest(), req) else { return };
    let connection = event.dest().and_then(|d| connections::sent_on(state, d));
    enqueue(state, Direction::Out, ends, payload, info, connection, false);
}

fn reply_received(state: &State, event: &TmEvent<'_>, info: Option<&TraceRef>) {
    let local = event.cell().and_then(|c| c.request()).is_none();
    let Some(reply) = event.reply() else { return };
    if local || !event.request().is_some_and(Msg::is_traced) {
        return;
    }
    if let Some(info) = info {
        // The reply's onreply_route runs next.
        call_context::enter_traced(reply, info);
    }
    trace_received(state, reply, info);
}

/// A reply the transaction sent: relayed, or made locally (a faked reply).
fn reply_sent(state: &State, event: &TmEvent<'_>, info: Option<&TraceRef>) {
    let Some(cell) = event.cell() else { return };
    let Some(req) = cell.request() else { return };
    if event.is_retransmission() {
        return;
    }
    // The reply of a traced CANCEL: its transaction was never marked.
    if event.kind() != TmEventKind::ResponseReady && !req.is_traced() {
        return;
    }
    let Some(payload) = event.sent().or_else(|| cell.response()) else { return };
    let Some(ends) = sent_ends(event.dest(), req) else { return };
    // A reply goes back on the connection its request came in on.
    let connection = event
        .dest()
        .and_then(|d| connections::sent_on(state, d))
        .or_else(|| connections::received_on(state, req.received()));
    enqueue(state, Direction::Out, ends, payload, info, connection, false);
}

fn negative_ack_received(state: &State, event: &TmEvent<'_>, info: Option<&TraceRef>) {
    // TM has been seen to pass other requests here; only ACKs count.
    if let Some(ack) = event.request().filter(|r| r.method() == Some(Method::Ack)) {
        trace_received(state, ack, info);
    }
}

/// An end-to-end CANCEL of a traced INVITE: traced in, and its own reply
/// traced when it is ready.
fn cancel_received(state: &State, event: &TmEvent<'_>, info: Option<&TraceRef>) {
    if event.is_retransmission() {
        return;
    }
    let (Some(tm), Some(cancel)) = (&state.tm, event.request()) else { return };
    // The CANCEL's transaction holds `info` too.
    match tm.register::<Transactions>(cancel, TmEvents::RESPONSE_READY, info.cloned()) {
        Ok(()) => {}
        Err(RegisterError::Unavailable) => return,
        Err(RegisterError::Refused) => {
            crate::log_warn!("cannot trace the reply to a CANCEL: TM refused the callback")
        }
    }
    cancel.mark_traced();
    trace_received(state, cancel, info);
}

/// The ends of a stateless reply to `req`: from the socket the request
/// came in on, to the reply's peer.
pub fn stateless_reply_ends(reply: &SlReply<'_>, req: Msg<'_>) -> Option<(Endpoint, Endpoint)> {
    let (_, local) = req.received().ends()?;
    let dst = match reply.peer() {
        Some(addr) => Endpoint { transport: local.transport, addr },
        None => unknown_source(),
    };
    Some((local, dst))
}

/// The stateless replies to requests the script traced as a transaction,
/// and the ACKs SL absorbs.
struct Stateless;

impl SlHandler for Stateless {
    fn reply_sent(reply: &SlReply<'_>) {
        let Some(state) = state::get() else { return };
        let Some(req) = reply.request().filter(|r| r.is_traced()) else { return };
        let Some(payload) = reply.payload() else { return };
        let Some(ends) = stateless_reply_ends(reply, req) else { return };
        // A traced request of a method trace_skip_methods names was traced
        // by an explicit script call (sessions never match one): its reply
        // is traced too.
        let connection = connections::received_on(state, req.received());
        enqueue(state, Direction::Out, ends, payload, None, connection, true);
    }

    /// The ACK of one of SL's own replies.
    fn ack_filtered(ack: Msg<'_>) {
        if let Some(state) = state::get() {
            trace_received(state, ack, None);
        }
    }
}
