//! What a SIP worker does with a trace record: copy it into the queue of
//! one sender and return. The sender of a record is chosen by its Call-ID,
//! so that the messages of a call stay in order.
//!
//! Every record that cannot be queued or delivered is counted by reason and
//! reported in a log line limited to one per reason and interval across
//! all processes.

use crate::core::counters::DropReason;
use crate::core::dest::Destination;
use crate::core::endpoint::Endpoint;
use crate::core::record::{Direction, Outputs, Timestamp, TraceRecord};
use crate::core::shared as core_shared;
use crate::core::shared::Shared;
use crate::core::xheaders;
use crate::kamailio::host::avp::AvpValue;
use crate::kamailio::state::State;
use smallvec::{smallvec, SmallVec};
use std::fmt::Display;

/// Where a trace started by the script goes: the URI the script gave, or
/// the `duplicate_uri` list when it gave none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScriptTarget {
    /// Whether the script passed a URI argument (even an empty one).
    pub uri_given: bool,
    /// The destination of a non-empty URI argument.
    pub dest: Option<Destination>,
}

/// The ends of a message traced from the script or a traced transaction,
/// with `trace_local_ip`, when set, as the local one.
pub fn script_ends(
    state: &State,
    direction: Direction,
    src: Endpoint,
    dst: Endpoint,
) -> (Endpoint, Endpoint) {
    match (state.config.trace_local_ip, direction) {
        (Some(local), Direction::In) => (src, local),
        (Some(local), Direction::Out) => (local, dst),
        (None, _) => (src, dst),
    }
}

/// The outputs of a trace the script asked for. Without a URI argument the
/// C module copies SIP only when nothing goes to the database; the same
/// holds here.
pub fn script_outputs(state: &State, target: &ScriptTarget) -> Outputs {
    let config = &state.config;
    let targets: SmallVec<[Destination; 2]> = match target.dest {
        Some(d) => smallvec![d],
        None => state.duplicates.clone(),
    };
    let wants_copy = target.uri_given || !config.trace_to_database;
    let sends = config.hep_mode_on || wants_copy;
    if sends && targets.is_empty() {
        drop_record(
            state,
            DropReason::NoDestination,
            "sip_trace(): no URI argument and no duplicate_uri modparam",
        );
    }
    Outputs {
        db: config.uses_database(),
        hep: if config.hep_mode_on { targets.clone() } else { SmallVec::new() },
        duplicate: if !config.hep_mode_on && wants_copy { targets } else { SmallVec::new() },
        table: None,
    }
}

/// Where a trace session's records go: its own destination, as HEP with
/// `hep_mode_on` and as SIP copies without, and nowhere else; or, when it
/// has none, where `sip_trace()` without a URI sends.
pub fn session_outputs(state: &State, dest: Option<Destination>) -> Outputs {
    match dest {
        None => script_outputs(state, &ScriptTarget { uri_given: false, dest: None }),
        Some(d) if state.config.hep_mode_on => Outputs { hep: smallvec![d], ..Outputs::default() },
        Some(d) => Outputs { duplicate: smallvec![d], ..Outputs::default() },
    }
}

/// Where the records of a traced call that are not SIP go: the HEP
/// collectors of its trace. Without HEP there are none; those records are
/// neither stored in the table nor copied as SIP.
pub fn hep_outputs(state: &State, target: &ScriptTarget) -> Outputs {
    if !state.config.hep_mode_on {
        return Outputs::default();
    }
    let hep = match target.dest {
        Some(d) => smallvec![d],
        None => state.duplicates.clone(),
    };
    Outputs { hep, ..Outputs::default() }
}

/// Where records that belong to no call go (RPC commands, connection
/// events): the HEP collectors of `duplicate_uri`. Config validation makes
/// sure these exist when such records are asked for.
pub fn event_outputs(state: &State) -> Outputs {
    Outputs { hep: state.duplicates.clone(), ..Outputs::default() }
}

