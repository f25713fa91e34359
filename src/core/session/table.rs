//! The running sessions, in memory every process shares, and each SIP
//! worker's own copy of them.
//!
//! The RPC process that runs `trace_start` or `trace_stop` is the writer:
//! it takes the table's lock (writers only), marks the table as changing
//! (an odd sequence number), writes the slot, and publishes (an even
//! number). SIP workers never take the lock: each keeps a decoded copy of
//! the sessions, and compares one number per request with the table's;
//! when it changed, the worker copies the slots again and checks that the
//! sequence did not move meanwhile (a sequence lock). A worker that finds
//! a writer at work keeps its old copy for that request, and tries again
//! on the next: it never waits. The command returns after publishing, so
//! the next request any worker handles sees the new session.
//!
//! Each slot also holds the session's counters (calls matched, records
//! sent and dropped), which workers add to directly; a count is taken only
//! while the slot still holds the session that was matched.

use super::{Spec, MAX_NAME_LEN, MAX_URI_LEN};
use crate::core::dest::Destination;
use crate::core::endpoint::Transport;
use crate::core::record::Scope;
use crate::core::session::filter::{Filter, Request, MAX_FILTER_LEN};
use crate::core::shmlock::ProcessMutex;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Longest name a TLS collector's certificate is checked against.
const MAX_TLS_NAME_LEN: usize = 253;
/// Bytes of a slot's encoded session: its longest name, filter, URI and
/// TLS name, the lengths before them, the destination, scope and seconds.
const DATA_BYTES: usize =
    1 + MAX_NAME_LEN + 2 + MAX_FILTER_LEN + 2 + MAX_URI_LEN + DEST_BYTES + 1 + MAX_TLS_NAME_LEN + 1 + 4;
const DATA_WORDS: usize = DATA_BYTES.div_ceil(8);
/// Present, transport, family, port, 16 address bytes.
const DEST_BYTES: usize = 1 + 1 + 1 + 2 + 16;
/// How long a writer waits for another writer.
const WRITER_WAIT: Duration = Duration::from_secs(1);
/// How many times a worker tries to copy the table while writers change it.
const READ_ATTEMPTS: usize = 64;

const TRANSPORTS: [Transport; 6] =
    [Transport::Udp, Transport::Tcp, Transport::Tls, Transport::Sctp, Transport::Ws, Transport::Wss];

/// Milliseconds of the system's monotonic clock, the same in every
/// process; session ends are measured with it.
pub fn now_ms() -> u64 {
    // SAFETY: a timespec is plain integers; zero is valid.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: writes the clock's time into `ts`. CLOCK_MONOTONIC_COARSE is
    // read from the vDSO without a system call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

#[repr(C)]
struct Slot {
    /// The session's id; 0 when the slot is free.
    id: AtomicU64,
    started_ms: AtomicU64,
    ends_ms: AtomicU64,
    matched: AtomicU64,
    sent: AtomicU64,
    dropped: AtomicU64,
    /// Bytes of `data` in use.
    len: AtomicU64,
    data: [AtomicU64; DATA_WORDS],
}

/// The table's header; `capacity` slots follow it.
#[repr(C)]
pub struct SessionTable {
    /// Taken by writers only.
    lock: ProcessMutex,
    /// Even while the slots are stable, odd while a writer changes them.
    seq: AtomicU64,
    next_id: AtomicU64,
    /// Slots that hold a session, ended or not.
    in_use: AtomicU32,
    capacity: u32,
}

/// Why a table operation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableError {
    /// Another command held the table too long.
    Busy,
    NameTaken(String),
    /// Every slot holds a running session; the number is the maximum.
    Full(u32),
    NotFound(String),
    /// The session does not fit the slot (checked before, by parsing).
    TooBig,
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableError::Busy => f.write_str("the session table stayed busy; try again"),
            TableError::NameTaken(name) => write!(f, "a session named '{name}' is running; stop it first"),
            TableError::Full(max) => {
                write!(f, "{max} sessions are running, the most trace_sessions_max allows; stop one first")
            }
            TableError::NotFound(name) => write!(f, "no session named '{name}' is running"),
            TableError::TooBig => f.write_str("the session does not fit its slot"),
        }
    }
}

