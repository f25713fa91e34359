//! The disk spool: what a sending process could not hand to any
//! destination it must go to waits here, on disk, until one is back.
//!
//! Only the sending process touches it; SIP workers never do I/O.
//!
//! ## Layout
//!
//! ```text
//! spool_dir/s<sender>/q-<target id>/<sequence, 16 hex digits>.seg
//!                                  /cursor
//! ```
//!
//! A queue holds the records of one target: a destination (copy), a list
//! of destinations (failover, shard: the pick is made again at replay), or
//! the database. Its segments are files of frames, appended in order:
//!
//! ```text
//! "SPL1" | body length (u32 LE) | CRC-32 of the body (u32 LE) | body
//! body: version 1 | kind | distribution | destination count |
//!       call key hash (u64 LE) | time in µs (u64 LE) |
//!       destinations (20 bytes each) | data (a HEP packet, a SIP copy, or a row)
//! ```
//!
//! The cursor file holds two slots, written in turn, each with a
//! generation, the segment and offset replay has reached, and the end of
//! the batch in flight; the valid slot with the higher generation counts.
//! A segment is deleted once replay has handed all of it over. At startup
//! every segment is read: torn or damaged stretches are cut out and
//! counted (`dropped_spool_corrupt`), and a batch that was in flight when
//! the process died is replayed again and counted (`replay_repeated`).
//! Writes are not synced: a killed process loses nothing, since the
//! kernel holds what was written; a power cut may lose the tail, which
//! the checksums then cut off.

use crate::core::dest::Destination;
use crate::core::endpoint::{Endpoint, Transport};
use crate::core::settings::Distribution;
use std::collections::{HashSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 4] = b"SPL1";
const FRAME_HEAD: usize = 12;
const BODY_HEAD: usize = 4 + 8 + 8;
const DEST_LEN: usize = 20;
/// The largest frame read back; a longer length is damage.
const MAX_FRAME: usize = 16 << 20;
/// Bytes read from a segment at once during replay.
const READ_CHUNK: usize = 256 << 10;
const CURSOR_SLOT: usize = 40;

/// What a spooled record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    Hep = 1,
    Copy = 2,
    Row = 3,
}

/// Where a queue's records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub kind: Kind,
    pub distribution: Distribution,
    pub dests: Vec<Destination>,
}

impl Target {
    pub fn id(&self) -> u64 {
        let mut h = crate::core::sender::cluster::fnv1a(
            &[self.kind as u8, self.distribution as u8],
            crate::core::sender::cluster::FNV_OFFSET,
        );
        for d in &self.dests {
            h = crate::core::sender::cluster::fnv1a(crate::core::sender::cluster::dest_name(d).as_bytes(), h);
            h = crate::core::sender::cluster::fnv1a(&[0xff], h);
        }
        h
    }
}

/// A record read back for replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: u64,
    pub time_us: u64,
    pub data: Vec<u8>,
}

/// Records taken for replay; [`Spool::commit`] or [`Spool::rewind`] ends it.
#[derive(Debug)]
pub struct Batch {
    pub target: Target,
    pub entries: Vec<Entry>,
    /// Damaged records skipped on the way (after startup's check).
    pub skipped: u64,
    queue: u64,
    seq: u64,
    end: u64,
}

/// What startup found in the spool.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Found {
    pub records: u64,
    pub bytes: u64,
    /// Damaged stretches cut out (each counts as one record).
    pub corrupt: u64,
    /// Records of a batch that was in flight when the last process died.
    pub repeated: u64,
}

/// Why a record was not spooled.
#[derive(Debug)]
pub enum NotSpooled {
    /// It does not fit even after dropping every segment that may go.
    Full,
    Io(io::Error),
}

struct Segment {
    seq: u64,
    path: PathBuf,
    size: u64,
    /// Records in it not replayed yet.
    records: u64,
    /// Where replay continues (the first segment only).
    read: u64,
    /// Appended to by this process.
    file: Option<File>,
}

