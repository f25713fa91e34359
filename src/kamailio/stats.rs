//! The counters, as Kamailio statistics of the group "siptrace" (read
//! with `kamcmd stats.get_statistics siptrace:`) and through the RPC
//! command `siptrace.stats`.

use crate::core::counters::{Counters, DestStats, DropReason};
use crate::core::ring::Ring;
use crate::kamailio::host::stats::{self, StatGroup};
use crate::kamailio::sessions;
use crate::kamailio::state::{self, State};
use std::ffi::CStr;
use std::sync::atomic::{AtomicU64, Ordering};

type Reader = fn(&State) -> u64;

fn load(state: &State, counter: fn(&Counters) -> &AtomicU64) -> u64 {
    counter(&state.shared.counters).load(Ordering::Relaxed)
}

fn dropped(state: &State, reason: DropReason) -> u64 {
    state.shared.counters.dropped(reason)
}

/// Every statistic, with how to read it.
pub const STATS: [(&CStr, Reader); 37] = [
    (c"enqueued", |s| load(s, |c| &c.enqueued)),
    (c"dequeued", |s| load(s, |c| &c.dequeued)),
    (c"queue_records", |s| load(s, |c| &c.enqueued).saturating_sub(load(s, |c| &c.dequeued))),
    (c"queue_bytes", |s| s.queues.iter().map(Ring::depth).sum()),
    (c"traced_requests", |s| load(s, |c| &c.traced_requests)),
    (c"traced_replies", |s| load(s, |c| &c.traced_replies)),
    (c"hep_sent", |s| load(s, |c| &c.hep_sent)),
    (c"duplicates_sent", |s| load(s, |c| &c.duplicates_sent)),
    (c"db_rows", |s| load(s, |c| &c.db_rows)),
    (c"db_batches", |s| load(s, |c| &c.db_batches)),
    (c"reconnects", |s| load(s, |c| &c.reconnects)),
    (c"sender_restarts", |s| load(s, |c| &c.sender_restarts)),
    // Wrapping: a block freed twice would show as a negative number.
    (c"traced_contexts", |s| load(s, |c| &c.contexts_made).wrapping_sub(load(s, |c| &c.contexts_freed))),
    (c"dropped", |s| s.shared.counters.dropped_total()),
    (c"dropped_oversize", |s| dropped(s, DropReason::Oversize)),
    (c"dropped_mixed_family", |s| dropped(s, DropReason::MixedFamily)),
    (c"dropped_send_failed", |s| dropped(s, DropReason::SendFailed)),
    (c"dropped_no_destination", |s| dropped(s, DropReason::NoDestination)),
    (c"dropped_unparsable", |s| dropped(s, DropReason::Unparsable)),
    (c"dropped_db_failed", |s| dropped(s, DropReason::DbFailed)),
    (c"dropped_db_unavailable", |s| dropped(s, DropReason::DbUnavailable)),
    (c"dropped_queue_full", |s| dropped(s, DropReason::QueueFull)),
    (c"dropped_not_connected", |s| dropped(s, DropReason::NotConnected)),
    (c"dropped_sender_died", |s| dropped(s, DropReason::SenderDied)),
    (c"dropped_unreachable", |s| dropped(s, DropReason::Unreachable)),
    // Trace sessions running now, and the calls they matched.
    (c"sessions_active", sessions::active),
    (c"session_calls_matched", |s| load(s, |c| &c.session_calls_matched)),
    // Kept out by trace_skip_methods and by trace_sample.
    (c"skipped_method", |s| load(s, |c| &c.skipped_method)),
    (c"skipped_sample", |s| load(s, |c| &c.skipped_sample)),
    (c"dropped_spool_full", |s| dropped(s, DropReason::SpoolFull)),
    (c"dropped_spool_corrupt", |s| dropped(s, DropReason::SpoolCorrupt)),
    (c"spooled", |s| load(s, |c| &c.spooled)),
    (c"replayed", |s| load(s, |c| &c.replayed)),
    (c"spool_bytes", |s| s.shared.counters.spool_bytes_total()),
    (c"spool_records", |s| s.shared.counters.spool_records_total()),
    (c"spool_restored", |s| load(s, |c| &c.spool_restored)),
    (c"replay_repeated", |s| load(s, |c| &c.replay_repeated)),
];

const NAMES: [&CStr; STATS.len()] = {
    let mut names = [c""; STATS.len()];
    let mut i = 0;
    while i < STATS.len() {
        names[i] = STATS[i].0;
        i += 1;
    }
    names
};

struct Statistics;

impl StatGroup for Statistics {
    const GROUP: &'static CStr = c"siptrace";
    const NAMES: &'static [&'static CStr] = &NAMES;

    fn read(index: usize) -> u64 {
        state::get().map_or(0, |s| STATS[index].1(s))
    }
}

/// Reads one counter of a destination.
type DestReader = fn(&DestStats) -> &AtomicU64;

/// A destination's counters, in the order of its statistics' names.
pub const DEST_FIELDS: [(&CStr, DestReader); 4] =
    [(c"up", |d| &d.up), (c"sent", |d| &d.sent), (c"downs", |d| &d.downs), (c"changed", |d| &d.changed)];

/// Destinations with statistics of their own (`dest0_up` ...): the first
/// ones of duplicate_uri, whose counters mod_init claims in that order.
/// `siptrace.stats` lists every destination.
pub const DEST_STATS: usize = 8;

#[rustfmt::skip]
const DEST_NAMES: [&CStr; DEST_STATS * DEST_FIELDS.len()] = [
    c"dest0_up", c"dest0_sent", c"dest0_downs", c"dest0_changed",
    c"dest1_up", c"dest1_sent", c"dest1_downs", c"dest1_changed",
    c"dest2_up", c"dest2_sent", c"dest2_downs", c"dest2_changed",
    c"dest3_up", c"dest3_sent", c"dest3_downs", c"dest3_changed",
    c"dest4_up", c"dest4_sent", c"dest4_downs", c"dest4_changed",
    c"dest5_up", c"dest5_sent", c"dest5_downs", c"dest5_changed",
    c"dest6_up", c"dest6_sent", c"dest6_downs", c"dest6_changed",
    c"dest7_up", c"dest7_sent", c"dest7_downs", c"dest7_changed",
];

/// Counter `field` of destination slot `slot`.
pub fn dest_field(state: &State, slot: usize, field: usize) -> u64 {
    let d = &state.shared.counters.destinations[slot];
    DEST_FIELDS[field].1(d).load(Ordering::Relaxed)
}

struct Destinations;

impl StatGroup for Destinations {
    const GROUP: &'static CStr = c"siptrace";
    const NAMES: &'static [&'static CStr] = &DEST_NAMES;

    fn read(index: usize) -> u64 {
        let (slot, field) = (index / DEST_FIELDS.len(), index % DEST_FIELDS.len());
        state::get().map_or(0, |s| dest_field(s, slot, field))
    }
}

/// Registers the statistics, with those of the first `destinations` of
/// duplicate_uri (at most [`DEST_STATS`]).
pub fn register(destinations: usize) -> Result<(), String> {
    stats::register::<Statistics>()?;
    stats::register_first::<Destinations>(destinations.min(DEST_STATS) * DEST_FIELDS.len())
}
