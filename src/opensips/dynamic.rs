//! Dynamic trace ids, started and stopped with MI `trace_start` and
//! `trace_stop`: a destination (hep:, sip:, file: or syslog), a scope,
//! record types, and
//! filters on the caller, the callee or the source IP. Every request that
//! matches them is traced from the start of its processing, as OpenSIPS's
//! tracer does. They live in a fixed table in shared memory.

use crate::core::dest::{DestUri, Destination};
use crate::core::record::Outputs;
use crate::core::shmlock::ProcessMutex;
use crate::opensips::module::Module;
use crate::opensips::sys;
use std::sync::atomic::{AtomicU32, Ordering};

pub const SLOTS: usize = 16;
const NAME: usize = 64;
const URI: usize = 128;
const FILTERS: usize = 4;
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

/// One dynamic trace id, plain data so that every process reads it.
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
                outputs.table = Some(crate::opensips::sinks::Sinks::key(id));
            }
        }
        outputs
    }
}

/// The table: a lock for writers and readers that copy, the number of
/// entries in use (read without the lock, to skip all work when none is),
/// and the slots.
#[repr(C)]
pub struct Table {
    lock: ProcessMutex,
    active: AtomicU32,
    used: [bool; SLOTS],
    entries: [std::mem::MaybeUninit<Entry>; SLOTS],
}

impl Table {
    /// A new, empty table in shared memory.
    pub fn new_in_shm() -> Result<&'static Table, String> {
        // SAFETY: plain allocation from OpenSIPS's shared memory.
        let p = unsafe { sys::siptrace_os_shm_malloc(std::mem::size_of::<Table>()) } as *mut Table;
        if p.is_null() {
            return Err("out of shared memory".into());
        }
        // SAFETY: a fresh block of the right size; each field is written
        // before use (`entries` only where `used` says).
        unsafe {
            ProcessMutex::init_at(std::ptr::addr_of_mut!((*p).lock)).map_err(|e| e.to_string())?;
            std::ptr::addr_of_mut!((*p).active).write(AtomicU32::new(0));
            std::ptr::addr_of_mut!((*p).used).write([false; SLOTS]);
            Ok(&*p)
        }
    }

    pub fn any_active(&self) -> bool {
        self.active.load(Ordering::Acquire) > 0
    }

    fn with<R>(
        &self,
        f: impl FnOnce(&mut [bool; SLOTS], &mut [std::mem::MaybeUninit<Entry>; SLOTS]) -> R,
    ) -> Option<R> {
        let _guard = self.lock.lock_timeout(std::time::Duration::from_millis(100))?;
        // SAFETY: the lock is held; the arrays are only touched under it.
        let (used, entries) = unsafe {
            let p = self as *const Table as *mut Table;
            (&mut (*p).used, &mut (*p).entries)
        };
        Some(f(used, entries))
    }

    /// A copy of the entries in use, with their slots.
    pub fn snapshot(&self) -> Vec<(usize, Entry)> {
        self.with(|used, entries| {
            // SAFETY: a slot in use holds an initialized entry.
            (0..SLOTS).filter(|&i| used[i]).map(|i| (i, unsafe { entries[i].assume_init() })).collect()
        })
        .unwrap_or_default()
    }

    /// The entry of `slot`, when in use.
    pub fn get(&self, slot: usize) -> Option<Entry> {
        self.with(|used, entries| {
            // SAFETY: as above.
            used.get(slot).copied().unwrap_or(false).then(|| unsafe { entries[slot].assume_init() })
        })
        .flatten()
    }

    pub fn start(&self, entry: Entry) -> Result<(), String> {
        self.with(|used, entries| {
            if (0..SLOTS).any(|i| used[i] && unsafe { entries[i].assume_init_ref() }.name() == entry.name()) {
                return Err("dynamic trace id already used".to_string());
            }
            let slot = (0..SLOTS).find(|&i| !used[i]).ok_or("all dynamic trace ids are in use")?;
            entries[slot].write(entry);
            used[slot] = true;
            self.active.fetch_add(1, Ordering::AcqRel);
            Ok(())
        })
        .unwrap_or_else(|| Err("the table of dynamic trace ids stayed locked".into()))
    }

    /// Stops every entry called `name`; whether there was one.
    pub fn stop(&self, name: &str) -> bool {
        self.with(|used, entries| {
            let mut found = false;
            for i in 0..SLOTS {
                // SAFETY: as above.
                if used[i] && unsafe { entries[i].assume_init_ref() }.name() == name {
                    used[i] = false;
                    self.active.fetch_sub(1, Ordering::AcqRel);
                    found = true;
                }
            }
            found
        })
        .unwrap_or(false)
    }
}

/// Builds an entry from MI `trace_start`'s parameters.
pub fn entry(
    module: &Module,
    name: &str,
    uri: &str,
    scope: usize,
    types: u32,
    filters: &[String],
) -> Result<Entry, (u16, &'static str, String)> {
    let bad = |details: String| (500, "Bad parameter value", details);
    if name.is_empty() || name.len() > NAME || uri.len() > URI {
        return Err(bad(format!("the id must be 1 to {NAME} bytes and the uri at most {URI}")));
    }
    let scheme = |s: &str| crate::core::trace_id::has_scheme(uri, s);
    let nowhere =
        Destination { addr: ([0, 0, 0, 0], 0).into(), transport: crate::core::endpoint::Transport::Udp };
    let mut path = "";
    let (dest, target) = if scheme("hep:") {
        (module.new_hep_destination(name, &uri[4..]).map_err(bad)?, Target::Hep)
    } else if scheme("sip:") {
        let dest = DestUri::parse_supported(uri).and_then(|d| d.resolve()).map_err(|e| bad(e.to_string()))?;
        (dest, Target::Sip)
    } else if scheme("file:") {
        // Made now if need be, so that a path that cannot be written is
        // refused here rather than costing every trace.
        path = uri[5..].trim();
        crate::opensips::sinks::check_file(path, module.defaults.file_mode).map_err(bad)?;
        (nowhere, Target::File)
    } else if scheme("syslog") {
        let spec = crate::core::trace_text::parse_syslog(uri).map_err(|e| bad(format!("'{uri}': {e}")))?;
        let facility = spec.facility.unwrap_or(module.defaults.syslog_facility);
        let level = spec.level.unwrap_or(module.defaults.syslog_level);
        (nowhere, Target::Syslog { facility, level })
    } else if uri.contains("://") {
        return Err((406, "DB not acceptable", "dynamic DB tracing is not yet available".into()));
    } else {
        return Err(bad(format!("'{uri}' is neither hep:, sip:, file: nor syslog")));
    };
    if filters.len() > FILTERS {
        return Err(bad(format!("at most {FILTERS} filters")));
    }
    let mut parsed = [Filter { kind: FilterKind::Ip, len: 0, text: [0; MATCH] }; FILTERS];
    for (slot, text) in parsed.iter_mut().zip(filters) {
        *slot = Filter::parse(text).map_err(bad)?;
    }
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
        filters: parsed,
    };
    e.name[..name.len()].copy_from_slice(name.as_bytes());
    e.path[..path.len()].copy_from_slice(path.as_bytes());
    Ok(e)
}