/// Queues `record` for `outputs`. Returns whether it was queued.
pub fn enqueue(state: &State, record: &TraceRecord<'_>, outputs: &Outputs) -> bool {
    if outputs.is_empty() || state.queues.is_empty() {
        return false;
    }
    let is_sip = record.proto_type == crate::core::hep::proto_type::SIP;
    if outputs.db && is_sip {
        if let Some(table) = table_asked(state) {
            let mut outputs = outputs.clone();
            if crate::core::sql::is_identifier(&table) {
                outputs.table = Some(table.into());
            } else {
                outputs.db = false;
                let name = String::from_utf8_lossy(&table);
                report_drop(
                    state.shared,
                    DropReason::NoDestination,
                    1,
                    &format_args!("no row: trace_table_avp names '{name}', which is not a plain table name"),
                );
                if outputs.is_empty() {
                    return false;
                }
            }
            return enqueue_to(state, record, &outputs);
        }
    }
    enqueue_to(state, record, outputs)
}

/// Queues `record` for `outputs` as it is: no `X-Siptrace-*` headers
/// read from it, no table from `trace_table_avp` (for a message the script
/// hands over whole, `sip_trace_msg()`). Returns whether it was queued.
pub fn enqueue_as_given(state: &State, record: &TraceRecord<'_>, outputs: &Outputs) -> bool {
    if outputs.is_empty() || state.queues.is_empty() {
        return false;
    }
    push(state, record, outputs, None)
}

/// The table `trace_table_avp` names for the message being processed: its
/// newest string value, if it has one.
fn table_asked(state: &State) -> Option<Vec<u8>> {
    let avp = state.table_avp.get()?;
    let mut table = None;
    avp.for_each_value(|value| match value {
        AvpValue::Str(name) if !name.is_empty() => {
            table = Some(name.to_vec());
            false
        }
        _ => true,
    });
    table
}

fn enqueue_to(state: &State, record: &TraceRecord<'_>, outputs: &Outputs) -> bool {
    if state.config.xheaders_read && record.proto_type == crate::core::hep::proto_type::SIP {
        return enqueue_from_xheaders(state, record, outputs);
    }
    push(state, record, outputs, None)
}

/// With `xheaders_read`: the message carries its ends, time and direction
/// in `X-Siptrace-*` headers, put there by the proxy that saw it; they
/// replace what this proxy saw, and leave the message. A message without
/// them is not traced, and counted.
fn enqueue_from_xheaders(state: &State, record: &TraceRecord<'_>, outputs: &Outputs) -> bool {
    match xheaders::read(record.payload) {
        Ok((x, payload)) => {
            let relayed = TraceRecord {
                src: x.from,
                dst: x.to,
                time: x.time,
                direction: x.direction,
                payload: &payload,
                ..*record
            };
            push(state, &relayed, outputs, Some(x.time))
        }
        Err(e) => {
            report_drop(state.shared, DropReason::Unparsable, 1, &format_args!("xheaders_read: {e}"));
            false
        }
    }
}

fn push(state: &State, record: &TraceRecord<'_>, outputs: &Outputs, time: Option<Timestamp>) -> bool {
    match core_shared::enqueue(&state.queues, &state.shared.counters, record, outputs, time) {
        Ok(()) => true,
        Err(e) => {
            report_drop(state.shared, e.reason, 1, &e.detail);
            false
        }
    }
}

/// Counts and reports a record that was dropped before it was queued.
pub fn drop_record(state: &State, reason: DropReason, detail: impl Display) {
    report_drop(state.shared, reason, 1, &detail);
}

/// Counts `count` drops and logs them, at most once per reason and
/// interval for the whole server.
pub fn report_drop(shared: &Shared, reason: DropReason, count: u64, detail: &dyn Display) {
    if let Some(line) = shared.count_drop(reason, count, detail) {
        crate::log_warn!("{line}");
    }
}

/// Logs a drop someone already counted, rate-limited as above.
pub fn log_drop(shared: &Shared, reason: DropReason, detail: &dyn Display) {
    if let Some(line) = shared.drop_line(reason, detail) {
        crate::log_warn!("{line}");
    }
}
