//! The dynamic trace ids, which MI `trace_start` and `trace_stop` start
//! and stop: a destination (hep:, sip:, file: or syslog), a scope, record
//! types, and filters on the caller, the callee or the source IP. They
//! live in a fixed table in shared memory, plain data, so that every
//! process reads them.

use crate::core::dest::Destination;
use crate::core::record::Outputs;
use crate::core::shmlock::ProcessMutex;
use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU32, Ordering};

pub const SLOTS: usize = 16;
/// The longest name.
pub const NAME: usize = 64;
/// The longest uri.
pub const URI: usize = 128;
/// The most filters of one id.
pub const FILTERS: usize = 4;
const MATCH: usize = 128;

/// What a filter compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FilterKind {
    /// The From URI's user, or user@host.
    Caller = 1,
    /// The request URI's user, or user@host.
    Callee = 2,
    /// The source IP.
    Ip = 3,
}

#[derive(Clone, Copy)]
#[repr(C)]
pub struct Filter {
    pub kind: FilterKind,
    len: u8,
    text: [u8; MATCH],
}

impl Filter {
    pub fn text(&self) -> &[u8] {
        &self.text[..self.len as usize]
    }

    /// `caller=user[@host]`, `callee=user[@host]` or `ip=address`.
    pub fn parse(text: &str) -> Result<Filter, String> {
        let (kind, value) = text.split_once('=').ok_or_else(|| format!("filter '{text}' has no '='"))?;
        let kind = match kind.trim() {
            "caller" => FilterKind::Caller,
            "callee" => FilterKind::Callee,
            "ip" => FilterKind::Ip,
            other => return Err(format!("unknown filter '{other}' (caller, callee and ip are known)")),
        };
        let value = value.trim();
        if kind == FilterKind::Ip && value.parse::<std::net::IpAddr>().is_err() {
            return Err(format!("'{value}' is not an IP address"));
        }
        if value.is_empty() || value.len() > MATCH {
            return Err(format!("filter value '{value}' is empty or longer than {MATCH} bytes"));
        }
        let mut text = [0; MATCH];
        text[..value.len()].copy_from_slice(value.as_bytes());
        Ok(Filter { kind, len: value.len() as u8, text })
    }
}

/// Where a dynamic trace id sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub enum Target {
    /// HEP packets to the entry's `dest`.
    Hep,
    /// SIP copies to the entry's `dest`.
    Sip,
    /// The tracer's text form, appended to the file the entry's `path` names.
    File,
    /// The tracer's text form, through OpenSIPS's log.
    Syslog { facility: i32, level: i32 },
}

/// One dynamic trace id.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Entry {
    /// For `Hep` and `Sip`.
    pub dest: Destination,
    pub target: Target,
    path_len: u8,
    path: [u8; URI],
    pub scope: usize,
    pub types: u32,
    name_len: u8,
    name: [u8; NAME],
    filter_count: u8,
    filters: [Filter; FILTERS],
}

impl Entry {
    /// An entry; `name` and `path` must be at most NAME and URI bytes, and
    /// at most FILTERS `filters`.
    pub fn new(
        name: &str,
        dest: Destination,
        target: Target,
        path: &str,
        scope: usize,
        types: u32,
        filters: &[Filter],
    ) -> Entry {
        let none = Filter { kind: FilterKind::Ip, len: 0, text: [0; MATCH] };
        let mut e = Entry {
            dest,
            target,
            path_len: path.len() as u8,
            path: [0; URI],
            scope,
            types,
            name_len: name.len() as u8,
            name: [0; NAME],
            filter_count: filters.len() as u8,
            filters: [none; FILTERS],
        };
        e.name[..name.len()].copy_from_slice(name.as_bytes());
        e.path[..path.len()].copy_from_slice(path.as_bytes());
        e.filters[..filters.len()].copy_from_slice(filters);
        e
    }

    pub fn name(&self) -> &str {
        std::str::from_utf8(&self.name[..self.name_len as usize]).unwrap_or_default()
    }

