//! `trace_mode`: every SIP message the core receives or sends, seen
//! through the core's network data events.

use crate::core::counters::Counters;
use crate::core::endpoint::Endpoint;
use crate::core::hep::proto_type::SIP;
use crate::core::noise::Verdict;
use crate::core::record::{Direction, Outputs, Timestamp, TraceRecord};
use crate::kamailio::host::events::{self, NetDataHandler};
use crate::kamailio::host::net::Received;
use crate::kamailio::host::socket::{DestInfo, Socket};
use crate::kamailio::state::{self, State};
use crate::kamailio::{msg_event, tracer};

pub fn register() -> Result<(), String> {
    if !events::register::<NetData>() {
        return Err("cannot register the network data events; another module already holds them".into());
    }
    Ok(())
}

struct NetData;

impl NetDataHandler for NetData {
    fn received(payload: &[u8], from: Received<'_>) {
        let Some(state) = state::get().filter(|s| s.tracing_on()) else { return };
        if let Some((src, dst)) = from.ends() {
            let dst = advertised(state, from.socket()).unwrap_or(dst);
            trace(state, Direction::In, src, dst, payload);
        }
    }

    fn sent(payload: &[u8], to: DestInfo<'_>) {
        let Some(state) = state::get().filter(|s| s.tracing_on()) else { return };
        if let Some((src, dst)) = to.ends() {
            let src = advertised(state, to.send_socket()).unwrap_or(src);
            trace(state, Direction::Out, src, dst, payload);
        }
    }
}

/// With `data_mode` 1 (Kamailio 6.0), the proxy's end of a message is
/// the address its socket advertises, when it advertises one.
fn advertised(state: &State, socket: Option<Socket>) -> Option<Endpoint> {
    if !state.config.data_mode_advertised {
        return None;
    }
    socket?.advertised()
}

fn trace(state: &State, direction: Direction, src: Endpoint, dst: Endpoint, payload: &[u8]) {
    // trace_skip_methods and trace_sample.
    let counters = &state.shared.counters;
    match state.config.noise.verdict(payload) {
        Verdict::Trace => {}
        Verdict::SkipMethod => return Counters::add(&counters.skipped_method),
        Verdict::SkipSample => return Counters::add(&counters.skipped_sample),
    }
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
    let mode = state.config.trace_mode;
    let outputs = Outputs {
        db: mode.db(),
        hep: if mode.hep() { state.duplicates.clone() } else { Default::default() },
        duplicate: if mode.duplicate() { state.duplicates.clone() } else { Default::default() },
        table: None,
    };
    if msg_event::keeps(state, &record) {
        tracer::enqueue(state, &record, &outputs);
    }
}
