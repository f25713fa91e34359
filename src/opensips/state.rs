//! The state mod_init settles before OpenSIPS forks, read by every entry
//! point afterwards: the trace ids and where they send, the queues and
//! the shared block, the row destinations, and the table of MI's dynamic
//! trace ids. It imports nothing else of the binding: an entry point gets
//! it once (`get`) and passes it down.

pub mod dynamic;

use crate::core::counters::DropReason;
use crate::core::dest::Destination;
use crate::core::endpoint::Endpoint;
use crate::core::record::Outputs;
use crate::core::ring::Ring;
use crate::core::settings::Settings;
use crate::core::shared::Shared;
use std::borrow::Cow;
use std::fs::File;
use std::os::raw::c_int;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

pub struct State {
    /// Each trace id name with where its traces go.
    pub ids: Vec<(String, Outputs)>,
    pub queues: Vec<Ring>,
    pub shared: &'static Shared,
    pub settings: Settings,
    /// proto_hep's `homer5_delim` when its `homer5_on` is set: records of
    /// the trace API then join their payload parts with it.
    pub homer5_delimiter: Option<Vec<u8>>,
    /// The hep_ids resolved at startup, by proto_hep's key of them.
    pub hep_ids: Vec<(usize, Destination)>,
    /// Each trace id's switch (MI `trace id=... mode=...`), in shared memory.
    pub switches: &'static [AtomicBool],
    /// What MI `trace` lists: each destination of each trace id.
    pub listing: Vec<Listing>,
    /// The trace ids MI `trace_start` adds; trace id `ids.len() + n` is
    /// slot `n` of it.
    pub dynamic: &'static dynamic::Table,
    /// `trace_local_ip`: stands for this server's end of what it sends
    /// and of the replies its transactions receive.
    pub local_ip: Option<Endpoint>,
    /// The rows' destinations: tables, files and syslog.
    pub sinks: Sinks,
    /// What `file:` and `syslog` destinations take when they do not say.
    pub defaults: Defaults,
}

static STATE: OnceLock<State> = OnceLock::new();

/// The state, once mod_init has settled it.
pub fn get() -> Option<&'static State> {
    STATE.get()
}

/// From mod_init, once.
pub fn settle(state: State) -> Result<(), String> {
    STATE.set(state).map_err(|_| "initialized twice".to_string())
}

impl State {
    /// The index of the trace id called `name`.
    pub fn id_index(&self, name: &str) -> Option<usize> {
        self.ids.iter().position(|(n, _)| n == name)
    }

    /// Whether tracing to trace id `id` is on: globally and for it.
    pub fn id_on(&self, id: usize) -> bool {
        if !self.shared.trace_on.load(Ordering::Relaxed) {
            return false;
        }
        match self.switches.get(id) {
            Some(switch) => switch.load(Ordering::Relaxed),
            None => self.dynamic.get(id - self.ids.len()).is_some(),
        }
    }

    /// Counts a trace dropped for `reason`, and logs it when a line is due.
    pub fn report(&self, reason: DropReason, detail: &str) {
        if let Some(line) = self.shared.count_drop(reason, 1, &detail) {
            crate::log_warn!("{line}");
        }
    }

    /// Where trace id `id` sends: a static one's outputs, or a dynamic
    /// one's while it is started.
    pub fn outputs(&self, id: usize) -> Option<Cow<'_, Outputs>> {
        match self.ids.get(id) {
            Some((_, outputs)) => Some(Cow::Borrowed(outputs)),
            None => self.dynamic.get(id - self.ids.len()).map(|e| Cow::Owned(e.outputs(id))),
        }
    }
}

/// One destination of a trace id, as MI shows it.
pub struct Listing {
    pub id: usize,
    /// "HEP", "SIP" or "Database"; empty for a file or syslog, which MI
    /// lists without a type or uri.
    pub kind: &'static str,
    pub uri: String,
}

/// A row destination.
pub enum Sink {
    /// A table of database `db` (an index into `Sinks::databases`).
    Db { db: usize, table: String },
    /// A file opened at startup, before OpenSIPS forks.
    File { path: String, file: Arc<File> },
    /// OpenSIPS's log, with a syslog facility and an OpenSIPS log level.
    Syslog { facility: c_int, level: c_int },
}

/// The defaults `file:` and `syslog` destinations take.
#[derive(Debug, Clone, Copy)]
pub struct Defaults {
    pub file_mode: u32,
    pub syslog_facility: c_int,
    pub syslog_level: c_int,
}

/// The row destinations of the trace ids: every SIP record traced to a
/// trace id becomes one row, which the sender process hands to each of
/// its destinations. The queued record names its trace id in the row's
/// table field (`key`).
#[derive(Default)]
pub struct Sinks {
    pub all: Vec<Sink>,
    /// The destinations of each trace id, by the id's index.
    of_id: Vec<Vec<usize>>,
    /// Each database URL with its tables, in the order the drivers are bound.
    pub databases: Vec<(String, Vec<String>)>,
}

impl Sinks {
    /// Adds `sink` to trace id `id`.
    pub fn push(&mut self, id: usize, sink: Sink) {
        if self.of_id.len() <= id {
            self.of_id.resize(id + 1, Vec::new());
        }
        self.all.push(sink);
        self.of_id[id].push(self.all.len() - 1);
    }

    /// The index of database `url`, which gets `table` too.
    pub fn database(&mut self, url: &str, table: &str) -> usize {
        let db = match self.databases.iter().position(|(u, _)| u == url) {
            Some(db) => db,
            None => {
                self.databases.push((url.to_string(), Vec::new()));
                self.databases.len() - 1
            }
        };
        if !self.databases[db].1.iter().any(|t| t == table) {
            self.databases[db].1.push(table.to_string());
        }
        db
    }

    /// The row table field that names trace id `id` in a queued record.
    pub fn key(id: usize) -> Box<[u8]> {
        id.to_string().into_bytes().into()
    }

    /// The destinations of the trace id a row's table field names.
    pub fn of_key(&self, key: &[u8]) -> &[usize] {
        let id = std::str::from_utf8(key).ok().and_then(|k| k.parse::<usize>().ok());
        id.and_then(|id| self.of_id.get(id)).map_or(&[], Vec::as_slice)
    }
}
