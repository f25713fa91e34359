//! Trace sessions: tracing on demand, started and stopped at run time with
//! `siptrace.trace_start name filter seconds [uri [scope]]`,
//! `siptrace.trace_stop name` and `siptrace.trace_list`.
//!
//! The sessions live in shared memory (`core::session::table`). Before
//! the script routes a request, each SIP worker matches initial requests
//! (no To tag; not ACK or CANCEL) against its copy of the running
//! sessions: one atomic load while none runs. A matched request is traced
//! at once, to the session's destination; with the `t` or `d` scope, the
//! transaction TM then creates for it (TMCB_REQUEST_IN) is followed as
//! `sip_trace()` follows one, and with `d` its dialog too. A stateless
//! reply to a matched request is traced as well. All of it whether
//! `trace_on` is set or not.
//!
//! A session's records go to its own URI, as HEP with `hep_mode_on` and
//! as SIP copies without; with no URI, where `sip_trace()` without one
//! sends. Each record counts as sent (queued to the senders) or dropped
//! for its session, as each matched call counts as matched.

use crate::core::counters::Counters;
use crate::core::dest::DestUri;
use crate::core::endpoint::{Endpoint, Transport};
use crate::core::event::TraceTypes;
use crate::core::hep::proto_type::SIP;
use crate::core::record::{Direction, Scope, Timestamp, TraceRecord};
use crate::core::sender::tls;
use crate::core::session::filter::Request;
use crate::core::session::table::{
    now_ms, Match, SessionCache, SessionCounter, SessionInfo, SessionTable, TableError,
};
use crate::core::session::{self, Limits, Resolved, StartArgs};
use crate::core::sip;
use crate::kamailio::config::Config;
use crate::kamailio::host::msg::{Method, Msg, MsgKey};
use crate::kamailio::host::rpc::{self, RpcCommand, RpcCtx, RpcDoc, RpcStruct};
use crate::kamailio::host::script_cb::{self, ScriptHook, When};
use crate::kamailio::host::shm;
use crate::kamailio::host::sl::{self, SlHandler, SlReply};
use crate::kamailio::host::tm::{Cell, TmRequestIn};
use crate::kamailio::state::{self, State};
use crate::kamailio::trace_info::{Origin, TraceInfo};
use crate::kamailio::tracer::{self, ScriptTarget};
use crate::kamailio::{connections, dialog, transaction};
use smallvec::SmallVec;
use std::cell::RefCell;
use std::ffi::{CStr, CString};
use std::path::Path;

/// The sessions a request matched, until TM makes its transaction or a
/// stateless reply answers it.
struct Matched {
    request: MsgKey,
    sessions: SmallVec<[Match; 2]>,
    /// Whether TM made the request's transaction, which follows them now.
    followed: bool,
}

thread_local! {
    // Kamailio's workers are single-threaded processes.
    /// This worker's copy of the running sessions.
    static CACHE: RefCell<SessionCache> = const { RefCell::new(SessionCache::new()) };
    static MATCHED: RefCell<Option<Matched>> = const { RefCell::new(None) };
}

/// The session table, and the hook that matches requests; none with
/// `trace_sessions_max` 0.
pub fn mod_init(config: &Config) -> Result<Option<&'static SessionTable>, String> {
    if config.sessions_max == 0 {
        return Ok(None);
    }
    let table = shm::new_session_table(config.sessions_max)?;
    if !script_cb::register::<BeforeRequest>(When::Before, false) {
        return Err("cannot register the script callback that matches trace sessions".into());
    }
    // Without sl, no stateless reply is sent that could be traced.
    sl::register::<StatelessReplies>(false)?;
    Ok(Some(table))
}

/// In the main process after every mod_init, before Kamailio forks (TM's
/// list of new-transaction callbacks exists only after TM's mod_init).
pub fn proc_init(state: &State) -> Result<(), String> {
    if let (Some(_), Some(tm)) = (state.sessions, &state.tm) {
        tm.on_request_in::<NewTransaction>()
            .map_err(|_| "cannot register for the transactions TM creates, which trace sessions follow")?;
    }
    Ok(())
}

/// Matches each request against the running sessions, before the script
/// routes it.
struct BeforeRequest;