/// A session as `trace_list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub spec: Spec,
    pub id: u64,
    pub slot: u32,
    /// Milliseconds until it ends; 0 once it has.
    pub left_ms: u64,
    pub matched: u64,
    pub sent: u64,
    pub dropped: u64,
}

/// Which of a session's counters to add to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionCounter {
    /// Calls (initial requests) the filter matched.
    Matched,
    /// Records of the session handed to the senders.
    Sent,
    /// Records of the session that could not be queued.
    Dropped,
}

impl SessionTable {
    fn slots_offset() -> usize {
        std::mem::size_of::<SessionTable>().next_multiple_of(std::mem::align_of::<Slot>())
    }

    /// Bytes of shared memory a table of `capacity` sessions takes.
    pub fn size_for(capacity: u32) -> usize {
        Self::slots_offset() + capacity as usize * std::mem::size_of::<Slot>()
    }

    /// Writes an empty table of `capacity` sessions at `p`.
    ///
    /// # Safety
    /// `p` must be valid for writes of [`SessionTable::size_for`]`(capacity)`
    /// bytes, aligned to 8, in memory every process that uses the table
    /// shares, and live as long as they do.
    pub unsafe fn init_at(p: *mut u8, capacity: u32) -> std::io::Result<&'static SessionTable> {
        let table = p as *mut SessionTable;
        // SAFETY: per the contract; every field and slot is written before
        // any use, and all-zero atomics are valid zero values.
        unsafe {
            std::ptr::write_bytes(p, 0, Self::size_for(capacity));
            ProcessMutex::init_at(std::ptr::addr_of_mut!((*table).lock))?;
            std::ptr::addr_of_mut!((*table).capacity).write(capacity);
            Ok(&*table)
        }
    }

    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    fn slots(&self) -> &[Slot] {
        // SAFETY: init_at placed `capacity` zeroed slots after the header,
        // and atomics are valid in any bit pattern.
        unsafe {
            let first = (self as *const SessionTable as *const u8).add(Self::slots_offset()) as *const Slot;
            std::slice::from_raw_parts(first, self.capacity as usize)
        }
    }

    /// Whether any slot holds a session: the one check a worker makes per
    /// request while none does.
    pub fn any(&self) -> bool {
        self.in_use.load(Ordering::Acquire) > 0
    }

    /// Sessions that have not ended, without the lock.
    pub fn active(&self, now_ms: u64) -> u32 {
        self.slots()
            .iter()
            .filter(|s| s.id.load(Ordering::Acquire) != 0 && s.ends_ms.load(Ordering::Relaxed) > now_ms)
            .count() as u32
    }

    /// Adds `n` to a counter of session `id` in `slot`, if the slot still
    /// holds it.
    pub fn count(&self, slot: u32, id: u64, counter: SessionCounter, n: u64) {
        let Some(s) = self.slots().get(slot as usize) else { return };
        if s.id.load(Ordering::Acquire) != id {
            return;
        }
        let c = match counter {
            SessionCounter::Matched => &s.matched,
            SessionCounter::Sent => &s.sent,
            SessionCounter::Dropped => &s.dropped,
        };
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// Runs `f` with the writers' lock held.
    fn write<R>(&self, f: impl FnOnce(&Writer<'_>) -> R) -> Result<R, TableError> {
        let _guard = self.lock.lock_timeout(WRITER_WAIT).ok_or(TableError::Busy)?;
        Ok(f(&Writer { table: self }))
    }

    /// Starts a session. Ended sessions are cleared first; their last
    /// state is returned too, for the log.
    pub fn start(&self, spec: &Spec, now_ms: u64) -> Result<(SessionInfo, Vec<SessionInfo>), TableError> {
        let data = encode(spec).ok_or(TableError::TooBig)?;
        self.write(|w| {
            let ended = w.sweep(now_ms);
            if w.find(&spec.name).is_some() {
                return Err(TableError::NameTaken(spec.name.clone()));
            }
            let Some(index) = self.slots().iter().position(|s| s.id.load(Ordering::Relaxed) == 0) else {
                return Err(TableError::Full(self.capacity));
            };
            let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
            let ends = now_ms + u64::from(spec.seconds) * 1000;
            w.change(|| {
                let s = &self.slots()[index];
                for (i, word) in s.data.iter().enumerate() {
                    let mut bytes = [0u8; 8];
                    let chunk = data.get(i * 8..).unwrap_or_default();
                    let n = chunk.len().min(8);
                    bytes[..n].copy_from_slice(&chunk[..n]);
                    word.store(u64::from_le_bytes(bytes), Ordering::Relaxed);
                }
                s.len.store(data.len() as u64, Ordering::Relaxed);
                s.started_ms.store(now_ms, Ordering::Relaxed);
                s.ends_ms.store(ends, Ordering::Relaxed);
                for c in [&s.matched, &s.sent, &s.dropped] {
                    c.store(0, Ordering::Relaxed);
                }
                s.id.store(id, Ordering::Release);
                self.in_use.fetch_add(1, Ordering::AcqRel);
            });
            let info = w.info(index as u32, now_ms).ok_or(TableError::TooBig)?;
            Ok((info, ended))
        })?
    }

    /// Stops the running session `name`; returns its last state.
    pub fn stop(&self, name: &str, now_ms: u64) -> Result<(SessionInfo, Vec<SessionInfo>), TableError> {
        self.write(|w| {
            let ended = w.sweep(now_ms);
            let index = w.find(name).ok_or_else(|| TableError::NotFound(name.to_string()))?;
            let info = w.info(index, now_ms).ok_or_else(|| TableError::NotFound(name.to_string()))?;
            w.clear(index);
            Ok((info, ended))
        })?
    }

    /// The running sessions, in slot order, after clearing the ended ones
    /// (returned second).
    pub fn list(&self, now_ms: u64) -> Result<(Vec<SessionInfo>, Vec<SessionInfo>), TableError> {
        self.write(|w| {
            let ended = w.sweep(now_ms);
            let running = (0..self.capacity).filter_map(|i| w.info(i, now_ms)).collect();
            (running, ended)
        })
    }

    /// Clears the sessions that have ended, and returns their last state.
    pub fn sweep(&self, now_ms: u64) -> Result<Vec<SessionInfo>, TableError> {
        // Nothing to do is the usual case: find out without the lock.
        let due = self
            .slots()
            .iter()
            .any(|s| s.id.load(Ordering::Acquire) != 0 && s.ends_ms.load(Ordering::Relaxed) <= now_ms);
        if !due {
            return Ok(Vec::new());
        }
        self.write(|w| w.sweep(now_ms))
    }

    /// The name the certificate of a session's TLS destination `dest` must
    /// carry, for the sender that connects to it.
    pub fn tls_name(&self, dest: Destination) -> Option<String> {
        let (_, copies) = self.read_consistent()?;
        copies.iter().filter_map(|c| decode(&c.bytes)).find(|s| s.dest == Some(dest)).and_then(|s| s.tls_name)
    }

    /// Copies the slots that hold sessions, with the sequence they were
    /// copied at, if no writer changed them meanwhile.
    fn read_consistent(&self) -> Option<(u64, Vec<Copied>)> {
        for _ in 0..READ_ATTEMPTS {
            let before = self.seq.load(Ordering::Acquire);
            if before % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let mut copies = Vec::new();
            for (i, s) in self.slots().iter().enumerate() {
                let id = s.id.load(Ordering::Relaxed);
                if id == 0 {
                    continue;
                }
                let ends = s.ends_ms.load(Ordering::Relaxed);
                // A torn length is caught by the check below; it must only
                // stay in bounds.
                let len = (s.len.load(Ordering::Relaxed) as usize).min(DATA_WORDS * 8);
                let mut bytes = Vec::with_capacity(len.next_multiple_of(8));
                for word in &s.data[..len.div_ceil(8)] {
                    bytes.extend_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
                }
                bytes.truncate(len);
                copies.push(Copied { slot: i as u32, id, ends_ms: ends, bytes });
            }
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == before {
                return Some((before, copies));
            }
        }
        None
    }
}

/// A slot as a worker copied it.
struct Copied {
    slot: u32,
    id: u64,
    ends_ms: u64,
    /// The encoded session.
    bytes: Vec<u8>,
}

/// What a writer does with the lock held.
struct Writer<'a> {
    table: &'a SessionTable,
}

