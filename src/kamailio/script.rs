//! The script functions: `sip_trace([uri[, correlation_id[, mode]]])`,
//! `sip_trace_mode(mode)`, `sip_trace_types(types)` and
//! `hlog([correlation_id,] text)`, with the checks of their parameters
//! while the config is read.

use crate::core::counters::{Counters, DropReason};
use crate::core::endpoint::{Endpoint, Transport};
use crate::core::event::TraceTypes;
use crate::core::record::{Direction, Outputs, Scope, Timestamp, TraceRecord};
use crate::kamailio::host::cmd::{ParamKind, Params, ScriptFunction};
use crate::kamailio::host::msg::Msg;
use crate::kamailio::host::socket::local_toward;
use crate::kamailio::state::{self, State};
use crate::kamailio::tracer::{self, ScriptTarget};
use crate::kamailio::transaction::{self, Start};
use crate::kamailio::users::{self, Users};
use crate::kamailio::{call_context, connections};
use std::ffi::CStr;
use std::os::raw::c_int;

/// The trace scope a script call asks for, if this module has it.
pub fn supported_scope(text: &str) -> Result<Scope, String> {
    Scope::parse(text)
}

/// The scopes, by the number a fixed `mode` parameter keeps.
const SCOPES: [Scope; 3] = [Scope::Message, Scope::Transaction, Scope::Dialog];

/// Whether a parameter is a constant, without pseudo-variables.
fn is_constant(text: &str) -> bool {
    !text.contains('$')
}

/// The value of a parameter for this call; `None` if it cannot be
/// evaluated. Empty and `$null` values read as empty.
fn param_text(params: &Params<'_>, index: usize) -> Option<String> {
    let bytes = params.text(index)?;
    Some(if bytes == b"<null>" { String::new() } else { String::from_utf8_lossy(&bytes).into_owned() })
}

/// `sip_trace([uri[, correlation_id[, mode]]])`.
pub struct SipTrace;

impl ScriptFunction for SipTrace {
    const NAME: &'static CStr = c"sip_trace";

    fn kind(index: usize, _count: usize) -> ParamKind {
        if index == 3 {
            ParamKind::Code
        } else {
            ParamKind::Text
        }
    }

    fn check(index: usize, _count: usize, text: &str) -> Result<usize, String> {
        match index {
            1 if is_constant(text) => {
                let state = state::get().ok_or("sip_trace(): the module is not initialized")?;
                state
                    .resolve_at_startup(text)
                    .map_err(|e| format!("sip_trace(): bad destination URI '{text}': {e}"))?;
                Ok(0)
            }
            3 => match supported_scope(text) {
                Ok(scope) => Ok(SCOPES.iter().position(|s| *s == scope).unwrap_or_default()),
                Err(e) => Err(format!("sip_trace(): bad trace mode '{text}': {e}")),
            },
            _ => Ok(0),
        }
    }

    fn run(msg: Msg<'_>, params: &Params<'_>) -> c_int {
        let Some(state) = state::get() else { return -1 };
        match params.count() {
            0 => trace_call(state, msg, None, None, None),
            1 => with_params(state, params, false, |dest, _| trace_call(state, msg, Some(dest), None, None)),
            2 => with_params(state, params, true, |dest, cid| trace_call(state, msg, Some(dest), cid, None)),
            _ => {
                let Some(scope) = params.code(3).and_then(|i| SCOPES.get(i)).copied() else { return -1 };
                with_params(state, params, true, |dest, cid| {
                    trace_call(state, msg, Some(dest), cid, Some(scope))
                })
            }
        }
    }
}

/// Evaluates the URI and, with `cid`, the correlation id parameters of
/// `sip_trace()` and hands them to `f`. A URI that cannot be evaluated is
/// a counted drop; a correlation id that cannot be evaluated leaves the
/// default, the Call-ID.
fn with_params(
    state: &State,
    params: &Params<'_>,
    cid: bool,
    f: impl FnOnce(&str, Option<&str>) -> c_int,
) -> c_int {
    let Some(dest) = param_text(params, 1) else {
        tracer::drop_record(
            state,
            DropReason::NoDestination,
            "sip_trace(): cannot evaluate the URI argument",
        );
        return -1;
    };
    let cid = if cid { param_text(params, 2) } else { None };
    f(&dest, cid.as_deref())
}