    pub fn filters(&self) -> &[Filter] {
        &self.filters[..self.filter_count as usize]
    }

    /// The path of a `File` entry.
    pub fn path(&self) -> &str {
        std::str::from_utf8(&self.path[..self.path_len as usize]).unwrap_or_default()
    }

    /// Where trace id `id`, this entry, sends; rows name the id, and the
    /// sender finds the entry again by it.
    pub fn outputs(&self, id: usize) -> Outputs {
        let mut outputs = Outputs::default();
        match self.target {
            Target::Hep => outputs.hep.push(self.dest),
            Target::Sip => outputs.duplicate.push(self.dest),
            Target::File | Target::Syslog { .. } => {
                outputs.db = true;
                outputs.table = Some(super::Sinks::key(id));
            }
        }
        outputs
    }
}

/// The table: a lock for writers and for readers that copy, the number
/// of entries in use (read without the lock, to skip all work when none
/// is), and the slots, touched only under the lock.
#[repr(C)]
pub struct Table {
    lock: ProcessMutex,
    active: AtomicU32,
    slots: UnsafeCell<[Option<Entry>; SLOTS]>,
}

// SAFETY: the slots are only read or written with the process-shared lock
// held (`with`); the rest is a lock and an atomic.
unsafe impl Sync for Table {}

impl Table {
    /// A new, empty table at `place`, in memory every process shares.
    pub fn init(place: &'static mut MaybeUninit<Table>) -> Result<&'static Table, String> {
        let p = place.as_mut_ptr();
        // SAFETY: `place` is valid for writes of a `Table` and stays mapped;
        // each field is written before use.
        unsafe {
            ProcessMutex::init_at(std::ptr::addr_of_mut!((*p).lock)).map_err(|e| e.to_string())?;
            std::ptr::addr_of_mut!((*p).active).write(AtomicU32::new(0));
            std::ptr::addr_of_mut!((*p).slots).write(UnsafeCell::new([None; SLOTS]));
        }
        // SAFETY: initialized just above.
        Ok(unsafe { place.assume_init_ref() })
    }

    pub fn any_active(&self) -> bool {
        self.active.load(Ordering::Acquire) > 0
    }

    fn with<R>(&self, f: impl FnOnce(&mut [Option<Entry>; SLOTS]) -> R) -> Option<R> {
        let _guard = self.lock.lock_timeout(std::time::Duration::from_millis(100))?;
        // SAFETY: the lock is held, so no other process or thread is in the slots.
        Some(f(unsafe { &mut *self.slots.get() }))
    }

    /// A copy of the entries in use, with their slots.
    pub fn snapshot(&self) -> Vec<(usize, Entry)> {
        self.with(|slots| slots.iter().enumerate().filter_map(|(i, e)| e.map(|e| (i, e))).collect())
            .unwrap_or_default()
    }

    /// The entry of `slot`, when in use.
    pub fn get(&self, slot: usize) -> Option<Entry> {
        self.with(|slots| slots.get(slot).copied().flatten()).flatten()
    }

    pub fn start(&self, entry: Entry) -> Result<(), String> {
        self.with(|slots| {
            if slots.iter().flatten().any(|e| e.name() == entry.name()) {
                return Err("dynamic trace id already used".to_string());
            }
            let free = slots.iter_mut().find(|e| e.is_none()).ok_or("all dynamic trace ids are in use")?;
            *free = Some(entry);
            self.active.fetch_add(1, Ordering::AcqRel);
            Ok(())
        })
        .unwrap_or_else(|| Err("the table of dynamic trace ids stayed locked".into()))
    }

    /// Stops every entry called `name`; whether there was one.
    pub fn stop(&self, name: &str) -> bool {
        self.with(|slots| {
            let mut found = false;
            for slot in slots.iter_mut().filter(|e| e.is_some_and(|e| e.name() == name)) {
                *slot = None;
                self.active.fetch_sub(1, Ordering::AcqRel);
                found = true;
            }
            found
        })
        .unwrap_or(false)
    }
}