impl ScriptHook for BeforeRequest {
    fn run(message: Option<Msg<'_>>) {
        let Some(state) = state::get() else { return };
        let Some(table) = state.sessions else { return };
        MATCHED.with(|m| m.borrow_mut().take());
        if !table.any() {
            return;
        }
        let Some(msg) = message else { return };
        if !matches!(msg.method(), Some(Method::Invite | Method::Other)) {
            return;
        }
        let now = now_ms();
        let mut found = Vec::new();
        let Some(payload) = msg.bytes() else { return };
        let Some((src, dst)) = msg.received().ends() else { return };
        let matched = CACHE.with(|cache| {
            // Not re-entered: nothing below runs a script.
            let Ok(mut cache) = cache.try_borrow_mut() else { return false };
            cache.refresh(table);
            if !cache.any_running(now) {
                return false;
            }
            let Some(summary) = sip::summary(payload) else { return false };
            if summary.to_tagged
                || summary.method().is_some_and(|m| state.config.noise.skip_methods.contains(m))
            {
                return false;
            }
            cache.matches(&Request::new(&summary, src.addr.ip()), now, &mut found);
            !found.is_empty()
        });
        if !matched {
            return;
        }
        let (src, dst) = tracer::script_ends(state, Direction::In, src, dst);
        let extra = connections::received_on(state, msg.received()).map(crate::core::event::net_correlation);
        let record = TraceRecord {
            time: Timestamp::now(),
            direction: Direction::In,
            src,
            dst,
            payload,
            correlation_id: None,
            extra_correlation: extra.as_deref().map(str::as_bytes),
            proto_type: SIP,
            traced_users: None,
        };
        for m in &found {
            table.count(m.slot, m.id, SessionCounter::Matched, 1);
            Counters::add(&state.shared.counters.session_calls_matched);
            send(state, table, m, &record);
        }
        let follow: SmallVec<[Match; 2]> = found.into_iter().filter(|m| m.scope != Scope::Message).collect();
        if !follow.is_empty() {
            MATCHED.with(|m| {
                *m.borrow_mut() = Some(Matched { request: msg.key(), sessions: follow, followed: false });
            });
        }
    }
}

/// Queues a record of session `m`, and counts it for the session.
fn send(state: &State, table: &SessionTable, m: &Match, record: &TraceRecord<'_>) {
    let queued = tracer::enqueue(state, record, &tracer::session_outputs(state, m.dest));
    let counter = if queued { SessionCounter::Sent } else { SessionCounter::Dropped };
    table.count(m.slot, m.id, counter, 1);
}

/// TM made the transaction of a request: if the request matched sessions
/// of the `t` or `d` scope, the transaction (and with `d`, the dialog of an
/// INVITE) is traced for each of them.
struct NewTransaction;

impl TmRequestIn for NewTransaction {
    fn created(cell: Cell<'_>, request: Msg<'_>) {
        let sessions = MATCHED.with(|m| match &mut *m.borrow_mut() {
            Some(matched) if matched.request == request.key() && !matched.followed => {
                matched.followed = true;
                Some(matched.sessions.clone())
            }
            _ => None,
        });
        let (Some(sessions), Some(state)) = (sessions, state::get()) else { return };
        for m in sessions {
            let target = ScriptTarget { uri_given: m.dest.is_some(), dest: m.dest };
            let origin = Origin::Session { slot: m.slot, id: m.id };
            let Some(info) = TraceInfo::alloc(state, target, b"", TraceTypes::SIP, origin) else {
                crate::log_warn!("trace session: out of shared memory; the call's transaction is not traced");
                return;
            };
            if let Err(e) = transaction::follow_on(state, cell, request, &info) {
                crate::log_warn!("trace session: cannot trace the transaction: {e}");
                continue;
            }
            if m.scope == Scope::Dialog && request.method() == Some(Method::Invite) {
                if let Some(dialogs) = &state.dialogs {
                    if let Err(e) = dialog::start(state, dialogs, request, &info) {
                        crate::log_warn!("trace session: cannot trace the dialog: {e}");
                    }
                }
            }
        }
    }
}

/// A stateless reply to a request that matched sessions and got no
/// transaction: traced for each.
struct StatelessReplies;