/// `sip_trace_mode(mode)`.
pub struct SipTraceMode;

impl ScriptFunction for SipTraceMode {
    const NAME: &'static CStr = c"sip_trace_mode";

    fn check(_index: usize, _count: usize, text: &str) -> Result<usize, String> {
        if is_constant(text) {
            supported_scope(text).map_err(|e| format!("sip_trace_mode(): bad trace mode '{text}': {e}"))?;
        }
        Ok(0)
    }

    fn run(msg: Msg<'_>, params: &Params<'_>) -> c_int {
        let Some(state) = state::get() else { return -1 };
        let Some(text) = param_text(params, 1) else { return -1 };
        match supported_scope(&text) {
            Ok(scope) => trace_call(state, msg, None, None, Some(scope)),
            Err(e) => {
                tracer::drop_record(
                    state,
                    DropReason::NoDestination,
                    format_args!("sip_trace_mode('{text}'): {e}"),
                );
                -1
            }
        }
    }
}

/// `sip_trace_types("sip|xlog|rest")`.
pub struct SipTraceTypes;

impl ScriptFunction for SipTraceTypes {
    const NAME: &'static CStr = c"sip_trace_types";

    fn check(_index: usize, _count: usize, text: &str) -> Result<usize, String> {
        if is_constant(text) {
            TraceTypes::parse(text).map_err(|e| format!("sip_trace_types(): bad type list '{text}': {e}"))?;
        }
        Ok(0)
    }

    fn run(msg: Msg<'_>, params: &Params<'_>) -> c_int {
        let Some(text) = param_text(params, 1) else { return -1 };
        trace_types(msg, &text)
    }
}

/// `hlog([correlation_id,] text)`.
pub struct Hlog;

impl ScriptFunction for Hlog {
    const NAME: &'static CStr = c"hlog";

    fn run(msg: Msg<'_>, params: &Params<'_>) -> c_int {
        let count = params.count();
        let Some(text) = param_text(params, count) else { return -1 };
        let cid = (count == 2).then(|| param_text(params, 1).unwrap_or_default());
        match state::get() {
            Some(state) => hlog(state, msg, cid.as_deref(), &text),
            None => -1,
        }
    }
}

/// `hlog([correlation_id,] text)`: a HEPv3 log record (type 100) to the
/// `duplicate_uri` collectors, from the socket Kamailio would use toward
/// the first one, correlated by the given id or the message's Call-ID.
/// As in the C module, it does not depend on trace_on or hep_mode_on.
pub fn hlog(state: &State, msg: Msg<'_>, cid: Option<&str>, text: &str) -> c_int {
    let Some(first) = state.duplicates.first() else {
        tracer::drop_record(state, DropReason::NoDestination, "hlog(): no duplicate_uri modparam");
        return -1;
    };
    let correlation = match cid {
        Some(id) => id.as_bytes().to_vec(),
        None => match msg.bytes().and_then(crate::core::sip::call_id) {
            Some(id) => id.to_vec(),
            None => {
                tracer::drop_record(state, DropReason::Unparsable, "hlog(): the message has no Call-ID");
                return -1;
            }
        },
    };
    let record = TraceRecord {
        time: Timestamp::now(),
        direction: Direction::Out,
        src: local_toward(first),
        dst: Endpoint { transport: Transport::Udp, addr: first.addr },
        payload: text.as_bytes(),
        correlation_id: Some(&correlation),
        extra_correlation: None,
        proto_type: crate::core::hep::proto_type::LOG,
        traced_users: None,
    };
    let outputs = Outputs { hep: state.duplicates.clone(), ..Default::default() };
    if tracer::enqueue(state, &record, &outputs) {
        1
    } else {
        -1
    }
}