struct Queue {
    id: u64,
    dir: PathBuf,
    target: Target,
    segments: VecDeque<Segment>,
    cursor: File,
    generation: u64,
    keys: HashSet<u64>,
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_max: u64,
    queues: Vec<Queue>,
    next_seq: u64,
    bytes: u64,
    records: u64,
    /// The queue and segment of the batch in flight: never dropped.
    in_flight: Option<(u64, u64)>,
    /// Records dropped to make room, not yet taken by the caller.
    dropped_full: u64,
}

/// CRC-32 (IEEE 802.3, as zlib's crc32).
pub fn crc32(bytes: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
            }
            *e = c;
        }
        t
    });
    !bytes.iter().fold(!0u32, |c, &b| table[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8))
}

/// Checks that `dir` can hold a spool: creates it and writes a file in it.
pub fn check_dir(dir: &Path) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| format!("cannot create '{}': {e}", dir.display()))?;
    let probe = dir.join(".write-check");
    fs::write(&probe, b"ok").map_err(|e| format!("cannot write in '{}': {e}", dir.display()))?;
    fs::remove_file(&probe).map_err(|e| format!("cannot write in '{}': {e}", dir.display()))?;
    Ok(())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or_default())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or_default())
}

/// What is at `at` in `buf`.
enum Frame {
    Whole {
        body: std::ops::Range<usize>,
        next: usize,
    },
    /// The frame goes on past the buffer.
    Cut,
    Bad,
}

fn frame_at(buf: &[u8], at: usize) -> Frame {
    if buf.len() - at < FRAME_HEAD {
        return Frame::Cut;
    }
    if &buf[at..at + 4] != MAGIC {
        return Frame::Bad;
    }
    let len = u32_at(buf, at + 4) as usize;
    if !(BODY_HEAD..=MAX_FRAME).contains(&len) {
        return Frame::Bad;
    }
    let start = at + FRAME_HEAD;
    if buf.len() - start < len {
        return Frame::Cut;
    }
    let body = start..start + len;
    if crc32(&buf[body.clone()]) != u32_at(buf, at + 8) || !body_ok(&buf[body.clone()]) {
        return Frame::Bad;
    }
    Frame::Whole { next: body.end, body }
}

fn body_ok(body: &[u8]) -> bool {
    body[0] == 1
        && (1..=3).contains(&body[1])
        && body[2] <= 2
        && body.len() >= BODY_HEAD + body[3] as usize * DEST_LEN
}

/// The next offset after `at` where a whole frame starts, or the end.
fn resync(buf: &[u8], at: usize) -> usize {
    let mut i = at + 1;
    while i + 4 <= buf.len() {
        if &buf[i..i + 4] == MAGIC && matches!(frame_at(buf, i), Frame::Whole { .. }) {
            return i;
        }
        i += 1;
    }
    buf.len()
}

/// What a segment holds from `start` on: the whole frames (start and end
/// offsets) and the damaged stretches between them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scan {
    pub frames: Vec<(usize, usize)>,
    pub corrupt: u64,
}

/// Reads a segment's bytes: whole frames are kept; each torn or damaged
/// stretch is skipped up to the next whole frame and counted once.
pub fn scan(buf: &[u8], start: usize) -> Scan {
    let mut out = Scan::default();
    let mut at = start.min(buf.len());
    while at < buf.len() {
        match frame_at(buf, at) {
            Frame::Whole { next, .. } => {
                out.frames.push((at, next));
                at = next;
            }
            Frame::Cut | Frame::Bad => {
                out.corrupt += 1;
                at = resync(buf, at);
            }
        }
    }
    out
}

/// A frame as the spool writes it, for tests and fuzzing.
pub fn frame(target: &Target, key: u64, time_us: u64, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(target, key, time_us, data, &mut out);
    out
}

/// The target and entry of a whole frame that [`scan`] found.
pub fn read_frame(frame: &[u8]) -> Option<(Target, Entry)> {
    let body = frame.get(FRAME_HEAD..)?;
    Some((target_of(body)?, entry_of(body)))
}

