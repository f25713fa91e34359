//! `trace_mode`: every SIP message the core receives or sends, seen
//! through the core's network data events.

use crate::core::endpoint::Endpoint;
use crate::core::hep::proto_type::SIP;
use crate::core::record::{Direction, Outputs, Timestamp, TraceRecord};
use crate::ffi::guard::guard;
use crate::kamailio::{module, msg_event, net, shared, sys, tracer};
use std::os::raw::c_int;

pub fn register() -> Result<(), String> {
    // SAFETY: registering static callbacks in the main process before fork.
    let recv = unsafe { sys::sr_event_register_cb(sys::SREV_NET_DATA_RECV as c_int, Some(on_received)) };
    let sent = unsafe { sys::sr_event_register_cb(sys::SREV_NET_DATA_SENT as c_int, Some(on_sent)) };
    if recv != 0 || sent != 0 {
        return Err("cannot register the network data events; another module already holds them".into());
    }
    Ok(())
}

unsafe extern "C" fn on_received(evp: *mut sys::sr_event_param_t) -> c_int {
    guard("the receive event", 0, || {
        // SAFETY: Kamailio passes a live sr_net_info_t in evp->data for
        // this event, with a receive_info.
        let Some(info) = (unsafe { net_info(evp) }) else {
            return 0;
        };
        let Some(rcv) = (unsafe { info.rcv.as_ref() }) else {
            return 0;
        };
        let Some((src, dst)) = net::received(rcv) else {
            return 0;
        };
        trace(Direction::In, src, dst, info);
        0
    })
}

unsafe extern "C" fn on_sent(evp: *mut sys::sr_event_param_t) -> c_int {
    guard("the send event", 0, || {
        // SAFETY: as above, with a dest_info whose send_sock is null or live.
        let Some(info) = (unsafe { net_info(evp) }) else {
            return 0;
        };
        let Some(dst) = (unsafe { info.dst.as_ref() }) else {
            return 0;
        };
        let Some((src, dst)) = (unsafe { net::sent(dst) }) else {
            return 0;
        };
        trace(Direction::Out, src, dst, info);
        0
    })
}

/// The event's network data when tracing is on and it carries a payload.
unsafe fn net_info<'a>(evp: *mut sys::sr_event_param_t) -> Option<&'a sys::sr_net_info_t> {
    if !shared::tracing_on() {
        return None;
    }
    // SAFETY: per the caller's contract.
    let info = unsafe { (evp.as_ref()?.data as *const sys::sr_net_info_t).as_ref()? };
    (!info.data.s.is_null() && info.data.len > 0).then_some(info)
}

fn trace(direction: Direction, src: Endpoint, dst: Endpoint, info: &sys::sr_net_info_t) {
    let Some(module) = module::get() else { return };
    // SAFETY: the core hands over `len` valid bytes for the event's duration.
    let payload = unsafe { std::slice::from_raw_parts(info.data.s as *const u8, info.data.len as usize) };
    let record = TraceRecord {
        time: Timestamp::now(),
        direction,
        src,
        dst,
        payload,
        correlation_id: None,
        extra_correlation: None,
        proto_type: SIP,
        traced_users: None,
    };
    let mode = module.config.trace_mode;
    let outputs = Outputs {
        db: mode.db(),
        hep: if mode.hep() { module.duplicates.clone() } else { Default::default() },
        duplicate: if mode.duplicate() { module.duplicates.clone() } else { Default::default() },
        table: None,
    };
    if msg_event::keeps(&record) {
        tracer::enqueue(&record, &outputs);
    }
}
