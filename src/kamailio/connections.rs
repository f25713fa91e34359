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

use crate::core::endpoint::{Endpoint, Transport};
use crate::core::event::{JsonObject, NetEvent};
use crate::core::hep::proto_type;
use crate::core::record::{Direction, Timestamp, TraceRecord};
use crate::ffi::guard::guard;
use crate::kamailio::{module, net, sys, tracer};
use std::os::raw::c_int;
use std::sync::atomic::{AtomicI32, AtomicPtr, Ordering};

/// Slots of the table of announced connections, indexed by id modulo its
/// size. Ids grow one by one, so two live connections share a slot only
/// past this many; the second is then announced again when it is seen.
const SLOTS: usize = 1 << 16;

static ANNOUNCED: AtomicPtr<AtomicI32> = AtomicPtr::new(std::ptr::null_mut());

fn enabled() -> bool {
    module::get().is_some_and(|m| m.config.trace_net)
}

/// With trace_net: the table of announced connections, in shared memory,
/// and the closed-connection callback. Called in mod_init.
pub fn mod_init(trace_net: bool) -> Result<(), String> {
    if !trace_net {
        return Ok(());
    }
    let bytes = SLOTS * std::mem::size_of::<AtomicI32>();
    // SAFETY: plain allocation from Kamailio's shared memory pool.
    let p = unsafe { sys::siptrace_shim_shm_malloc(bytes) } as *mut AtomicI32;
    if p.is_null() {
        return Err("out of shared memory for the connection table".into());
    }
    // SAFETY: a fresh block of `bytes` bytes; zero is "no connection".
    unsafe { std::ptr::write_bytes(p as *mut u8, 0, bytes) };
    ANNOUNCED.store(p, Ordering::Release);
    // SAFETY: the core keeps the static function pointer.
    if unsafe { sys::sr_event_register_cb(sys::SREV_TCP_CLOSED as c_int, Some(on_closed)) } != 0 {
        return Err("cannot register the closed-connection callback".into());
    }
    Ok(())
}

fn slot(id: i32) -> Option<&'static AtomicI32> {
    let table = ANNOUNCED.load(Ordering::Acquire);
    // SAFETY: the table has SLOTS entries and lives until the server exits.
    (!table.is_null()).then(|| unsafe { &*table.add(id.unsigned_abs() as usize % SLOTS) })
}

fn is_stream(t: Transport) -> bool {
    matches!(t, Transport::Tcp | Transport::Tls | Transport::Ws | Transport::Wss)
}

/// The id of the connection `msg` arrived on, when connections are traced.
pub fn received_on(rcv: &sys::receive_info) -> Option<i32> {
    let id = rcv.proto_reserved1;
    (enabled() && id > 0 && is_stream(net::transport(c_int::from(rcv.proto)))).then_some(id)
}

/// The id of the connection a message is sent on, when it is known.
pub fn sent_on(dst: &sys::dest_info) -> Option<i32> {
    (enabled() && dst.id > 0 && is_stream(net::transport(c_int::from(dst.proto)))).then_some(dst.id)
}

/// Announces the connection a message arrived on, the first time it is seen.
pub fn seen(rcv: &sys::receive_info) {
    let Some(id) = received_on(rcv) else { return };
    let Some(slot) = slot(id) else { return };
    if slot.swap(id, Ordering::AcqRel) == id {
        return;
    }
    let Some((peer, local)) = net::received(rcv) else { return };
    // SAFETY: looks the connection up by id; a found one is referenced and
    // released below.
    let con = unsafe { sys::tcpconn_get(id, std::ptr::null_mut(), 0, std::ptr::null_mut(), 0) };
    // SAFETY: a found connection stays valid while referenced.
    let passive = unsafe { con.as_ref() }.map(|c| c.flags & sys::F_CONN_PASSIVE != 0);
    if let Some(c) = unsafe { con.as_mut() } {
        // tcpconn_put(), a macro: drops the reference the lookup took.
        // SAFETY: refcnt is an int that the core changes atomically.
        unsafe { AtomicI32::from_ptr(std::ptr::addr_of_mut!(c.refcnt.val)) }.fetch_sub(1, Ordering::AcqRel);
    }
    // Not found: it closed meanwhile; the peer sent first, so it most
    // likely accepted.
    let event = if passive.unwrap_or(true) { NetEvent::Accepted } else { NetEvent::Connected };
    let (src, dst) = match event {
        NetEvent::Connected => (local, peer),
        _ => (peer, local),
    };
    send(id, event, src, dst, None);
}

/// The reasons Kamailio gives for a closed connection.
fn reason_text(reason: sys::tcp_closed_reason) -> &'static str {
    match reason {
        sys::tcp_closed_reason_TCP_CLOSED_TIMEOUT => "timeout",
        sys::tcp_closed_reason_TCP_CLOSED_RESET => "reset",
        _ => "closed by the peer (EOF)",
    }
}

unsafe extern "C" fn on_closed(evp: *mut sys::sr_event_param_t) -> c_int {
    guard("the closed-connection callback", 0, || {
        // SAFETY: the core passes its event with a tcp_closed_event_info.
        let info =
            unsafe { evp.as_ref().and_then(|e| (e.data as *const sys::tcp_closed_event_info_t).as_ref()) };
        let Some(info) = info else { return 0 };
        // SAFETY: the connection is live while its close is reported.
        let Some(con) = (unsafe { info.con.as_ref() }) else { return 0 };
        if let Some(slot) = slot(con.id) {
            let _ = slot.compare_exchange(con.id, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
        if let Some((peer, local)) = net::received(&con.rcv) {
            send(con.id, NetEvent::Closed, peer, local, Some(reason_text(info.reason)));
        }
        0
    })
}

fn send(id: i32, event: NetEvent, src: Endpoint, dst: Endpoint, message: Option<&str>) {
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
    tracer::enqueue(&record, &tracer::event_outputs());
}
