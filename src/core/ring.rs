//! A bounded queue of variable-size records in memory shared by processes:
//! many producers (the SIP workers), one consumer (a sender process).
//!
//! Producers take a short process-shared lock, write the record in place
//! and publish it by advancing `head`; the consumer reads published records
//! in place and frees their space by advancing `tail`. A producer that dies
//! while writing publishes nothing, and the robust lock recovers, so a
//! killed worker cannot wedge the queue. A full queue refuses the record at
//! once: producers never wait for the consumer.

use crate::core::shmlock::ProcessMutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Space for a record's length prefix; records start 8-byte aligned.
const PREFIX: usize = 8;
const ALIGN: usize = 8;
/// A length prefix that says "continue at the start of the buffer".
const WRAP: u32 = u32::MAX;
/// How long a producer waits for another producer's copy to finish.
const LOCK_WAIT: Duration = Duration::from_millis(20);

#[repr(C)]
struct RingHeader {
    lock: ProcessMutex,
    /// Bytes ever published by producers; written under the lock.
    head: AtomicU64,
    /// Bytes ever released by the consumer.
    tail: AtomicU64,
    capacity: u64,
    /// What the consumer holds and has not finished with, so that a
    /// consumer started after one that died knows what was lost: where
    /// its batch ends (0: no batch in hand), how many records the batch
    /// has, and how many records it keeps back (rows waiting for a batch
    /// write) besides.
    in_hand_end: AtomicU64,
    in_hand_records: AtomicU64,
    held_back: AtomicU64,
}

/// A handle on a ring. It holds addresses only, so it stays valid in every
/// process forked after the ring was created.
#[derive(Clone, Copy, Debug)]
pub struct Ring {
    header: *const RingHeader,
    data: *mut u8,
}

// SAFETY: all shared state is accessed through atomics or under the
// process-shared lock; the consumer side is used by one process only.
unsafe impl Send for Ring {}
// SAFETY: as for Send.
unsafe impl Sync for Ring {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// Not enough free space now.
    Full,
    /// The record can never fit this ring.
    TooBig,
    /// Another producer held the lock too long (or the lock failed).
    Busy,
}

fn round_up(n: usize) -> usize {
    (n + ALIGN - 1) & !(ALIGN - 1)
}

impl Ring {
    /// Bytes of a memory block taken by the ring's own header.
    pub const fn header_size() -> usize {
        (std::mem::size_of::<RingHeader>() + 63) & !63
    }