/// `sip_trace_types("sip|xlog|rest")`: what the trace that the next
/// `sip_trace()` or `sip_trace_mode()` call on this message starts sends.
pub fn trace_types(msg: Msg<'_>, text: &str) -> c_int {
    match TraceTypes::parse(text) {
        Ok(types) => {
            call_context::ask_types(msg, types);
            1
        }
        Err(e) => {
            crate::log_warn!("sip_trace_types('{text}'): {e}");
            -1
        }
    }
}

/// Traces what the script asked for: the current message, and with the
/// transaction scope (or, without a scope, `trace_flag` set on the
/// message) what its transaction sends and receives. Returns 1 when
/// something was queued for its outputs (what happens there is counted),
/// -1 when tracing is off or nothing can be traced.
pub fn trace_call(
    state: &State,
    msg: Msg<'_>,
    dest: Option<&str>,
    cid: Option<&str>,
    scope: Option<Scope>,
) -> c_int {
    // Tracing is off, unless traced_user_avp names someone to trace.
    let users = users::current(state);
    if let Users::Skip = users {
        return -1;
    }
    // trace_sample: the call is in the sample or not, by its Call-ID.
    if !state.config.noise.samples_all() {
        let call_id = current_message(msg).and_then(|(payload, ..)| crate::core::sip::call_id(payload));
        if !state.config.noise.samples_call(call_id) {
            Counters::add(&state.shared.counters.skipped_sample);
            return -1;
        }
    }
    let target = match dest {
        None => ScriptTarget { uri_given: false, dest: None },
        Some("") => ScriptTarget { uri_given: true, dest: None },
        Some(text) => match state.destination(text) {
            Ok(d) => ScriptTarget { uri_given: true, dest: Some(d) },
            Err(e) => {
                tracer::drop_record(state, DropReason::NoDestination, e);
                return -1;
            }
        },
    };
    let correlation = cid.unwrap_or_default();

    let types = call_context::asked_types(msg);
    let scope = scope.unwrap_or(match state.config.trace_flag {
        Some(flag) if msg.has_flag(flag) => Scope::Transaction,
        _ => Scope::Message,
    });
    if scope != Scope::Message {
        match transaction::start(state, msg, target, correlation.as_bytes(), scope, types) {
            Ok(Start::TraceCurrent) => {}
            Ok(Start::AlreadyTraced) => return 1,
            Err(e) => {
                crate::log_warn!("sip_trace(): {e}");
                return -1;
            }
        }
    }
    // The rest of this message's script runs with the call current.
    call_context::enter(msg, types, target, correlation.as_bytes());
    if !types.contains(TraceTypes::SIP) {
        return 1;
    }
    let Some((payload, src, dst, direction)) = current_message(msg) else { return -1 };
    let (src, dst) = tracer::script_ends(state, direction, src, dst);
    let connection = match direction {
        Direction::In => connections::received_on(state, msg.received()),
        Direction::Out => msg.onsend().and_then(|s| s.dest()).and_then(|d| connections::sent_on(state, d)),
    };
    let extra = connection.map(crate::core::event::net_correlation);
    let record = TraceRecord {
        time: Timestamp::now(),
        direction,
        src,
        dst,
        payload,
        correlation_id: (!correlation.is_empty()).then_some(correlation.as_bytes()),
        extra_correlation: extra.as_deref().map(str::as_bytes),
        proto_type: crate::core::hep::proto_type::SIP,
        traced_users: match &users {
            Users::List(packed) => Some(packed),
            _ => None,
        },
    };
    if tracer::enqueue(state, &record, &tracer::script_outputs(state, &target)) {
        1
    } else {
        -1
    }
}

/// The bytes and addresses of the message being routed: what is about to
/// be sent when called from onsend_route, else what was received.
fn current_message(msg: Msg<'_>) -> Option<(&[u8], Endpoint, Endpoint, Direction)> {
    if let Some(sending) = msg.onsend() {
        let (src, dst) = sending.ends()?;
        return Some((sending.payload()?, src, dst, Direction::Out));
    }
    let (src, dst) = msg.received().ends()?;
    Some((msg.bytes()?, src, dst, Direction::In))
}