fn target_of(body: &[u8]) -> Option<Target> {
    let kind = match body[1] {
        1 => Kind::Hep,
        2 => Kind::Copy,
        3 => Kind::Row,
        _ => return None,
    };
    let distribution = match body[2] {
        0 => Distribution::Copy,
        1 => Distribution::Failover,
        _ => Distribution::Shard,
    };
    let mut dests = Vec::new();
    for i in 0..body[3] as usize {
        let d = &body[BODY_HEAD + i * DEST_LEN..BODY_HEAD + (i + 1) * DEST_LEN];
        let transport = match d[0] {
            0 => Transport::Udp,
            1 => Transport::Tcp,
            2 => Transport::Tls,
            _ => return None,
        };
        let port = u16::from_le_bytes([d[2], d[3]]);
        let ip: std::net::IpAddr = match d[1] {
            4 => std::net::Ipv4Addr::new(d[4], d[5], d[6], d[7]).into(),
            6 => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(&d[4..20]).ok()?).into(),
            _ => return None,
        };
        dests.push(Destination { addr: (ip, port).into(), transport });
    }
    Some(Target { kind, distribution, dests })
}

fn entry_of(body: &[u8]) -> Entry {
    let data = BODY_HEAD + body[3] as usize * DEST_LEN;
    Entry { key: u64_at(body, 4), time_us: u64_at(body, 12), data: body[data..].to_vec() }
}

fn encode_frame(target: &Target, key: u64, time_us: u64, data: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&[1, target.kind as u8, target.distribution as u8, target.dests.len() as u8]);
    out.extend_from_slice(&key.to_le_bytes());
    out.extend_from_slice(&time_us.to_le_bytes());
    for d in &target.dests {
        let ep = Endpoint::new(d.transport, d.addr.ip(), d.addr.port());
        let t = match ep.transport {
            Transport::Tcp => 1,
            Transport::Tls => 2,
            _ => 0,
        };
        let mut ip = [0u8; 16];
        let family = match d.addr.ip() {
            std::net::IpAddr::V4(v4) => {
                ip[..4].copy_from_slice(&v4.octets());
                4
            }
            std::net::IpAddr::V6(v6) => {
                ip = v6.octets();
                6
            }
        };
        out.extend_from_slice(&[t, family]);
        out.extend_from_slice(&d.addr.port().to_le_bytes());
        out.extend_from_slice(&ip);
    }
    out.extend_from_slice(data);
    let len = (out.len() - FRAME_HEAD) as u32;
    let crc = crc32(&out[FRAME_HEAD..]);
    out[4..8].copy_from_slice(&len.to_le_bytes());
    out[8..12].copy_from_slice(&crc.to_le_bytes());
}

/// Reads the cursor: (generation, segment, offset, end of batch in flight).
fn read_cursor(file: &File) -> (u64, u64, u64, u64) {
    let mut best = (0, 0, 0, 0);
    let mut buf = [0u8; CURSOR_SLOT * 2];
    let n = file.read_at(&mut buf, 0).unwrap_or(0);
    for slot in buf[..n].chunks_exact(CURSOR_SLOT) {
        if crc32(&slot[..32]) != u32_at(slot, 32) {
            continue;
        }
        let c = (u64_at(slot, 0), u64_at(slot, 8), u64_at(slot, 16), u64_at(slot, 24));
        if c.0 > best.0 {
            best = c;
        }
    }
    best
}

impl Queue {
    fn write_cursor(&mut self, seq: u64, off: u64, end: u64) -> io::Result<()> {
        self.generation += 1;
        let mut slot = [0u8; CURSOR_SLOT];
        slot[0..8].copy_from_slice(&self.generation.to_le_bytes());
        slot[8..16].copy_from_slice(&seq.to_le_bytes());
        slot[16..24].copy_from_slice(&off.to_le_bytes());
        slot[24..32].copy_from_slice(&end.to_le_bytes());
        let crc = crc32(&slot[..32]);
        slot[32..36].copy_from_slice(&crc.to_le_bytes());
        self.cursor.write_all_at(&slot, (self.generation % 2) * CURSOR_SLOT as u64)
    }