impl Writer<'_> {
    /// Runs `f`, which changes slots, between the two steps of the
    /// sequence.
    fn change(&self, f: impl FnOnce()) {
        let seq = &self.table.seq;
        let s = seq.load(Ordering::Relaxed);
        seq.store(s + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        f();
        seq.store(s + 2, Ordering::Release);
    }

    fn slot(&self, index: u32) -> &Slot {
        &self.table.slots()[index as usize]
    }

    /// The slot of the session called `name`, ended or not.
    fn find(&self, name: &str) -> Option<u32> {
        (0..self.table.capacity).find(|&i| {
            self.slot(i).id.load(Ordering::Relaxed) != 0
                && decode(&self.data(i)).is_some_and(|spec| spec.name == name)
        })
    }

    fn data(&self, index: u32) -> Vec<u8> {
        let s = self.slot(index);
        let len = (s.len.load(Ordering::Relaxed) as usize).min(DATA_WORDS * 8);
        let mut bytes: Vec<u8> =
            s.data.iter().flat_map(|w| w.load(Ordering::Relaxed).to_le_bytes()).collect();
        bytes.truncate(len);
        bytes
    }

    fn info(&self, index: u32, now_ms: u64) -> Option<SessionInfo> {
        let s = self.slot(index);
        let id = s.id.load(Ordering::Relaxed);
        if id == 0 {
            return None;
        }
        Some(SessionInfo {
            spec: decode(&self.data(index))?,
            id,
            slot: index,
            left_ms: s.ends_ms.load(Ordering::Relaxed).saturating_sub(now_ms),
            matched: s.matched.load(Ordering::Relaxed),
            sent: s.sent.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
        })
    }

    fn clear(&self, index: u32) {
        self.change(|| {
            self.slot(index).id.store(0, Ordering::Release);
            self.table.in_use.fetch_sub(1, Ordering::AcqRel);
        });
    }

    fn sweep(&self, now_ms: u64) -> Vec<SessionInfo> {
        let mut ended = Vec::new();
        for i in 0..self.table.capacity {
            let s = self.slot(i);
            if s.id.load(Ordering::Relaxed) != 0 && s.ends_ms.load(Ordering::Relaxed) <= now_ms {
                if let Some(info) = self.info(i, now_ms) {
                    ended.push(info);
                }
                self.clear(i);
            }
        }
        ended
    }
}

