//! Several HEP destinations: which one a record goes to (copy, failover,
//! shard), and whether each one is up.
//!
//! ## The shard hash, for other implementations
//!
//! A call's key is its Call-ID, the bytes of the header value as they are
//! on the wire (no case folding, surrounding white space removed); a record
//! that is not SIP (a log line) uses the Call-ID of its correlation
//! (`{"sip":"<call-id>"}`), or else its correlation id. For each
//! destination, its name is `transport:address:port` in lower case, the
//! address as written for a socket (IPv6 in brackets), for example
//! `tcp:10.0.0.7:9060` or `udp:[2001:db8::7]:9060`. Its weight is
//!
//! ```text
//! h = FNV-1a-64(key ++ [0x00] ++ name)     offset 0xcbf29ce484222325,
//!                                          prime  0x100000001b3
//! weight = splitmix64(h)                   h += 0x9e3779b97f4a7c15;
//!                                          h = (h ^ h>>30) * 0xbf58476d1ce4e5b9;
//!                                          h = (h ^ h>>27) * 0x94d049bb133111eb;
//!                                          h ^ h>>31
//! ```
//!
//! (all arithmetic wrapping on 64 bits), and the call goes to the
//! destination that is up with the highest weight; on a tie, the one
//! listed first. Proxies that list the same collectors under the same
//! addresses therefore pick the same collector for a call, whatever order
//! they list them in.

use crate::core::counters::{unix_now, Counters, DestStats};
use crate::core::dest::Destination;
use crate::core::endpoint::Transport;
use crate::core::settings::Distribution;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x100_0000_01b3;

/// How long a UDP collector that bounced datagrams (ICMP) is left alone
/// before it is tried again, when no probe says it is back.
pub const UDP_HOLD_DOWN: Duration = Duration::from_secs(5);

/// FNV-1a over `bytes`, from `state`.
pub fn fnv1a(bytes: &[u8], state: u64) -> u64 {
    bytes.iter().fold(state, |h, &b| (h ^ b as u64).wrapping_mul(FNV_PRIME))
}

fn splitmix64(mut h: u64) -> u64 {
    h = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// A destination's name in the hash.
pub fn dest_name(d: &Destination) -> String {
    format!("{}:{}", d.transport.name(), d.addr).to_ascii_lowercase()
}

/// The rendezvous weight of `key` on the destination named `name`.
pub fn weight(key: &[u8], name: &str) -> u64 {
    weight_after(key_state(key), name)
}

/// The hash state after the key and its 0x00: the same for every
/// destination, so computed once per record.
fn key_state(key: &[u8]) -> u64 {
    fnv1a(&[0], fnv1a(key, FNV_OFFSET))
}

fn weight_after(state: u64, name: &str) -> u64 {
    splitmix64(fnv1a(name.as_bytes(), state))
}

/// The key a record is sharded by: its Call-ID, or the one it correlates to.
pub fn call_key<'a>(record: &crate::core::record::TraceRecord<'a>) -> &'a [u8] {
    if record.proto_type == crate::core::hep::proto_type::SIP {
        if let Some(id) = crate::core::sip::call_id(record.payload) {
            return id;
        }
    }
    if let Some(id) = record.extra_correlation.and_then(sip_of_correlation) {
        return id;
    }
    record.correlation_id.filter(|c| !c.is_empty()).unwrap_or(record.payload)
}

/// The value of `"sip"` in a correlation object `{"sip":"<call-id>",...}`
/// as the module writes it (a Call-ID has no quote or backslash).
fn sip_of_correlation(json: &[u8]) -> Option<&[u8]> {
    let at = json.windows(7).position(|w| w == b"\"sip\":\"")? + 7;
    let rest = &json[at..];
    let end = rest.iter().position(|&b| b == b'"')?;
    Some(&rest[..end])
}

/// The call key of a frame read back from the spool or from a broken
/// connection, as [`call_key`] gave it for the record: a SIP copy is the
/// message; a HEPv3 packet carries the message, or the correlation.
pub fn frame_key(copy: bool, frame: &[u8]) -> &[u8] {
    if copy {
        return crate::core::sip::call_id(frame).unwrap_or(frame);
    }
    let Ok(chunks) = crate::core::hep::decode_v3(frame) else { return frame };
    let d = crate::core::hep::Decoded::from_chunks(&chunks);
    let payload = d.payload.unwrap_or_default();
    if d.proto_type == Some(crate::core::hep::proto_type::SIP) {
        if let Some(id) = crate::core::sip::call_id(payload) {
            return id;
        }
    }
    if let Some(id) = d.extra_correlation.and_then(sip_of_correlation) {
        return id;
    }
    d.correlation_id.filter(|c| !c.is_empty()).unwrap_or(frame)
}