impl SlHandler for StatelessReplies {
    fn reply_sent(reply: &SlReply<'_>) {
        let Some(state) = state::get() else { return };
        if !state.sessions.is_some_and(SessionTable::any) {
            return;
        }
        let (Some(request), Some(payload)) = (reply.request(), reply.payload()) else { return };
        if let Some(ends) = transaction::stateless_reply_ends(reply, request) {
            stateless_reply(state, request, payload, ends);
        }
    }

    fn ack_filtered(_ack: Msg<'_>) {}
}

fn stateless_reply(state: &State, request: Msg<'_>, payload: &[u8], ends: (Endpoint, Endpoint)) {
    let Some(table) = state.sessions else { return };
    let sessions = MATCHED.with(|m| match &*m.borrow() {
        Some(matched) if matched.request == request.key() && !matched.followed => {
            Some(matched.sessions.clone())
        }
        _ => None,
    });
    let Some(sessions) = sessions else { return };
    let (src, dst) = tracer::script_ends(state, Direction::Out, ends.0, ends.1);
    let extra = connections::received_on(state, request.received()).map(crate::core::event::net_correlation);
    let record = TraceRecord {
        time: Timestamp::now(),
        direction: Direction::Out,
        src,
        dst,
        payload,
        correlation_id: None,
        extra_correlation: extra.as_deref().map(str::as_bytes),
        proto_type: SIP,
        traced_users: None,
    };
    for m in &sessions {
        send(state, table, m, &record);
    }
}

/// Sessions that have not ended, for the statistic.
pub fn active(state: &State) -> u64 {
    state.sessions.map_or(0, |t| u64::from(t.active(now_ms())))
}

/// What the configuration sets for sessions, for `trace_start`.
fn limits(state: &State) -> Limits {
    Limits {
        max_seconds: state.config.session_max_seconds,
        default_scope: if state.dialogs.is_some() { Scope::Dialog } else { Scope::Transaction },
        streams: state.config.settings.hep.version == 3,
    }
}

/// Resolves a session's URI: in the RPC process that runs `trace_start`,
/// once, never per message. A TLS destination's certificate name and the
/// CA file the senders check it with must be usable.
fn resolve(state: &State, uri: &DestUri) -> Result<Resolved, String> {
    let dest = uri.resolve().map_err(|e| e.0)?;
    if dest.transport != Transport::Tls {
        return Ok((dest, None));
    }
    tls::server_name(&uri.host_text())?;
    tls::client_config(Path::new(&state.config.settings.senders.tls_ca_file))?;
    Ok((dest, Some(uri.host_text())))
}

/// The state and the session table, or the fault that says why not.
fn table(ctx: &RpcCtx<'_>) -> Option<(&'static State, &'static SessionTable)> {
    let Some(state) = state::get() else {
        ctx.fault(500, c"Internal error: the module is not initialized");
        return None;
    };
    let Some(table) = state.sessions else {
        ctx.fault(500, c"trace sessions are off: trace_sessions_max is 0");
        return None;
    };
    Some((state, table))
}

fn fault(ctx: &RpcCtx<'_>, code: i32, text: &str) {
    let text = CString::new(text.replace('\0', " ")).unwrap_or_default();
    ctx.fault(code, &text);
}

fn table_fault(ctx: &RpcCtx<'_>, e: &TableError) {
    let code = match e {
        TableError::Busy | TableError::TooBig => 500,
        TableError::NotFound(_) => 404,
        TableError::NameTaken(_) | TableError::Full(_) => 400,
    };
    fault(ctx, code, &e.to_string());
}

/// Logs the sessions that ended by themselves since the last command.
fn log_ended(ended: &[SessionInfo]) {
    for s in ended {
        crate::log_info!("trace session '{}' ended after {} s: {}", s.spec.name, s.spec.seconds, counts(s));
    }
}

fn counts(s: &SessionInfo) -> String {
    format!("{} calls matched, {} records sent, {} dropped", s.matched, s.sent, s.dropped)
}

/// A session's members in a reply.
fn describe(reply: &RpcStruct<'_>, s: &SessionInfo) {
    reply.add_str(c"name", s.spec.name.as_bytes());
    reply.add_str(c"filter", s.spec.filter.to_string().as_bytes());
    reply.add_str(c"uri", s.spec.uri_text().as_bytes());
    reply.add_str(c"scope", s.spec.scope_letter().as_bytes());
    reply.add_int(c"seconds", u64::from(s.spec.seconds));
    reply.add_int(c"time_left", s.left_ms.div_ceil(1000));
    reply.add_int(c"calls_matched", s.matched);
    reply.add_int(c"records_sent", s.sent);
    reply.add_int(c"records_dropped", s.dropped);
}

/// `siptrace.trace_start name filter seconds [uri [scope]]`.
pub struct TraceStart;

pub static TRACE_START_DOC: RpcDoc = rpc::doc(
    c"Start a trace session: name, filter (key=value;... with keys from, to, ruri, src, method, callid), \
seconds, and optionally the URI its records go to (or default) and the scope (m, t or d).",
);

impl RpcCommand for TraceStart {
    const NAME: &'static CStr = c"siptrace.trace_start";

