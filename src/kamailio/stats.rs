//! The counters, as Kamailio statistics of the group "siptrace" (read
//! with `kamcmd stats.get_statistics siptrace:`) and through the RPC
//! command `siptrace.stats`.

use crate::core::counters::{Counters, DropReason};
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
pub const STATS: [(&CStr, Reader); 29] = [
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

pub fn register() -> Result<(), String> {
    stats::register::<Statistics>()
}