/// A session as a worker matches it: decoded once, when it appeared.
#[derive(Debug, Clone)]
struct Live {
    slot: u32,
    id: u64,
    ends_ms: u64,
    filter: Filter,
    scope: Scope,
    dest: Option<Destination>,
}

/// A session that matched a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    pub slot: u32,
    pub id: u64,
    pub scope: Scope,
    /// The session's own destination; `None`: the configured ones.
    pub dest: Option<Destination>,
}

/// A worker's copy of the running sessions.
#[derive(Debug, Default)]
pub struct SessionCache {
    /// The table's sequence the copy was taken at; `None` before the first.
    seq: Option<u64>,
    sessions: Vec<Live>,
    /// The latest end of the sessions copied: after it, none matches.
    ends_ms: u64,
}

impl SessionCache {
    pub const fn new() -> SessionCache {
        SessionCache { seq: None, sessions: Vec::new(), ends_ms: 0 }
    }

    /// Brings the copy up to date with `table`. False when writers kept it
    /// changing: the old copy stays, and the next call tries again.
    pub fn refresh(&mut self, table: &SessionTable) -> bool {
        if self.seq == Some(table.seq.load(Ordering::Acquire)) {
            return true;
        }
        let Some((seq, copies)) = table.read_consistent() else { return false };
        self.sessions = copies
            .into_iter()
            .filter_map(|Copied { slot, id, ends_ms, bytes }| {
                let spec = decode(&bytes)?;
                Some(Live { slot, id, ends_ms, filter: spec.filter, scope: spec.scope, dest: spec.dest })
            })
            .collect();
        self.ends_ms = self.sessions.iter().map(|s| s.ends_ms).max().unwrap_or(0);
        self.seq = Some(seq);
        true
    }

