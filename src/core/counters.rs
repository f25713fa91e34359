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
    /// The disk spool was full: the oldest segment was dropped.
    SpoolFull,
    /// A spooled record was torn or damaged and skipped.
    SpoolCorrupt,
}

impl DropReason {
    pub const ALL: [DropReason; 13] = [
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
        DropReason::SpoolFull,
        DropReason::SpoolCorrupt,
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
            DropReason::SpoolFull => "spool_full",
            DropReason::SpoolCorrupt => "spool_corrupt",
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
    /// Outputs written to the disk spool, replayed from it, and found in
    /// it at startup (left by an earlier run).
    pub spooled: AtomicU64,
    pub replayed: AtomicU64,
    pub spool_restored: AtomicU64,
    /// Records of a replay batch that may have reached their destination
    /// twice: the batch was in flight when its sending process died, or
    /// its connection broke while it was being written.
    pub replay_repeated: AtomicU64,
    /// Bytes and records in each sender's spool now.
    pub spool_bytes: [AtomicU64; MAX_SENDERS],
    pub spool_records: [AtomicU64; MAX_SENDERS],
    /// Each destination's health and traffic, in the order first seen.
    pub destinations: [DestStats; MAX_DEST_STATS],
    dropped: [AtomicU64; DropReason::ALL.len()],
}

/// Most sender processes (the `senders` parameter's upper bound).
pub const MAX_SENDERS: usize = 16;
/// Most destinations with counters of their own; further ones are counted
/// in the totals only.
pub const MAX_DEST_STATS: usize = 32;

/// One destination's counters. A slot is claimed by the first sending
/// process that uses the destination (`key` from 0 to its id).
#[derive(Debug, Default)]
#[repr(C)]
pub struct DestStats {
    /// [`dest_key`] of the destination; 0: a free slot.
    pub key: AtomicU64,
    /// Transport, family and port, and the 16 address bytes.
    pub head: AtomicU64,
    pub ip_hi: AtomicU64,
    pub ip_lo: AtomicU64,
    /// 1 up, 0 down.
    pub up: AtomicU64,
    /// Records handed to it: datagrams sent, frames written.
    pub sent: AtomicU64,
    /// Times it went down.
    pub downs: AtomicU64,
    /// Unix time, in seconds, of its last change between up and down.
    pub changed: AtomicU64,
}

/// The slot key of a destination: never 0.
pub fn dest_key(d: &crate::core::dest::Destination) -> u64 {
    let text = format!("{}:{}", d.transport.name(), d.addr);
    crate::core::sender::cluster::fnv1a(text.as_bytes(), crate::core::sender::cluster::FNV_OFFSET) | 1
}

impl DestStats {
    /// The destination this slot counts, once claimed.
    pub fn destination(&self) -> Option<crate::core::dest::Destination> {
        use crate::core::endpoint::Transport;
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
        if self.key.load(Ordering::Acquire) == 0 {
            return None;
        }
        let head = self.head.load(Ordering::Acquire);
        let mut ip = [0u8; 16];
        ip[..8].copy_from_slice(&self.ip_hi.load(Ordering::Relaxed).to_be_bytes());
        ip[8..].copy_from_slice(&self.ip_lo.load(Ordering::Relaxed).to_be_bytes());
        let transport = match head >> 24 {
            0 => Transport::Udp,
            1 => Transport::Tcp,
            2 => Transport::Tls,
            _ => return None,
        };
        let addr = match (head >> 16) & 0xff {
            4 => IpAddr::V4(Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3])),
            6 => IpAddr::V6(Ipv6Addr::from(ip)),
            _ => return None,
        };
        Some(crate::core::dest::Destination {
            addr: SocketAddr::new(addr, (head & 0xffff) as u16),
            transport,
        })
    }
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

    /// Bytes in all senders' spools now.
    pub fn spool_bytes_total(&self) -> u64 {
        self.spool_bytes.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Records in all senders' spools now.
    pub fn spool_records_total(&self) -> u64 {
        self.spool_records.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// The counters of `dest`, claiming a slot on first use; `None` once
    /// every slot is taken.
    pub fn dest_slot(&self, dest: &crate::core::dest::Destination) -> Option<&DestStats> {
        use crate::core::endpoint::Transport;
        let key = dest_key(dest);
        for slot in &self.destinations {
            match slot.key.compare_exchange(0, key, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    let (family, ip) = match dest.addr.ip() {
                        std::net::IpAddr::V4(v4) => {
                            let mut b = [0u8; 16];
                            b[..4].copy_from_slice(&v4.octets());
                            (4u64, b)
                        }
                        std::net::IpAddr::V6(v6) => (6u64, v6.octets()),
                    };
                    let transport = match dest.transport {
                        Transport::Tcp => 1u64,
                        Transport::Tls => 2,
                        _ => 0,
                    };
                    let hi = u64::from_be_bytes(ip[..8].try_into().unwrap_or_default());
                    let lo = u64::from_be_bytes(ip[8..].try_into().unwrap_or_default());
                    slot.ip_hi.store(hi, Ordering::Relaxed);
                    slot.ip_lo.store(lo, Ordering::Relaxed);
                    slot.up.store(1, Ordering::Relaxed);
                    slot.changed.store(unix_now(), Ordering::Relaxed);
                    slot.head
                        .store(transport << 24 | family << 16 | dest.addr.port() as u64, Ordering::Release);
                    return Some(slot);
                }
                Err(k) if k == key => return Some(slot),
                Err(_) => {}
            }
        }
        None
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
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