    fn records(&self) -> u64 {
        self.segments.iter().map(|s| s.records).sum()
    }
}

fn seq_of(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let hex = name.strip_suffix(".seg")?;
    (hex.len() == 16).then(|| u64::from_str_radix(hex, 16).ok()).flatten()
}

impl Spool {
    /// Opens sender `index`'s spool under `root` (of `count` senders), with
    /// room for `max_bytes`; takes over the queues of sender directories
    /// beyond `count` (left by a run with more senders) that fall to it.
    pub fn open(root: &Path, index: usize, count: usize, max_bytes: u64) -> io::Result<(Spool, Found)> {
        let dir = root.join(format!("s{index}"));
        fs::create_dir_all(&dir)?;
        let segment_max = (max_bytes / 16).clamp(16 << 10, 4 << 20);
        let mut spool = Spool {
            dir: dir.clone(),
            max_bytes,
            segment_max,
            queues: Vec::new(),
            next_seq: 1,
            bytes: 0,
            records: 0,
            in_flight: None,
            dropped_full: 0,
        };
        let mut found = Found::default();
        let mut dirs = vec![dir];
        for e in fs::read_dir(root)?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(j) = name.strip_prefix('s').and_then(|n| n.parse::<usize>().ok()) {
                if j >= count && j % count.max(1) == index {
                    dirs.push(e.path());
                }
            }
        }
        for d in dirs {
            for q in fs::read_dir(&d)?.flatten() {
                let path = q.path();
                let name = q.file_name().to_string_lossy().into_owned();
                let Some(id) = name.strip_prefix("q-").and_then(|h| u64::from_str_radix(h, 16).ok()) else {
                    continue;
                };
                if path.is_dir() {
                    spool.load_queue(id, &path, &mut found)?;
                }
            }
        }
        spool.bytes = spool.queues.iter().flat_map(|q| &q.segments).map(|s| s.size).sum();
        spool.records = spool.queues.iter().map(Queue::records).sum();
        found.bytes = spool.bytes;
        found.records = spool.records;
        Ok((spool, found))
    }

    fn load_queue(&mut self, id: u64, dir: &Path, found: &mut Found) -> io::Result<()> {
        let cursor = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("cursor"))?;
        let (generation, c_seq, c_off, c_end) = read_cursor(&cursor);
        let mut paths: Vec<(u64, PathBuf)> =
            fs::read_dir(dir)?.flatten().filter_map(|e| seq_of(&e.path()).map(|s| (s, e.path()))).collect();
        paths.sort();
        let mut target = None;
        let mut segments = VecDeque::new();
        let mut keys = HashSet::new();
        for (seq, path) in paths {
            self.next_seq = self.next_seq.max(seq + 1);
            if seq < c_seq {
                // Replayed whole before the process died.
                let _ = fs::remove_file(&path);
                continue;
            }
            let buf = fs::read(&path)?;
            let start = if seq == c_seq { (c_off as usize).min(buf.len()) } else { 0 };
            let scanned = scan(&buf, start);
            let mut clean = Vec::with_capacity(buf.len());
            let records = scanned.frames.len() as u64;
            let damaged = scanned.corrupt > 0;
            found.corrupt += scanned.corrupt;
            for (at, next) in scanned.frames {
                let body = &buf[at + FRAME_HEAD..next];
                if target.is_none() {
                    target = target_of(body);
                }
                if seq == c_seq && c_end > c_off && (at as u64) < c_end {
                    found.repeated += 1;
                }
                keys.insert(u64_at(body, 4));
                clean.extend_from_slice(&buf[at..next]);
            }
            if records == 0 {
                let _ = fs::remove_file(&path);
                continue;
            }
            if damaged || start > 0 {
                // Keep only the whole frames not yet replayed.
                let tmp = path.with_extension("tmp");
                fs::write(&tmp, &clean)?;
                fs::rename(&tmp, &path)?;
            }
            segments.push_back(Segment { seq, path, size: clean.len() as u64, records, read: 0, file: None });
        }
        let Some(target) = target.filter(|t| t.id() == id) else {
            // Nothing left, or not ours: an empty queue goes.
            if segments.is_empty() {
                let _ = fs::remove_dir_all(dir);
            }
            return Ok(());
        };
        let mut queue = Queue { id, dir: dir.to_path_buf(), target, segments, cursor, generation, keys };
        let first = queue.segments.front().map_or(0, |s| s.seq);
        queue.write_cursor(first, 0, 0)?;
        self.queues.push(queue);
        Ok(())
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn records(&self) -> u64 {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Records dropped to make room since the last call.
    pub fn take_dropped_full(&mut self) -> u64 {
        std::mem::take(&mut self.dropped_full)
    }

    /// Whether the queue of `target` holds records of call `key`: its next
    /// records then follow them through the spool, to keep the call's order.
    pub fn holds_call(&self, target_id: u64, key: u64) -> bool {
        self.queues.iter().any(|q| q.id == target_id && q.keys.contains(&key))
    }

    /// The targets of the queues that hold records.
    pub fn targets(&self) -> Vec<Target> {
        self.queues.iter().filter(|q| q.records() > 0).map(|q| q.target.clone()).collect()
    }

    /// Whether the queue of `target` holds anything.
    pub fn holds(&self, target_id: u64) -> bool {
        self.queues.iter().any(|q| q.id == target_id && q.records() > 0)
    }

    /// Appends a record for `target`; drops the oldest segments to make
    /// room (counted by [`Spool::take_dropped_full`]).
    pub fn append(
        &mut self,
        target: &Target,
        key: u64,
        time_us: u64,
        data: &[u8],
        scratch: &mut Vec<u8>,
    ) -> Result<(), NotSpooled> {
        encode_frame(target, key, time_us, data, scratch);
        let len = scratch.len() as u64;
        while self.bytes + len > self.max_bytes {
            if !self.drop_oldest() {
                return Err(NotSpooled::Full);
            }
        }
        let id = target.id();
        let qi = match self.queues.iter().position(|q| q.id == id) {
            Some(i) => i,
            None => {
                let dir = self.dir.join(format!("q-{id:016x}"));
                fs::create_dir_all(&dir).map_err(NotSpooled::Io)?;
                let cursor = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(dir.join("cursor"))
                    .map_err(NotSpooled::Io)?;
                self.queues.push(Queue {
                    id,
                    dir,
                    target: target.clone(),
                    segments: VecDeque::new(),
                    cursor,
                    generation: 0,
                    keys: HashSet::new(),
                });
                self.queues.len() - 1
            }
        };
        let seg_max = self.segment_max;
        let q = &mut self.queues[qi];
        let fits = q.segments.back().is_some_and(|s| s.file.is_some() && s.size + len <= seg_max);
        if !fits {
            let seq = self.next_seq;
            self.next_seq += 1;
            let path = q.dir.join(format!("{seq:016x}.seg"));
            let file = OpenOptions::new().create(true).append(true).open(&path).map_err(NotSpooled::Io)?;
            if let Some(last) = q.segments.back_mut() {
                last.file = None;
            } else {
                q.write_cursor(seq, 0, 0).map_err(NotSpooled::Io)?;
            }
            q.segments.push_back(Segment { seq, path, size: 0, records: 0, read: 0, file: Some(file) });
        }
        let Some(seg) = q.segments.back_mut() else { return Err(NotSpooled::Full) };
        let Some(file) = seg.file.as_mut() else { return Err(NotSpooled::Full) };
        if let Err(e) = file.write_all(scratch) {
            // A partial write is cut off at startup by its checksum; stop
            // appending to this segment.
            seg.file = None;
            return Err(NotSpooled::Io(e));
        }
        seg.size += len;
        seg.records += 1;
        q.keys.insert(key);
        self.bytes += len;
        self.records += 1;
        Ok(())
    }

    /// Drops the oldest segment that no batch in flight reads from; returns
    /// whether there was one.
    fn drop_oldest(&mut self) -> bool {
        let in_flight = self.in_flight;
        let oldest = self
            .queues
            .iter()
            .enumerate()
            .flat_map(|(qi, q)| q.segments.iter().enumerate().map(move |(si, s)| (s.seq, qi, si, q.id)))
            .filter(|(seq, _, _, id)| in_flight != Some((*id, *seq)))
            .min();
        let Some((_, qi, si, _)) = oldest else { return false };
        let q = &mut self.queues[qi];
        let Some(seg) = q.segments.remove(si) else { return false };
        let _ = fs::remove_file(&seg.path);
        self.bytes -= seg.size;
        self.records -= seg.records;
        self.dropped_full += seg.records;
        if si == 0 {
            let next = q.segments.front().map_or(seg.seq + 1, |s| s.seq);
            let _ = q.write_cursor(next, 0, 0);
        }
        if q.segments.is_empty() {
            q.keys.clear();
        }
        true
    }

    /// Takes up to `max` records, oldest first, from the queue whose target
    /// `ready` accepts and whose oldest record is the oldest; notes the
    /// batch as in flight on disk first.
    pub fn take(&mut self, max: usize, mut ready: impl FnMut(&Target) -> bool) -> io::Result<Option<Batch>> {
        if max == 0 || self.in_flight.is_some() {
            return Ok(None);
        }
        let pick = self
            .queues
            .iter()
            .enumerate()
            .filter(|(_, q)| q.records() > 0)
            .filter_map(|(i, q)| q.segments.front().map(|s| (s.seq, i)))
            .filter(|(_, i)| ready(&self.queues[*i].target))
            .min();
        let Some((_, qi)) = pick else { return Ok(None) };
        let q = &mut self.queues[qi];
        // Skip segments already replayed whole (their records are 0).
        while q.segments.front().is_some_and(|s| s.records == 0 && s.read >= s.size) {
            if let Some(s) = q.segments.pop_front() {
                let _ = fs::remove_file(&s.path);
            }
        }
        let Some(seg) = q.segments.front_mut() else { return Ok(None) };
        let file = File::open(&seg.path)?;
        let want = ((seg.size - seg.read) as usize).min(READ_CHUNK);
        let mut buf = vec![0u8; want];
        let mut n = file.read_at(&mut buf, seg.read)?;
        if n >= FRAME_HEAD && &buf[..4] == MAGIC {
            let need = FRAME_HEAD + u32_at(&buf, 4) as usize;
            if need > n && need <= MAX_FRAME + FRAME_HEAD && seg.read + need as u64 <= seg.size {
                buf.resize(need, 0);
                n = file.read_at(&mut buf, seg.read)?;
            }
        }
        buf.truncate(n);
        let mut entries = Vec::new();
        let mut at = 0;
        let mut skipped = 0;
        while entries.len() < max && at < buf.len() {
            match frame_at(&buf, at) {
                Frame::Whole { body, next } => {
                    entries.push(entry_of(&buf[body]));
                    at = next;
                }
                Frame::Cut if seg.read + (buf.len() as u64) < seg.size => break,
                Frame::Cut | Frame::Bad => {
                    // Damaged after startup: skip it.
                    skipped += 1;
                    at = resync(&buf, at);
                }
            }
        }
        let end = seg.read + at as u64;
        let (seq, read) = (seg.seq, seg.read);
        let (target, id) = (q.target.clone(), q.id);
        q.write_cursor(seq, read, end)?;
        self.in_flight = Some((id, seq));
        Ok(Some(Batch { target, entries, skipped, queue: id, seq, end }))
    }

    /// The batch was handed over: its records leave the spool.
    pub fn commit(&mut self, batch: &Batch) -> io::Result<()> {
        self.in_flight = None;
        let Some(q) = self.queues.iter_mut().find(|q| q.id == batch.queue) else { return Ok(()) };
        let several = q.segments.len() > 1;
        let Some(seg) = q.segments.front_mut().filter(|s| s.seq == batch.seq) else { return Ok(()) };
        let n = (batch.entries.len() as u64).min(seg.records);
        seg.records -= n;
        seg.read = batch.end;
        self.records -= n;
        let (seq, end) = (seg.seq, seg.read);
        let finished = seg.read >= seg.size && (seg.file.is_none() || several);
        if finished {
            let size = seg.size;
            if let Some(s) = q.segments.pop_front() {
                fs::remove_file(&s.path)?;
            }
            self.bytes -= size;
            let next = q.segments.front().map_or(seq + 1, |s| s.seq);
            q.write_cursor(next, 0, 0)?;
        } else {
            q.write_cursor(seq, end, end)?;
        }
        if q.records() == 0 {
            q.keys.clear();
            if q.segments.len() == 1 && q.segments[0].read >= q.segments[0].size {
                // The active segment is all replayed: start afresh.
                if let Some(s) = q.segments.pop_front() {
                    fs::remove_file(&s.path)?;
                    self.bytes -= s.size;
                }
            }
        }
        Ok(())
    }

    /// The batch was not handed over (or not all of it): it is replayed
    /// again from its start.
    pub fn rewind(&mut self, batch: &Batch) -> io::Result<()> {
        self.in_flight = None;
        let Some(q) = self.queues.iter_mut().find(|q| q.id == batch.queue) else { return Ok(()) };
        let read = q.segments.front().map_or(0, |s| s.read);
        q.write_cursor(batch.seq, read, read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("siptrace-spool-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn target(port: u16) -> Target {
        Target {
            kind: Kind::Hep,
            distribution: Distribution::Shard,
            dests: vec![Destination { addr: ([127, 0, 0, 1], port).into(), transport: Transport::Tcp }],
        }
    }

    fn drain(spool: &mut Spool) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(b) = spool.take(7, |_| true).unwrap() {
            out.extend(b.entries.iter().map(|e| e.data.clone()));
            spool.commit(&b).unwrap();
        }
        out
    }

    #[test]
    fn crc_is_zlibs() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn records_come_back_in_order_once_and_the_files_go() {
        let root = dir("order");
        let (mut spool, found) = Spool::open(&root, 0, 1, 1 << 20).unwrap();
        assert_eq!(found, Found::default());
        let mut scratch = Vec::new();
        for i in 0..100u32 {
            spool.append(&target(1), i as u64 % 7, i as u64, &i.to_le_bytes(), &mut scratch).unwrap();
        }
        assert!(spool.holds_call(target(1).id(), 3));
        assert!(!spool.holds_call(target(2).id(), 3));
        assert_eq!(spool.records(), 100);
        let got = drain(&mut spool);
        let want: Vec<Vec<u8>> = (0..100u32).map(|i| i.to_le_bytes().to_vec()).collect();
        assert_eq!(got, want);
        assert_eq!((spool.records(), spool.bytes()), (0, 0));
        assert!(!spool.holds_call(target(1).id(), 3));
        let segs = fs::read_dir(root.join("s0").join(format!("q-{:016x}", target(1).id())))
            .unwrap()
            .flatten()
            .filter(|e| seq_of(&e.path()).is_some())
            .count();
        assert_eq!(segs, 0);
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn a_reopened_spool_goes_on_where_replay_stopped_and_repeats_the_batch_in_flight() {
        let root = dir("reopen");
        let mut scratch = Vec::new();
        {
            let (mut spool, _) = Spool::open(&root, 0, 1, 1 << 20).unwrap();
            for i in 0..50u32 {
                spool.append(&target(1), 1, 0, &i.to_le_bytes(), &mut scratch).unwrap();
            }
            let b = spool.take(10, |_| true).unwrap().unwrap();
            spool.commit(&b).unwrap();
            // The process dies with this batch in flight.
            let b = spool.take(10, |_| true).unwrap().unwrap();
            assert_eq!(b.entries[0].data, 10u32.to_le_bytes());
        }
        let (mut spool, found) = Spool::open(&root, 0, 1, 1 << 20).unwrap();
        assert_eq!((found.records, found.repeated, found.corrupt), (40, 10, 0));
        let got = drain(&mut spool);
        assert_eq!(got.len(), 40);
        assert_eq!(got[0], 10u32.to_le_bytes());
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn torn_and_random_segments_are_skipped_and_counted() {
        let root = dir("bad");
        let mut scratch = Vec::new();
        let qdir;
        {
            let (mut spool, _) = Spool::open(&root, 0, 1, 1 << 20).unwrap();
            for i in 0..20u32 {
                spool.append(&target(1), 1, 0, &[i as u8; 100], &mut scratch).unwrap();
            }
            qdir = root.join("s0").join(format!("q-{:016x}", target(1).id()));
        }
        let seg =
            fs::read_dir(&qdir).unwrap().flatten().find(|e| seq_of(&e.path()).is_some()).unwrap().path();
        // Tear the last record, damage one in the middle.
        let mut bytes = fs::read(&seg).unwrap();
        bytes.truncate(bytes.len() - 30);
        bytes[FRAME_HEAD + 5 + 3 * 140] ^= 0xff;
        fs::write(&seg, &bytes).unwrap();
        let noise: Vec<u8> = (0..5000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        fs::write(qdir.join(format!("{:016x}.seg", 0xffffu64)), noise).unwrap();
        let (mut spool, found) = Spool::open(&root, 0, 1, 1 << 20).unwrap();
        assert_eq!((found.records, found.corrupt), (18, 3), "{found:?}");
        let got = drain(&mut spool);
        assert_eq!(got.len(), 18);
        assert!(got.iter().all(|g| g.len() == 100));
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn a_full_spool_drops_its_oldest_segment_and_counts_exactly() {
        let root = dir("full");
        let (mut spool, _) = Spool::open(&root, 0, 1, 64 << 10).unwrap();
        let mut scratch = Vec::new();
        let mut appended = 0u64;
        for i in 0..2000u32 {
            spool.append(&target(1), 1, 0, &[i as u8; 200], &mut scratch).unwrap();
            appended += 1;
            assert!(spool.bytes() <= 64 << 10);
        }
        let dropped = spool.take_dropped_full();
        assert!(dropped > 0);
        assert_eq!(appended, dropped + spool.records());
        let got = drain(&mut spool);
        assert_eq!(got.len() as u64, appended - dropped);
        assert_eq!(got.last().unwrap(), &vec![(1999u32 % 256) as u8; 200]);
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn queues_replay_only_when_ready_and_a_rewound_batch_comes_again() {
        let root = dir("ready");
        let (mut spool, _) = Spool::open(&root, 0, 1, 1 << 20).unwrap();
        let mut scratch = Vec::new();
        spool.append(&target(1), 1, 0, b"one", &mut scratch).unwrap();
        spool.append(&target(2), 1, 0, b"two", &mut scratch).unwrap();
        let b = spool.take(10, |t| t.dests[0].addr.port() == 2).unwrap().unwrap();
        assert_eq!(b.entries[0].data, b"two");
        spool.rewind(&b).unwrap();
        let b = spool.take(10, |t| t.dests[0].addr.port() == 2).unwrap().unwrap();
        assert_eq!(b.entries[0].data, b"two");
        spool.commit(&b).unwrap();
        assert!(spool.take(10, |t| t.dests[0].addr.port() == 2).unwrap().is_none());
        assert_eq!(drain(&mut spool), vec![b"one".to_vec()]);
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn an_unwritable_dir_is_refused_by_name() {
        let e = check_dir(Path::new("/proc/no-such/spool")).unwrap_err();
        assert!(e.contains("/proc/no-such/spool"), "{e}");
    }
}