    /// Creates a ring in `len` bytes at `mem`.
    ///
    /// # Safety
    /// `mem` must be valid for reads and writes of `len` bytes, aligned to
    /// 8, shared by every process that will use the ring, and outlive them.
    pub unsafe fn init(mem: *mut u8, len: usize) -> std::io::Result<Ring> {
        let capacity = (len.saturating_sub(Self::header_size())) & !(ALIGN - 1);
        if capacity < 4 * PREFIX {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "ring too small"));
        }
        let header = mem as *mut RingHeader;
        // SAFETY: per the contract; fields are written before any use.
        unsafe {
            ProcessMutex::init_at(std::ptr::addr_of_mut!((*header).lock))?;
            std::ptr::addr_of_mut!((*header).head).write(AtomicU64::new(0));
            std::ptr::addr_of_mut!((*header).tail).write(AtomicU64::new(0));
            std::ptr::addr_of_mut!((*header).capacity).write(capacity as u64);
            std::ptr::addr_of_mut!((*header).in_hand_end).write(AtomicU64::new(0));
            std::ptr::addr_of_mut!((*header).in_hand_records).write(AtomicU64::new(0));
            std::ptr::addr_of_mut!((*header).held_back).write(AtomicU64::new(0));
            Ok(Ring { header, data: mem.add(Self::header_size()) })
        }
    }

    fn header(&self) -> &RingHeader {
        // SAFETY: set by init to a live header.
        unsafe { &*self.header }
    }

    pub fn capacity(&self) -> u64 {
        self.header().capacity
    }

    /// Bytes published and not yet released.
    pub fn depth(&self) -> u64 {
        let h = self.header();
        h.head.load(Ordering::Acquire).saturating_sub(h.tail.load(Ordering::Acquire))
    }

    /// Appends a record of `len` bytes, written by `fill` in place. `fill`
    /// runs under the producers' lock, so what it does (such as reading the
    /// clock) happens in queue order.
    pub fn push(&self, len: usize, fill: impl FnOnce(&mut [u8])) -> Result<(), PushError> {
        let h = self.header();
        let cap = h.capacity as usize;
        let need = round_up(PREFIX + len);
        if need > cap / 2 || len >= WRAP as usize {
            return Err(PushError::TooBig);
        }
        let _guard = h.lock.lock_timeout(LOCK_WAIT).ok_or(PushError::Busy)?;
        let mut head = h.head.load(Ordering::Relaxed);
        let tail = h.tail.load(Ordering::Acquire);
        let offset = (head % cap as u64) as usize;
        let contiguous = cap - offset;
        let skip = if need > contiguous { contiguous } else { 0 };
        if head + (skip + need) as u64 - tail > cap as u64 {
            return Err(PushError::Full);
        }
        if skip > 0 {
            // SAFETY: `offset` is aligned and at least PREFIX before the end.
            unsafe { self.write_prefix(offset, WRAP) };
            head += skip as u64;
        }
        let start = (head % cap as u64) as usize;
        // SAFETY: [start, start + need) is free: checked against `tail`
        // above, and contiguous by construction.
        let record = unsafe { std::slice::from_raw_parts_mut(self.data.add(start + PREFIX), len) };
        fill(record);
        // SAFETY: `start` is 8-byte aligned and the record's prefix fits
        // before the end, as `need` was reserved at `start`.
        unsafe { self.write_prefix(start, len as u32) };
        h.head.store(head + need as u64, Ordering::Release);
        Ok(())
    }

    /// # Safety
    /// `offset` must be aligned and leave PREFIX bytes before the end.
    unsafe fn write_prefix(&self, offset: usize, value: u32) {
        // SAFETY: per the contract; the data area is ours to write there.
        unsafe { (self.data.add(offset) as *mut u32).write(value) };
    }

    /// The consumer's view of the records published so far. Only one
    /// process may consume a ring.
    pub fn reader(&self) -> Reader<'_> {
        let h = self.header();
        Reader { ring: self, pos: h.tail.load(Ordering::Acquire), end: h.head.load(Ordering::Acquire) }
    }

    /// Frees everything before `pos`, a position a reader returned, and
    /// forgets the batch in hand.
    pub fn release(&self, pos: u64) {
        let h = self.header();
        h.tail.store(pos, Ordering::Release);
        h.in_hand_end.store(0, Ordering::Release);
    }

    /// Notes that the consumer is handling `records` records that end at
    /// `end`, until it calls [`Ring::release`].
    pub fn take_in_hand(&self, end: u64, records: u64) {
        let h = self.header();
        h.in_hand_records.store(records, Ordering::Relaxed);
        h.in_hand_end.store(end, Ordering::Release);
    }

    /// Releases up to `pos` as [`Ring::release`] does, noting first that
    /// the consumer keeps back `held_back` records of what it released.
    pub fn release_keeping(&self, pos: u64, held_back: u64) {
        // In this order, a consumer that dies in between counts its batch
        // twice rather than not at all.
        self.set_held_back(held_back);
        self.release(pos);
    }

    /// Notes how many records the consumer keeps back after releasing them.
    pub fn set_held_back(&self, records: u64) {
        self.header().held_back.store(records, Ordering::Release);
    }

    /// For a consumer that starts after another one died: frees the batch
    /// the dead one had in hand, forgets what it held back, and returns how
    /// many records those were. Records after the batch are still queued.
    pub fn abandon_in_hand(&self) -> u64 {
        let h = self.header();
        let held = h.held_back.swap(0, Ordering::AcqRel);
        let end = h.in_hand_end.load(Ordering::Acquire);
        let batch = if end > h.tail.load(Ordering::Acquire) {
            let n = h.in_hand_records.load(Ordering::Relaxed);
            self.release(end);
            n
        } else {
            0
        };
        held + batch
    }
}

/// Reads published records in order, in place.
pub struct Reader<'a> {
    ring: &'a Ring,
    pos: u64,
    end: u64,
}

impl<'a> Reader<'a> {
    /// The position after the last record returned; pass it to
    /// [`Ring::release`] once those records are handled.
    pub fn position(&self) -> u64 {
        self.pos
    }

    pub fn next_record(&mut self) -> Option<&'a [u8]> {
        let cap = self.ring.capacity();
        while self.pos < self.end {
            let offset = (self.pos % cap) as usize;
            // SAFETY: published data below `end` is complete (Acquire on
            // head) and stays until released.
            let len = unsafe { (self.ring.data.add(offset) as *const u32).read() };
            if len == WRAP {
                self.pos += cap - offset as u64;
                continue;
            }
            let len = len as usize;
            // SAFETY: as above; the producer wrote `len` bytes after the prefix.
            let record = unsafe { std::slice::from_raw_parts(self.ring.data.add(offset + PREFIX), len) };
            self.pos += round_up(PREFIX + len) as u64;
            return Some(record);
        }
        None
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Shared anonymous memory, as a host's shared memory is.
    pub fn shared_memory(len: usize) -> *mut u8 {
        // SAFETY: a fresh mapping, never unmapped in tests.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        p as *mut u8
    }

    fn ring(data_bytes: usize) -> Ring {
        let len = Ring::header_size() + data_bytes;
        // SAFETY: a fresh shared mapping of `len` bytes, kept for the test.
        unsafe { Ring::init(shared_memory(len), len).unwrap() }
    }

    fn push_bytes(r: &Ring, bytes: &[u8]) -> Result<(), PushError> {
        r.push(bytes.len(), |buf| buf.copy_from_slice(bytes))
    }

