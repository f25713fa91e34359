//! The state every process of the host shares, placed by the host in its
//! shared memory: the on/off switch, the counters, the log rate limits, and
//! the lock that keeps SQLite writers from colliding. And the one step a SIP
//! worker takes with a trace record: putting it in a sender's queue.

use crate::core::counters::{Counters, DropReason};
use crate::core::ratelimit::LogLimiter;
use crate::core::record::{Outputs, Timestamp, TraceRecord};
use crate::core::ring::{PushError, Ring};
use crate::core::shmlock::ProcessMutex;
use crate::core::{sip, wire};
use std::fmt::Display;
use std::sync::atomic::AtomicBool;

/// At most one log line per drop reason in this many seconds, for the
/// whole server.
const LOG_INTERVAL_SECS: u64 = 10;

#[repr(C)]
pub struct Shared {
    pub trace_on: AtomicBool,
    pub counters: Counters,
    /// Held around each insert into an SQLite file, which refuses a second
    /// writer at once instead of waiting.
    pub db_lock: ProcessMutex,
    /// One log line per drop reason and interval, across all processes.
    pub drop_log: [LogLimiter; DropReason::ALL.len()],
}

impl Shared {
    /// Writes a fresh shared state at `p`.
    ///
    /// # Safety
    /// `p` must be valid for writes of a `Shared`, aligned, in memory every
    /// process that uses it shares, and live as long as they do.
    pub unsafe fn init_at(p: *mut Shared, trace_on: bool) -> std::io::Result<()> {
        // SAFETY: per the contract; each field is written once before use.
        unsafe {
            std::ptr::addr_of_mut!((*p).trace_on).write(AtomicBool::new(trace_on));
            std::ptr::addr_of_mut!((*p).counters).write(Counters::default());
            std::ptr::addr_of_mut!((*p).drop_log).write(Default::default());
            ProcessMutex::init_at(std::ptr::addr_of_mut!((*p).db_lock))
        }
    }

    /// Counts `count` drops, and returns the line to log about them when
    /// one is due for their reason.
    pub fn count_drop(&self, reason: DropReason, count: u64, detail: &dyn Display) -> Option<String> {
        self.counters.drop_n(reason, count);
        self.drop_line(reason, detail)
    }

    /// The line to log about drops someone already counted, when one is due.
    pub fn drop_line(&self, reason: DropReason, detail: &dyn Display) -> Option<String> {
        let suppressed = self.drop_log[reason as usize].permit(Timestamp::now().secs, LOG_INTERVAL_SECS)?;
        let more = if suppressed > 0 {
            format!(" ({suppressed} more of this kind since the last report)")
        } else {
            String::new()
        };
        Some(format!("trace dropped ({}): {detail}{more}", reason.name()))
    }
}

/// Why a record was not queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotQueued {
    pub reason: DropReason,
    pub detail: String,
}

/// Copies `record` into the queue of its sender, chosen by its Call-ID so
/// that the messages of a call stay in order, and counts it. `time` is the
/// record's time when it is not now. The caller counts a refusal.
pub fn enqueue(
    queues: &[Ring],
    counters: &Counters,
    record: &TraceRecord<'_>,
    outputs: &Outputs,
    time: Option<Timestamp>,
) -> Result<(), NotQueued> {
    let queue = &queues[shard(record.payload, queues.len())];
    let len = wire::encoded_len(record, outputs);
    // The time is read under the queue's lock, so queue order is time order.
    let refused = |reason, detail: String| Err(NotQueued { reason, detail });
    match queue.push(len, |buf| wire::encode(buf, record, outputs, time.unwrap_or_else(Timestamp::now))) {
        Ok(()) => {
            Counters::add(&counters.enqueued);
            Ok(())
        }
        Err(PushError::Full) => refused(DropReason::QueueFull, "the queue to the sender is full".into()),
        Err(PushError::Busy) => {
            refused(DropReason::QueueFull, "the queue to the sender stayed locked".into())
        }
        Err(PushError::TooBig) => {
            refused(DropReason::Oversize, format!("a record of {len} bytes exceeds the queue"))
        }
    }
}

/// The queue for a message: by its Call-ID.
fn shard(payload: &[u8], queues: usize) -> usize {
    if queues == 1 {
        return 0;
    }
    let key = sip::call_id(payload).unwrap_or(payload);
    // FNV-1a: quick, and plenty for spreading calls over a few queues.
    let hash =
        key.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    (hash % queues as u64) as usize
}