    fn run(ctx: &RpcCtx<'_>) {
        let Some((state, table)) = table(ctx) else { return };
        let mut args: Vec<String> = Vec::new();
        while args.len() < 6 {
            match ctx.scan_optional() {
                Some(arg) => args.push(String::from_utf8_lossy(&arg).into_owned()),
                None => break,
            }
        }
        if args.len() > 5 {
            fault(ctx, 400, "too many parameters: name filter seconds [uri [scope]]");
            return;
        }
        let arg = |i: usize| args.get(i).map(String::as_str);
        let start = StartArgs { name: arg(0), filter: arg(1), seconds: arg(2), uri: arg(3), scope: arg(4) };
        let spec = match session::parse_start(&start, &limits(state), |uri| resolve(state, uri)) {
            Ok(spec) => spec,
            Err(e) => {
                fault(ctx, 400, &e.to_string());
                return;
            }
        };
        match table.start(&spec, now_ms()) {
            Ok((started, ended)) => {
                log_ended(&ended);
                crate::log_info!(
                    "trace session '{}' started: filter {}, {} s, to {}, scope {}",
                    spec.name,
                    spec.filter,
                    spec.seconds,
                    spec.uri_text(),
                    spec.scope_letter()
                );
                if let Some(reply) = ctx.add_struct() {
                    describe(&reply, &started);
                }
            }
            Err(e) => table_fault(ctx, &e),
        }
    }
}

/// `siptrace.trace_stop name`.
pub struct TraceStop;

pub static TRACE_STOP_DOC: RpcDoc =
    rpc::doc(c"Stop the trace session of this name; replies its last counts.");

impl RpcCommand for TraceStop {
    const NAME: &'static CStr = c"siptrace.trace_stop";

    fn run(ctx: &RpcCtx<'_>) {
        let Some((_, table)) = table(ctx) else { return };
        let name = ctx.scan_optional().map(|n| String::from_utf8_lossy(&n).into_owned());
        let name = match session::parse_name(name.as_deref()) {
            Ok(name) => name,
            Err(e) => {
                fault(ctx, 400, &e.to_string());
                return;
            }
        };
        if ctx.scan_optional().is_some() {
            fault(ctx, 400, "too many parameters: name");
            return;
        }
        match table.stop(&name, now_ms()) {
            Ok((stopped, ended)) => {
                log_ended(&ended);
                crate::log_info!("trace session '{name}' stopped: {}", counts(&stopped));
                if let Some(reply) = ctx.add_struct() {
                    describe(&reply, &stopped);
                }
            }
            Err(e) => table_fault(ctx, &e),
        }
    }
}

/// `siptrace.trace_list`.
pub struct TraceList;

pub static TRACE_LIST_DOC: RpcDoc = rpc::doc(
    c"The running trace sessions: filter, URI, scope, seconds, time left, calls matched, records sent and dropped.",
);

impl RpcCommand for TraceList {
    const NAME: &'static CStr = c"siptrace.trace_list";

    fn run(ctx: &RpcCtx<'_>) {
        let Some((_, table)) = table(ctx) else { return };
        match table.list(now_ms()) {
            Ok((running, ended)) => {
                log_ended(&ended);
                let Some(reply) = ctx.add_struct() else { return };
                let Some(list) = reply.add_array(c"sessions") else { return };
                for s in &running {
                    if let Some(entry) = list.add_struct() {
                        describe(&entry, s);
                    }
                }
            }
            Err(e) => table_fault(ctx, &e),
        }
    }
}
