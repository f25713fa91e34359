//! From OpenSIPS's view of a message to a queued trace record: the ends of
//! a message received or sent, chosen as OpenSIPS's tracer chooses them.

use crate::core::counters::DropReason;
use crate::core::endpoint::{Endpoint, Transport};
use crate::core::hep::proto_type;
use crate::core::record::{Direction, Timestamp, TraceRecord};
use crate::core::shared::enqueue;
use crate::opensips::host::held::Trace;
use crate::opensips::host::msg::{Connection, Msg, Sent};
use crate::opensips::state::State;
use crate::opensips::trace_api;
use std::net::Ipv4Addr;

/// Traces a message this server received; `by_tm` when tm matched it to
/// a transaction, whose replies show `trace_local_ip` as their receiver.
pub fn incoming(state: &State, trace: Trace<'_>, msg: &Msg, by_tm: bool) -> bool {
    let (Some(src), Some(mut dst)) = (msg.source(), msg.local_end()) else {
        state.report(DropReason::Unparsable, "the message has no IP addresses");
        return false;
    };
    if let Some(local) = state.local_ip.filter(|_| by_tm && !msg.is_request()) {
        dst = local;
    }
    queue(state, trace, Direction::In, (src, dst), msg.buffer(), msg.connection())
}

/// Traces what this server sent for `msg` (when there is one).
/// `trace_local_ip`, when set, stands for the source; else without a
/// socket the message's own receiving end does; without a destination,
/// `255.255.255.255:9`, as the tracer writes.
pub fn outgoing(state: &State, trace: Trace<'_>, msg: Option<&Msg>, sent: &Sent<'_>) -> bool {
    let src = state.local_ip.or(sent.from).or_else(|| msg.and_then(Msg::local_end));
    let dst = sent.to.unwrap_or_else(|| Endpoint::new(Transport::Udp, Ipv4Addr::BROADCAST.into(), 9));
    let Some(src) = src else {
        state.report(DropReason::Unparsable, "an outgoing message has no usable addresses");
        return false;
    };
    queue(state, trace, Direction::Out, (src, dst), sent.bytes, sent.connection)
}

fn queue(
    state: &State,
    trace: Trace<'_>,
    direction: Direction,
    ends: (Endpoint, Endpoint),
    payload: &[u8],
    connection: Option<Connection>,
) -> bool {
    if !state.id_on(trace.id) || trace.types & trace_api::SIP_BIT == 0 {
        return false;
    }
    let Some(outputs) = state.outputs(trace.id) else { return false };
    // The attributes go where Kamailio's traced user goes: one per row.
    let mut attrs = Vec::new();
    if let Some(a) = trace.attrs.filter(|a| !a.is_empty()) {
        crate::core::record::pack_traced_user(&mut attrs, a);
    }
    // A message over TCP (or TLS, WS, WSS) is correlated with its
    // connection in HEP, as proto_hep prints it (Homer 5 keeps none).
    let net = connection
        .filter(|_| state.homer5_delimiter.is_none())
        .map(|c| format!("{{\n\t\"net\":\t\"{}\"\n}}", c.correlation_id()));
    let record = TraceRecord {
        time: Timestamp::now(),
        direction,
        src: ends.0,
        dst: ends.1,
        payload,
        correlation_id: trace.correlation,
        extra_correlation: net.as_ref().map(String::as_bytes),
        proto_type: proto_type::SIP,
        traced_users: (!attrs.is_empty()).then_some(attrs.as_slice()),
    };
    match enqueue(&state.queues, &state.shared.counters, &record, &outputs, None) {
        Ok(()) => true,
        Err(e) => {
            state.report(e.reason, &e.detail);
            false
        }
    }
}
