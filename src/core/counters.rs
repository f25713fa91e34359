//! Counters of what was traced, sent and dropped. The host places one
//! [`Counters`] in memory shared by all its processes; atomics make the
//! updates safe across processes.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a trace record, or one of its outputs, was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum DropReason {
    /// The encoded record exceeds what its transport can carry.
    Oversize,
    /// Source and destination differ in IP family; HEP cannot express it.
    MixedFamily,
    /// The send system call failed.
    SendFailed,
    /// There is nowhere to send: no URI argument and no duplicate_uri, or
    /// a host name that was not resolved at startup.
    NoDestination,
    /// The message lacks what a database row needs (start line, Call-ID,
    /// CSeq, From, To).
    Unparsable,
    /// The database refused the row.
    DbFailed,
    /// There is no database connection.
    DbUnavailable,
    /// The queue to the senders, or the backlog to a collector, is full.
    QueueFull,
    /// A TCP or TLS collector is not connected.
    NotConnected,
    /// A sender process died while it held the record.
    SenderDied,
    /// The network returned the datagram as undeliverable (ICMP).
    Unreachable,
}

impl DropReason {
    pub const ALL: [DropReason; 11] = [
        DropReason::Oversize,
        DropReason::MixedFamily,
        DropReason::SendFailed,
        DropReason::NoDestination,
        DropReason::Unparsable,
        DropReason::DbFailed,
        DropReason::DbUnavailable,
        DropReason::QueueFull,
        DropReason::NotConnected,
        DropReason::SenderDied,
        DropReason::Unreachable,
    ];

    /// Statistic name suffix.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Oversize => "oversize",
            DropReason::MixedFamily => "mixed_family",
            DropReason::SendFailed => "send_failed",
            DropReason::NoDestination => "no_destination",
            DropReason::Unparsable => "unparsable",
            DropReason::DbFailed => "db_failed",
            DropReason::DbUnavailable => "db_unavailable",
            DropReason::QueueFull => "queue_full",
            DropReason::NotConnected => "not_connected",
            DropReason::SenderDied => "sender_died",
            DropReason::Unreachable => "unreachable",
        }
    }
}

#[derive(Debug, Default)]
#[repr(C)]
pub struct Counters {
    /// Records SIP workers put in the queues.
    pub enqueued: AtomicU64,
    /// Records senders took out of the queues.
    pub dequeued: AtomicU64,
    pub traced_requests: AtomicU64,
    pub traced_replies: AtomicU64,
    pub hep_sent: AtomicU64,
    pub duplicates_sent: AtomicU64,
    pub db_rows: AtomicU64,
    pub db_batches: AtomicU64,
    /// Connections to TCP and TLS collectors made again after a failure.
    pub reconnects: AtomicU64,
    /// Blocks of traced transactions and dialogs made and freed; the
    /// difference is how many are being traced now.
    pub contexts_made: AtomicU64,
    pub contexts_freed: AtomicU64,
    /// Sender processes started again after one died.
    pub sender_restarts: AtomicU64,
    /// Calls (initial requests) that trace sessions matched, counted once
    /// per session that matched.
    pub session_calls_matched: AtomicU64,
    /// Messages kept out of the traces by `trace_skip_methods`.
    pub skipped_method: AtomicU64,
    /// Messages, or calls the script asked to trace, kept out by
    /// `trace_sample`.
    pub skipped_sample: AtomicU64,
    dropped: [AtomicU64; DropReason::ALL.len()],
}

impl Counters {
    pub fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add_n(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn drop_one(&self, reason: DropReason) {
        self.drop_n(reason, 1);
    }

    pub fn drop_n(&self, reason: DropReason, n: u64) {
        Self::add_n(&self.dropped[reason as usize], n);
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize].load(Ordering::Relaxed)
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_are_counted_by_reason_and_in_total() {
        let c = Counters::default();
        c.drop_one(DropReason::Oversize);
        c.drop_one(DropReason::Oversize);
        c.drop_one(DropReason::DbFailed);
        assert_eq!(c.dropped(DropReason::Oversize), 2);
        assert_eq!(c.dropped(DropReason::DbFailed), 1);
        assert_eq!(c.dropped(DropReason::SendFailed), 0);
        assert_eq!(c.dropped_total(), 3);
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }
}