    fn drain(r: &Ring) -> Vec<Vec<u8>> {
        let mut reader = r.reader();
        let mut out = Vec::new();
        while let Some(rec) = reader.next_record() {
            out.push(rec.to_vec());
        }
        r.release(reader.position());
        out
    }

    #[test]
    fn records_come_out_in_order() {
        let r = ring(1024);
        for i in 0..10u8 {
            push_bytes(&r, &vec![i; i as usize * 3]).unwrap();
        }
        let out = drain(&r);
        assert_eq!(out.len(), 10);
        for (i, rec) in out.iter().enumerate() {
            assert_eq!(rec, &vec![i as u8; i * 3]);
        }
        assert_eq!(r.depth(), 0);
    }

    #[test]
    fn full_ring_refuses_and_frees_after_release() {
        let r = ring(256);
        let mut pushed = 0;
        while push_bytes(&r, &[7; 40]).is_ok() {
            pushed += 1;
        }
        assert_eq!(push_bytes(&r, &[7; 40]), Err(PushError::Full));
        assert_eq!(pushed, 256 / 48);
        assert_eq!(drain(&r).len(), pushed);
        push_bytes(&r, &[8; 40]).unwrap();
        assert_eq!(push_bytes(&r, &[0; 200]), Err(PushError::TooBig));
    }

    #[test]
    fn records_wrap_around_the_end() {
        let r = ring(512);
        // Sizes that do not divide the capacity, over many laps.
        for lap in 0..200u32 {
            let a = vec![(lap % 251) as u8; (lap as usize * 7) % 90 + 1];
            let b = vec![(lap % 13) as u8; (lap as usize * 11) % 120];
            push_bytes(&r, &a).unwrap();
            push_bytes(&r, &b).unwrap();
            assert_eq!(drain(&r), vec![a, b], "lap {lap}");
        }
    }

    #[test]
    fn consumer_sees_only_published_records() {
        let r = ring(1024);
        push_bytes(&r, b"one").unwrap();
        let mut reader = r.reader();
        push_bytes(&r, b"two").unwrap();
        assert_eq!(reader.next_record(), Some(&b"one"[..]));
        assert_eq!(reader.next_record(), None, "published after the reader was made");
        r.release(reader.position());
        assert_eq!(drain(&r), vec![b"two".to_vec()]);
    }

    #[test]
    fn a_new_consumer_frees_what_a_dead_one_had_in_hand() {
        let r = ring(1024);
        for i in 0..5u8 {
            push_bytes(&r, &[i; 10]).unwrap();
        }
        // The first consumer takes three records and dies while sending them,
        // keeping back one record of an earlier batch.
        let mut reader = r.reader();
        for _ in 0..3 {
            reader.next_record().unwrap();
        }
        r.set_held_back(1);
        r.take_in_hand(reader.position(), 3);
        assert_eq!(r.abandon_in_hand(), 4);
        assert_eq!(drain(&r), vec![vec![3; 10], vec![4; 10]], "the rest is still queued");
        assert_eq!(r.abandon_in_hand(), 0, "nothing is counted twice");
    }

    #[test]
    fn a_released_batch_is_not_abandoned() {
        let r = ring(1024);
        push_bytes(&r, b"one").unwrap();
        let mut reader = r.reader();
        reader.next_record().unwrap();
        r.take_in_hand(reader.position(), 1);
        r.release(reader.position());
        push_bytes(&r, b"two").unwrap();
        assert_eq!(r.abandon_in_hand(), 0);
        assert_eq!(drain(&r), vec![b"two".to_vec()]);
    }

    #[test]
    fn many_processes_produce_one_consumes() {
        let r = ring(64 * 1024);
        const PRODUCERS: u32 = 4;
        const EACH: u32 = 2000;
        let mut pids = Vec::new();
        for p in 0..PRODUCERS {
            // SAFETY: the child only pushes to shared memory and exits.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                let mut i = 0;
                while i < EACH {
                    let rec = [p.to_le_bytes(), i.to_le_bytes()].concat();
                    match push_bytes(&r, &rec) {
                        Ok(()) => i += 1,
                        Err(_) => std::thread::yield_now(),
                    }
                }
                // SAFETY: the forked producer is done; leave without unwinding.
                unsafe { libc::_exit(0) };
            }
            pids.push(pid);
        }
        let mut next = [0u32; PRODUCERS as usize];
        let mut total = 0;
        while total < PRODUCERS * EACH {
            for rec in drain(&r) {
                let p = u32::from_le_bytes(rec[..4].try_into().unwrap()) as usize;
                let i = u32::from_le_bytes(rec[4..].try_into().unwrap());
                assert_eq!(i, next[p], "each producer's records stay in order");
                next[p] += 1;
                total += 1;
            }
        }
        for pid in pids {
            // SAFETY: waiting for our own children.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        }
        assert_eq!(r.depth(), 0);
    }
}