    /// Whether any copied session may still match at `now_ms`.
    pub fn any_running(&self, now_ms: u64) -> bool {
        now_ms < self.ends_ms
    }

    /// Appends to `out` the running sessions whose filter `req` matches.
    pub fn matches(&self, req: &Request<'_>, now_ms: u64, out: &mut Vec<Match>) {
        for s in &self.sessions {
            if now_ms < s.ends_ms && s.filter.matches(req) {
                out.push(Match { slot: s.slot, id: s.id, scope: s.scope, dest: s.dest });
            }
        }
    }

    /// Sessions in the copy, ended or not.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

/// The encoded session: lengths and fields, little-endian. `None` when a
/// field is longer than its slot allows.
fn encode(spec: &Spec) -> Option<Vec<u8>> {
    let filter = spec.filter.to_string();
    let uri = spec.uri.as_deref().unwrap_or_default();
    let tls = spec.tls_name.as_deref().unwrap_or_default();
    if spec.name.len() > MAX_NAME_LEN
        || filter.len() > MAX_FILTER_LEN
        || uri.len() > MAX_URI_LEN
        || tls.len() > MAX_TLS_NAME_LEN
    {
        return None;
    }
    let mut out = Vec::with_capacity(DATA_BYTES);
    out.push(spec.name.len() as u8);
    out.extend_from_slice(spec.name.as_bytes());
    out.extend_from_slice(&(filter.len() as u16).to_le_bytes());
    out.extend_from_slice(filter.as_bytes());
    // The URI's length is one more than its bytes, 0 for none.
    out.extend_from_slice(&(spec.uri.as_ref().map_or(0, |u| u.len() + 1) as u16).to_le_bytes());
    out.extend_from_slice(uri.as_bytes());
    match spec.dest {
        None => out.extend_from_slice(&[0; DEST_BYTES]),
        Some(d) => {
            let transport = TRANSPORTS.iter().position(|t| *t == d.transport)? as u8;
            let (family, ip) = match d.addr.ip() {
                IpAddr::V4(v4) => {
                    let mut ip = [0u8; 16];
                    ip[..4].copy_from_slice(&v4.octets());
                    (4, ip)
                }
                IpAddr::V6(v6) => (6, v6.octets()),
            };
            out.extend_from_slice(&[1, transport, family]);
            out.extend_from_slice(&d.addr.port().to_le_bytes());
            out.extend_from_slice(&ip);
        }
    }
    out.push(tls.len() as u8);
    out.extend_from_slice(tls.as_bytes());
    out.push(match spec.scope {
        Scope::Message => b'm',
        Scope::Transaction => b't',
        Scope::Dialog => b'd',
    });
    out.extend_from_slice(&spec.seconds.to_le_bytes());
    debug_assert!(out.len() <= DATA_BYTES);
    Some(out)
}

fn decode(bytes: &[u8]) -> Option<Spec> {
    let mut at = 0;
    let mut take = |n: usize| {
        let b = bytes.get(at..at + n)?;
        at += n;
        Some(b)
    };
    let text = |b: &[u8]| std::str::from_utf8(b).ok().map(str::to_string);
    let name_len = take(1)?[0] as usize;
    let name = text(take(name_len)?)?;
    let filter_len = u16::from_le_bytes(take(2)?.try_into().ok()?) as usize;
    let filter = Filter::parse(std::str::from_utf8(take(filter_len)?).ok()?).ok()?;
    let uri_len = u16::from_le_bytes(take(2)?.try_into().ok()?) as usize;
    let uri = match uri_len {
        0 => None,
        n => Some(text(take(n - 1)?)?),
    };
    let d = take(DEST_BYTES)?;
    let dest = match d[0] {
        0 => None,
        _ => {
            let transport = *TRANSPORTS.get(d[1] as usize)?;
            let port = u16::from_le_bytes([d[3], d[4]]);
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&d[5..21]);
            let ip = match d[2] {
                4 => IpAddr::V4(Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3])),
                6 => IpAddr::V6(Ipv6Addr::from(octets)),
                _ => return None,
            };
            Some(Destination { addr: SocketAddr::new(ip, port), transport })
        }
    };
    let tls_len = take(1)?[0] as usize;
    let tls_name = match tls_len {
        0 => None,
        n => Some(text(take(n)?)?),
    };
    let scope = match take(1)?[0] {
        b'm' => Scope::Message,
        b't' => Scope::Transaction,
        b'd' => Scope::Dialog,
        _ => return None,
    };
    let seconds = u32::from_le_bytes(take(4)?.try_into().ok()?);
    Some(Spec { name, filter, seconds, uri, dest, tls_name, scope })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ring::tests::shared_memory;
    use crate::core::sip::summary;

    fn table(capacity: u32) -> &'static SessionTable {
        let mem = shared_memory(SessionTable::size_for(capacity));
        // SAFETY: a fresh shared mapping of the size asked, never unmapped.
        unsafe { SessionTable::init_at(mem, capacity) }.unwrap()
    }

    fn spec(name: &str, filter: &str) -> Spec {
        Spec {
            name: name.into(),
            filter: Filter::parse(filter).unwrap(),
            seconds: 60,
            uri: None,
            dest: None,
            tls_name: None,
            scope: Scope::Dialog,
        }
    }

    const FROM_ALICE: &[u8] =
        b"INVITE sip:bob@b SIP/2.0\r\nFrom: <sip:alice@a>;tag=1\r\nTo: <sip:bob@b>\r\nCall-ID: c1\r\n\
CSeq: 1 INVITE\r\n\r\n";

    fn matched(cache: &mut SessionCache, t: &SessionTable, msg: &[u8], now: u64) -> Vec<Match> {
        assert!(cache.refresh(t));
        let s = summary(msg).unwrap();
        let mut out = Vec::new();
        cache.matches(&Request::new(&s, "192.0.2.1".parse().unwrap()), now, &mut out);
        out
    }

    #[test]
    fn sessions_are_encoded_and_decoded_whole() {
        let mut s =
            spec("a-very.long:name@x+1", "from=alice@a.example;src=2001:db8::/32;method=INVITE|MESSAGE");
        s.uri = Some("sips:homer.example.com:9061".into());
        s.dest = Some(Destination { addr: "[2001:db8::9]:9061".parse().unwrap(), transport: Transport::Tls });
        s.tls_name = Some("homer.example.com".into());
        s.scope = Scope::Transaction;
        s.seconds = 3600;
        assert_eq!(decode(&encode(&s).unwrap()), Some(s.clone()));
        let mut long = s.clone();
        long.uri = Some("x".repeat(MAX_URI_LEN));
        long.tls_name = Some("y".repeat(MAX_TLS_NAME_LEN));
        long.name = "n".repeat(MAX_NAME_LEN);
        long.filter = Filter::parse(&format!("callid={}", "z".repeat(255))).unwrap();
        let bytes = encode(&long).unwrap();
        assert!(bytes.len() <= DATA_BYTES);
        assert_eq!(decode(&bytes), Some(long.clone()));
        long.name.push('n');
        assert_eq!(encode(&long), None);
        let mut plain = spec("p", "to=bob");
        plain.uri = Some("sip:127.0.0.1:9060".into());
        plain.dest = Some(Destination { addr: "127.0.0.1:9060".parse().unwrap(), transport: Transport::Udp });
        assert_eq!(decode(&encode(&plain).unwrap()), Some(plain));
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut]), None);
        }
    }

    #[test]
    fn start_list_stop() {
        let t = table(4);
        assert!(!t.any());
        let (info, ended) = t.start(&spec("alice", "from=alice"), 1000).unwrap();
        assert!(ended.is_empty());
        assert_eq!((info.spec.name.as_str(), info.left_ms, info.matched), ("alice", 60_000, 0));
        assert!(t.any());
        assert_eq!(t.active(1000), 1);
        t.start(&spec("bob", "from=bob"), 2000).unwrap();
        assert_eq!(t.start(&spec("alice", "to=x"), 2000).unwrap_err(), TableError::NameTaken("alice".into()));
        let (list, _) = t.list(31_000).unwrap();
        assert_eq!(
            list.iter().map(|i| (i.spec.name.as_str(), i.left_ms)).collect::<Vec<_>>(),
            [("alice", 30_000), ("bob", 31_000)]
        );
        let (stopped, _) = t.stop("alice", 31_000).unwrap();
        assert_eq!(stopped.spec.filter.to_string(), "from=alice");
        assert_eq!(t.stop("alice", 31_000).unwrap_err(), TableError::NotFound("alice".into()));
        assert_eq!(t.list(31_000).unwrap().0.len(), 1);
        t.stop("bob", 31_000).unwrap();
        assert!(!t.any());
        assert_eq!(TableError::NotFound("x".into()).to_string(), "no session named 'x' is running",);
    }

    #[test]
    fn a_full_table_refuses_and_keeps_its_sessions() {
        let t = table(2);
        t.start(&spec("one", "from=a"), 0).unwrap();
        t.start(&spec("two", "from=b"), 0).unwrap();
        let e = t.start(&spec("three", "from=c"), 0).unwrap_err();
        assert_eq!(e, TableError::Full(2));
        assert!(e.to_string().contains("2 sessions are running, the most trace_sessions_max allows"));
        let names: Vec<String> = t.list(0).unwrap().0.into_iter().map(|i| i.spec.name).collect();
        assert_eq!(names, ["one", "two"]);
        // An ended session makes room.
        let (_, ended) = t.start(&spec("three", "from=c"), 60_000).unwrap();
        assert_eq!(ended.len(), 2);
        assert_eq!(t.list(60_000).unwrap().0.len(), 1);
    }

    #[test]
    fn sessions_end_by_themselves() {
        let t = table(2);
        let mut cache = SessionCache::new();
        t.start(&spec("alice", "from=alice"), 1000).unwrap();
        assert_eq!(matched(&mut cache, t, FROM_ALICE, 60_999).len(), 1);
        assert!(cache.any_running(60_999));
        assert!(matched(&mut cache, t, FROM_ALICE, 61_000).is_empty(), "ended at start + 60 s");
        assert!(!cache.any_running(61_000));
        assert_eq!(t.active(61_000), 0);
        assert!(t.any(), "still in its slot until swept");
        let ended = t.sweep(61_000).unwrap();
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].left_ms, 0);
        assert!(!t.any());
        assert!(t.sweep(61_000).unwrap().is_empty());
    }

    #[test]
    fn workers_see_a_change_at_their_next_request() {
        let t = table(4);
        let mut cache = SessionCache::new();
        assert!(matched(&mut cache, t, FROM_ALICE, 0).is_empty());
        let (info, _) = t.start(&spec("alice", "from=alice"), 0).unwrap();
        let m = matched(&mut cache, t, FROM_ALICE, 0);
        assert_eq!(m, [Match { slot: info.slot, id: info.id, scope: Scope::Dialog, dest: None }]);
        t.start(&spec("all-invites", "method=INVITE"), 0).unwrap();
        t.start(&spec("bob", "from=bob"), 0).unwrap();
        assert_eq!(matched(&mut cache, t, FROM_ALICE, 0).len(), 2);
        t.stop("alice", 0).unwrap();
        let m = matched(&mut cache, t, FROM_ALICE, 0);
        assert_eq!(m.len(), 1);
        assert_ne!(m[0].id, info.id);
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn the_sender_finds_a_sessions_tls_name() {
        let t = table(2);
        let dest = Destination { addr: "192.0.2.5:9061".parse().unwrap(), transport: Transport::Tls };
        assert_eq!(t.tls_name(dest), None);
        let mut s = spec("tls", "from=a");
        s.uri = Some("sips:homer.example.com:9061".into());
        s.dest = Some(dest);
        s.tls_name = Some("homer.example.com".into());
        t.start(&spec("plain", "from=b"), 0).unwrap();
        t.start(&s, 0).unwrap();
        assert_eq!(t.tls_name(dest).as_deref(), Some("homer.example.com"));
        let other = Destination { addr: "192.0.2.6:9061".parse().unwrap(), transport: Transport::Tls };
        assert_eq!(t.tls_name(other), None);
    }

    #[test]
    fn counters_go_to_the_session_that_holds_the_slot() {
        let t = table(1);
        let (a, _) = t.start(&spec("a", "from=a"), 0).unwrap();
        t.count(a.slot, a.id, SessionCounter::Matched, 1);
        t.count(a.slot, a.id, SessionCounter::Sent, 5);
        t.count(a.slot, a.id, SessionCounter::Dropped, 2);
        t.count(7, a.id, SessionCounter::Sent, 1);
        let (stopped, _) = t.stop("a", 0).unwrap();
        assert_eq!((stopped.matched, stopped.sent, stopped.dropped), (1, 5, 2));
        let (b, _) = t.start(&spec("b", "from=b"), 0).unwrap();
        assert_eq!(b.slot, a.slot);
        // A late count for the stopped session is not the new one's.
        t.count(a.slot, a.id, SessionCounter::Sent, 1);
        let (list, _) = t.list(0).unwrap();
        assert_eq!((list[0].matched, list[0].sent, list[0].dropped), (0, 0, 0));
    }

    #[test]
    fn a_reader_never_sees_a_half_written_session() {
        // A writer starts and stops sessions as fast as it can while this
        // thread copies the table: every copy it accepts decodes. (A thread
        // rather than a forked process: a child would hold on to what other
        // tests have open, their sockets.)
        let t = table(2);
        let done = std::sync::atomic::AtomicBool::new(false);
        let mut copied = 0;
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for i in 0..3000u32 {
                    let name = format!("s{}", i % 2);
                    let filter = if i % 3 == 0 {
                        "from=alice".to_string()
                    } else {
                        format!("callid={}", "x".repeat(200))
                    };
                    let _ = t.start(&spec(&name, &filter), 0);
                    let _ = t.stop(&format!("s{}", (i + 1) % 2), 0);
                }
                done.store(true, Ordering::Release);
            });
            while !done.load(Ordering::Acquire) {
                if let Some((seq, copies)) = t.read_consistent() {
                    assert_eq!(seq % 2, 0);
                    assert!(copies.len() <= 2);
                    for copy in copies {
                        let spec = decode(&copy.bytes).expect("a consistent copy decodes");
                        assert!(spec.name == "s0" || spec.name == "s1");
                        copied += 1;
                    }
                }
            }
        });
        let mut cache = SessionCache::new();
        assert!(cache.refresh(t));
        assert!(cache.len() <= 2);
        assert!(copied > 0);
    }
}