/// A short hash of a call key, kept with spooled records.
pub fn key_hash(key: &[u8]) -> u64 {
    splitmix64(fnv1a(key, FNV_OFFSET))
}

/// What the sender knows of one destination.
#[derive(Debug)]
pub struct Health<'c> {
    pub up: bool,
    /// When it last went up or down.
    pub since: Instant,
    /// UDP: when it is tried again after a bounce.
    pub retry_at: Option<Instant>,
    /// A probe is on and has not been answered since it went down.
    pub awaiting_probe: bool,
    pub(crate) stats: Option<&'c DestStats>,
    /// Its name in the shard hash.
    name: String,
}

/// The health of every destination a sender has used.
pub struct Board<'c> {
    entries: Vec<(Destination, Health<'c>)>,
    counters: Option<&'c Counters>,
    probing: bool,
}

impl<'c> Board<'c> {
    /// `counters` are shared memory that outlives the sender (the host's),
    /// or `None` in tests that do not look at them.
    pub fn new(counters: Option<&'c Counters>, probing: bool) -> Board<'c> {
        Board { entries: Vec::new(), counters, probing }
    }

    fn index(&mut self, d: Destination, now: Instant) -> usize {
        if let Some(i) = self.entries.iter().position(|(e, _)| *e == d) {
            return i;
        }
        let stats = self.counters.and_then(|c| c.dest_slot(&d));
        if let Some(s) = stats {
            s.up.store(1, Ordering::Relaxed);
        }
        let name = dest_name(&d);
        let health = Health { up: true, since: now, retry_at: None, awaiting_probe: false, stats, name };
        self.entries.push((d, health));
        self.entries.len() - 1
    }

    /// Whether `d` may be given records now. A destination never seen is up
    /// until shown otherwise; a UDP one held down is up again once its
    /// hold-down is over (when no probe decides).
    pub fn is_up(&mut self, d: Destination, now: Instant) -> bool {
        let i = self.index(d, now);
        let h = &mut self.entries[i].1;
        if !h.up && !h.awaiting_probe && h.retry_at.is_some_and(|t| now >= t) {
            set(h, true, now);
        }
        h.up
    }

    /// How long `d` has been up; zero when it is down.
    pub fn up_for(&mut self, d: Destination, now: Instant) -> Duration {
        if !self.is_up(d, now) {
            return Duration::ZERO;
        }
        let i = self.index(d, now);
        now.duration_since(self.entries[i].1.since)
    }

    /// Notes that `d` is down; a UDP one is tried again after the hold-down
    /// or when a probe is answered. Returns whether it was up.
    pub fn down(&mut self, d: Destination, now: Instant) -> bool {
        let probing = self.probing && d.transport == Transport::Udp;
        let i = self.index(d, now);
        let h = &mut self.entries[i].1;
        if d.transport == Transport::Udp {
            h.retry_at = Some(now + UDP_HOLD_DOWN);
            h.awaiting_probe = probing;
        }
        let was = h.up;
        if was {
            set(h, false, now);
        }
        was
    }

    /// Notes that `d` is up (connected, or answered a probe). Returns
    /// whether it was down.
    pub fn up(&mut self, d: Destination, now: Instant) -> bool {
        let i = self.index(d, now);
        let h = &mut self.entries[i].1;
        h.retry_at = None;
        h.awaiting_probe = false;
        let was_down = !h.up;
        if was_down {
            set(h, true, now);
        }
        was_down
    }

    /// Counts `n` records handed to `d`.
    pub fn sent(&mut self, d: Destination, n: u64, now: Instant) {
        let i = self.index(d, now);
        if let Some(s) = self.entries[i].1.stats {
            s.sent.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The weight on `d` of the key whose [`key_state`] is `state`, if `d`
    /// is up.
    fn weight_if_up(&mut self, state: u64, d: Destination, now: Instant) -> Option<u64> {
        if !self.is_up(d, now) {
            return None;
        }
        let i = self.index(d, now);
        Some(weight_after(state, &self.entries[i].1.name))
    }

    /// The UDP destinations, for probing.
    pub fn udp_destinations(&self) -> Vec<Destination> {
        self.entries.iter().map(|(d, _)| *d).filter(|d| d.transport == Transport::Udp).collect()
    }
}

fn set(h: &mut Health<'_>, up: bool, now: Instant) {
    h.up = up;
    h.since = now;
    if let Some(s) = h.stats {
        s.up.store(up as u64, Ordering::Relaxed);
        s.changed.store(unix_now(), Ordering::Relaxed);
        if !up {
            s.downs.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Where one record's HEP output goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Pick {
    /// To each of these (copy: those that are up).
    To(smallvec::SmallVec<[Destination; 2]>),
    /// Copy: this destination is down; its share needs the spool.
    /// Failover and shard: none is up.
    Nowhere(smallvec::SmallVec<[Destination; 2]>),
}

/// Per list of destinations: which one failover uses now.
#[derive(Default)]
pub struct FailoverState {
    current: Vec<(u64, usize)>,
}

impl FailoverState {
    fn get(&mut self, list_id: u64) -> &mut usize {
        let at = match self.current.iter().position(|(id, _)| *id == list_id) {
            Some(i) => i,
            None => {
                self.current.push((list_id, 0));
                self.current.len() - 1
            }
        };
        &mut self.current[at].1
    }
}

/// A stable id of a destination list, in its order.
pub fn list_id(list: &[Destination]) -> u64 {
    list.iter().fold(FNV_OFFSET, |h, d| fnv1a(dest_name(d).as_bytes(), fnv1a(&[0xff], h)))
}

/// The failover choice: the first destination that is up, but one before
/// the current choice only once it has been up for `ret`.
pub fn failover(
    list: &[Destination],
    board: &mut Board<'_>,
    state: &mut FailoverState,
    ret: Duration,
    now: Instant,
) -> Option<Destination> {
    let current = state.get(list_id(list));
    for (i, d) in list.iter().enumerate() {
        let up = board.is_up(*d, now);
        if up && (i >= *current || board.up_for(*d, now) >= ret) {
            *current = i;
            return Some(*d);
        }
    }
    None
}

/// The shard choice: the destination that is up with the highest weight.
pub fn shard(key: &[u8], list: &[Destination], board: &mut Board<'_>, now: Instant) -> Option<Destination> {
    let mut best: Option<(u64, Destination)> = None;
    let state = key_state(key);
    for d in list {
        let Some(w) = board.weight_if_up(state, *d, now) else { continue };
        if best.map_or(true, |(b, _)| w > b) {
            best = Some((w, *d));
        }
    }
    best.map(|(_, d)| d)
}

/// Where a record with call `key` and HEP destinations `list` goes now.
pub fn pick(
    distribution: Distribution,
    key: &[u8],
    list: &[Destination],
    board: &mut Board<'_>,
    state: &mut FailoverState,
    ret: Duration,
    now: Instant,
) -> Pick {
    let one = |d: Option<Destination>| match d {
        Some(d) => Pick::To(smallvec::smallvec![d]),
        None => Pick::Nowhere(list.iter().copied().collect()),
    };
    if list.len() <= 1 {
        return match list.first() {
            Some(d) if board.is_up(*d, now) => Pick::To(smallvec::smallvec![*d]),
            _ => Pick::Nowhere(list.iter().copied().collect()),
        };
    }
    match distribution {
        Distribution::Copy => Pick::To(list.iter().copied().collect()),
        Distribution::Failover => one(failover(list, board, state, ret, now)),
        Distribution::Shard => one(shard(key, list, board, now)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dests(n: u16) -> Vec<Destination> {
        (0..n)
            .map(|i| Destination { addr: ([10, 0, 0, 1 + i as u8], 9060).into(), transport: Transport::Tcp })
            .collect()
    }

    #[test]
    fn the_hash_is_the_documented_one() {
        // Reference values for other implementations: FNV-1a-64 then
        // splitmix64, as the module documentation gives them.
        assert_eq!(fnv1a(b"", FNV_OFFSET), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a", FNV_OFFSET), 0xaf63_dc4c_8601_ec8c);
        let w = weight(b"abc@host", "tcp:10.0.0.1:9060");
        let mut h = FNV_OFFSET;
        for b in b"abc@host".iter().chain(&[0u8]).chain(b"tcp:10.0.0.1:9060") {
            h ^= *b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        h = h.wrapping_add(0x9e3779b97f4a7c15);
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d049bb133111eb);
        assert_eq!(w, h ^ (h >> 31));
        assert_eq!(dest_name(&dests(1)[0]), "tcp:10.0.0.1:9060");
    }

    #[test]
    fn shards_spread_evenly_and_only_a_dead_nodes_calls_move() {
        let list = dests(3);
        let now = Instant::now();
        let mut board = Board::new(None, false);
        let keys: Vec<String> = (0..30_000).map(|i| format!("{i:x}-call@10.1.2.3")).collect();
        let before: Vec<Destination> =
            keys.iter().map(|k| shard(k.as_bytes(), &list, &mut board, now).unwrap()).collect();
        for d in &list {
            let n = before.iter().filter(|b| *b == d).count();
            assert!((9_000..11_000).contains(&n), "{d:?} got {n} of 30000");
        }
        // The order the destinations are listed in does not matter.
        let reversed: Vec<Destination> = list.iter().rev().copied().collect();
        for (k, b) in keys.iter().zip(&before).take(1000) {
            assert_eq!(shard(k.as_bytes(), &reversed, &mut board, now).unwrap(), *b);
        }
        board.down(list[1], now);
        let mut moved = 0;
        for (k, b) in keys.iter().zip(&before) {
            let after = shard(k.as_bytes(), &list, &mut board, now).unwrap();
            if *b == list[1] {
                assert_ne!(after, list[1]);
                moved += 1;
            } else {
                assert_eq!(after, *b, "a call of a live node moved");
            }
        }
        assert!(moved > 9_000);
        board.down(list[0], now);
        board.down(list[2], now);
        assert_eq!(shard(b"x", &list, &mut board, now), None);
    }

    #[test]
    fn failover_returns_only_after_the_delay() {
        let list = dests(3);
        let mut board = Board::new(None, false);
        let mut st = FailoverState::default();
        let ret = Duration::from_secs(30);
        let t0 = Instant::now();
        assert_eq!(failover(&list, &mut board, &mut st, ret, t0), Some(list[0]));
        board.down(list[0], t0);
        assert_eq!(failover(&list, &mut board, &mut st, ret, t0), Some(list[1]));
        let t1 = t0 + Duration::from_secs(1);
        board.up(list[0], t1);
        assert_eq!(failover(&list, &mut board, &mut st, ret, t1 + Duration::from_secs(29)), Some(list[1]));
        assert_eq!(failover(&list, &mut board, &mut st, ret, t1 + Duration::from_secs(30)), Some(list[0]));
        board.down(list[0], t1);
        board.down(list[1], t1);
        board.down(list[2], t1);
        assert_eq!(failover(&list, &mut board, &mut st, ret, t1), None);
    }

    #[test]
    fn udp_is_tried_again_after_the_hold_down_unless_a_probe_decides() {
        let d = Destination { addr: ([127, 0, 0, 1], 9).into(), transport: Transport::Udp };
        let t0 = Instant::now();
        let mut board = Board::new(None, false);
        board.down(d, t0);
        assert!(!board.is_up(d, t0 + UDP_HOLD_DOWN / 2));
        assert!(board.is_up(d, t0 + UDP_HOLD_DOWN));
        let mut probed = Board::new(None, true);
        probed.down(d, t0);
        assert!(!probed.is_up(d, t0 + UDP_HOLD_DOWN * 2));
        probed.up(d, t0 + UDP_HOLD_DOWN * 2);
        assert!(probed.is_up(d, t0 + UDP_HOLD_DOWN * 2));
    }

    #[test]
    fn log_lines_shard_with_their_call() {
        use crate::core::endpoint::Endpoint;
        use crate::core::record::{Direction, Timestamp, TraceRecord};
        let ep = Endpoint::new(Transport::Udp, "10.0.0.1".parse().unwrap(), 5060);
        let sip = TraceRecord {
            time: Timestamp { secs: 1, usecs: 0 },
            direction: Direction::In,
            src: ep,
            dst: ep,
            payload: b"INVITE sip:a@b SIP/2.0\r\nCall-ID: abc@h\r\n\r\n",
            correlation_id: None,
            extra_correlation: None,
            proto_type: crate::core::hep::proto_type::SIP,
            traced_users: None,
        };
        let corr = crate::core::event::sip_correlation(b"abc@h");
        let log = TraceRecord {
            payload: b"a log line",
            proto_type: 100,
            correlation_id: Some(b"other"),
            extra_correlation: Some(corr.as_bytes()),
            ..sip
        };
        assert_eq!(call_key(&sip), b"abc@h");
        assert_eq!(call_key(&log), b"abc@h");
    }
}
