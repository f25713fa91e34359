//! Connection events (`trace_net`): TCP, TLS and WS connections give HEP
//! records (type 0x59) when they open and when they close, with OpenSIPS's
//! payload fields, and their id as correlation id. SIP records carried by
//! a connection name it in their extra correlation, `{"net":"<id>"}`, so
//! that Homer links calls and connections both ways.
//!
//! Kamailio reports a closed connection (SREV_TCP_CLOSED, in the TCP main
//! process), but not a new one. A connection is announced by the first
//! process that receives a SIP message on it: ACCEPTED when the peer
//! opened it, CONNECTED when this server did.

use crate::core::endpoint::Endpoint;
use crate::core::event::{JsonObject, NetEvent};
use crate::core::hep::proto_type;
use crate::core::record::{Direction, Timestamp, TraceRecord};
use crate::kamailio::host::net::{is_stream, Received};
use crate::kamailio::host::shm;
use crate::kamailio::host::socket::DestInfo;
use crate::kamailio::host::tcp::{self, CloseReason, TcpClosedHandler};
use crate::kamailio::state::{self, State};
use crate::kamailio::tracer;
use std::sync::atomic::{AtomicI32, Ordering};

/// Slots of the table of announced connections, indexed by id modulo its
/// size. Ids grow one by one, so two live connections share a slot only
/// past this many; the second is then announced again when it is seen.
const SLOTS: usize = 1 << 16;

/// With trace_net: the table of announced connections, in shared memory,
/// and the closed-connection callback. Called in mod_init.
pub fn mod_init(trace_net: bool) -> Result<Option<&'static [AtomicI32]>, String> {
    if !trace_net {
        return Ok(None);
    }
    let table = shm::new_atomic_table(SLOTS).ok_or("out of shared memory for the connection table")?;
    if !tcp::on_closed::<Closed>() {
        return Err("cannot register the closed-connection callback".into());
    }
    Ok(Some(table))
}

fn slot(state: &State, id: i32) -> Option<&'static AtomicI32> {
    state.announced.map(|table| &table[id.unsigned_abs() as usize % SLOTS])
}

/// The id of the connection a message arrived on, when connections are traced.
pub fn received_on(state: &State, rcv: Received<'_>) -> Option<i32> {
    let id = rcv.connection_id();
    (state.config.trace_net && id > 0 && is_stream(rcv.transport())).then_some(id)
}

/// The id of the connection a message is sent on, when it is known.
pub fn sent_on(state: &State, dst: DestInfo<'_>) -> Option<i32> {
    let id = dst.connection_id();
    (state.config.trace_net && id > 0 && is_stream(dst.transport())).then_some(id)
}

/// Announces the connection a message arrived on, the first time it is seen.
pub fn seen(state: &State, rcv: Received<'_>) {
    let Some(id) = received_on(state, rcv) else { return };
    let Some(slot) = slot(state, id) else { return };
    if slot.swap(id, Ordering::AcqRel) == id {
        return;
    }
    let Some((peer, local)) = rcv.ends() else { return };
    // Not found: it closed meanwhile; the peer sent first, so it most
    // likely accepted.
    let event = if tcp::is_passive(id).unwrap_or(true) { NetEvent::Accepted } else { NetEvent::Connected };
    let (src, dst) = match event {
        NetEvent::Connected => (local, peer),
        _ => (peer, local),
    };
    send(state, id, event, src, dst, None);
}

/// The reasons Kamailio gives for a closed connection.
fn reason_text(reason: CloseReason) -> &'static str {
    match reason {
        CloseReason::Timeout => "timeout",
        CloseReason::Reset => "reset",
        CloseReason::Eof => "closed by the peer (EOF)",
    }
}

struct Closed;

impl TcpClosedHandler for Closed {
    fn closed(id: i32, ends: Received<'_>, reason: CloseReason) {
        let Some(state) = state::get() else { return };
        if let Some(slot) = slot(state, id) {
            let _ = slot.compare_exchange(id, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
        if let Some((peer, local)) = ends.ends() {
            send(state, id, NetEvent::Closed, peer, local, Some(reason_text(reason)));
        }
    }
}

fn send(state: &State, id: i32, event: NetEvent, src: Endpoint, dst: Endpoint, message: Option<&str>) {
    let mut payload = JsonObject::new();
    payload
        .string("Event", event.name().as_bytes())
        .string("Status", b"SUCCESS")
        .string("Protocol", src.transport.name().to_ascii_uppercase().as_bytes());
    if let Some(m) = message {
        payload.string("Message", m.as_bytes());
    }
    let payload = payload.finish();
    let correlation = id.to_string();
    let record = TraceRecord {
        time: Timestamp::now(),
        direction: if event == NetEvent::Connected { Direction::Out } else { Direction::In },
        src,
        dst,
        payload: payload.as_bytes(),
        correlation_id: Some(correlation.as_bytes()),
        extra_correlation: None,
        proto_type: proto_type::NET,
        traced_users: None,
    };
    tracer::enqueue(state, &record, &tracer::event_outputs(state));
}
