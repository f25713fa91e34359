//! The log lines of traced calls: each line the process prints while it
//! works on a call that traces `xlog` goes out as a HEP log record (type
//! 100), correlated with the call. The hook that sees every line is the
//! host's (`host::log_hook`); it hands a line here only while such a call
//! is current.

use crate::core::event::{JsonObject, TraceTypes};
use crate::core::hep::proto_type;
use crate::core::record::{Direction, Timestamp, TraceRecord};
use crate::kamailio::host::log_hook::{self, LogLine};
use crate::kamailio::state;
use crate::kamailio::{call_context, tracer};

/// Puts the hook in place; the lines keep going where they went. Called
/// in mod_init: a process forked later cannot get it from another.
pub fn install() {
    log_hook::install(traced_line);
}

/// One printed log line, while the process works on a call that traces
/// its log lines.
fn traced_line(printed: &LogLine<'_>) {
    let Some(state) = state::get() else { return };
    let mut line = Vec::with_capacity(printed.text.len() + 64);
    line.extend_from_slice(printed.location);
    if !printed.function.is_empty() {
        line.extend_from_slice(printed.function);
        line.extend_from_slice(b"(): ");
    }
    line.extend_from_slice(printed.text.strip_suffix(b"\n").unwrap_or(printed.text));
    call_context::with_current(TraceTypes::XLOG, |call| {
        let outputs = tracer::hep_outputs(state, &call.target);
        if outputs.is_empty() {
            return;
        }
        let mut payload = JsonObject::new();
        payload.string("Event", printed.level).string("text", &line);
        let payload = payload.finish();
        let extra = crate::core::event::sip_correlation(&call.call_id);
        let record = TraceRecord {
            time: Timestamp::now(),
            direction: Direction::Out,
            src: call.src,
            dst: call.dst,
            payload: payload.as_bytes(),
            correlation_id: Some(&call.correlation),
            extra_correlation: Some(extra.as_bytes()),
            proto_type: proto_type::LOG,
            traced_users: None,
        };
        tracer::enqueue(state, &record, &outputs);
    });
}
