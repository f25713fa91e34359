//! The sender process OpenSIPS forks for the module (its `procs` export):
//! it drains the queue with the core's sender, as on Kamailio.

use crate::core::counters::{Counters, DropReason};
use crate::core::dest::Destination;
use crate::core::record::Row;
use crate::core::sender::{Sender, SenderHost, SenderSettings};
use crate::opensips::db;
use crate::opensips::host::db::Connection;
use crate::opensips::host::process::{self, Process};
use crate::opensips::sinks;
use crate::opensips::state::dynamic::Target;
use crate::opensips::state::{self, Sink, State};
use crate::supervise::{self, Supervision};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use std::fmt::Display;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a stopping sender may take to deliver what is queued.
const DRAIN_TIME: Duration = Duration::from_secs(3);

/// How often a sender without a database connection tries again.
const DB_RETRY: Duration = Duration::from_secs(5);

struct Host {
    state: &'static State,
    /// A connection to each database, opened on first use.
    databases: Vec<Database>,
    /// Where a row's text is made, for files and syslog.
    text: Vec<u8>,
}

struct Database {
    connection: Option<Connection>,
    next_attempt: Instant,
}

impl Host {
    /// The connection to database `index`, opened on first use and after
    /// a failure, at most once per DB_RETRY.
    fn database(&mut self, index: usize) -> Option<&Connection> {
        let db = self.databases.get_mut(index)?;
        if db.connection.is_none() && Instant::now() >= db.next_attempt {
            db.next_attempt = Instant::now() + DB_RETRY;
            db.connection = Connection::open(index);
            match &db.connection {
                Some(_) => crate::log_info!("database connection {index} open"),
                None => crate::log_warn!("no connection to database {index}; retrying in {DB_RETRY:?}"),
            }
        }
        db.connection.as_ref()
    }

    /// Hands `row` to the file or syslog of the dynamic trace id its table
    /// field names.
    fn store_dynamic(&mut self, row: &Row<'_>) -> Result<(), (DropReason, String)> {
        let state = self.state;
        let id = std::str::from_utf8(row.table).ok().and_then(|k| k.parse::<usize>().ok());
        let entry =
            id.and_then(|id| id.checked_sub(state.ids.len())).and_then(|slot| state.dynamic.get(slot));
        match entry.map(|e| (e, e.target)) {
            Some((e, Target::File)) => {
                sinks::append_file(e.path(), state.defaults.file_mode, row, &mut self.text)
            }
            Some((_, Target::Syslog { facility, level })) => {
                sinks::write_syslog(facility, level, row, &mut self.text)
            }
            _ => Err((DropReason::NoDestination, "its trace id was stopped".to_string())),
        }
    }

    /// Hands `row` to destination `sink`.
    fn store(&mut self, sink: usize, row: &Row<'_>) -> Result<(), (DropReason, String)> {
        match &self.state.sinks.all[sink] {
            Sink::Db { db, table } => {
                let db = *db;
                let Some(connection) = self.database(db) else {
                    return Err((DropReason::DbUnavailable, format!("no connection to database {db}")));
                };
                let result = db::insert(connection, row, table);
                if matches!(&result, Err((DropReason::DbFailed, _))) {
                    // Reconnect next time: the driver may not recover by itself.
                    self.databases[db].connection = None;
                }
                result
            }
            Sink::File { path, file } => sinks::write_file(file, path, row, &mut self.text),
            Sink::Syslog { facility, level } => sinks::write_syslog(*facility, *level, row, &mut self.text),
        }
    }
}

impl SenderHost for Host {
    /// Every row goes to each destination of its trace id; one that misses
    /// any of them is counted as dropped, with the last reason.
    fn store_rows(&mut self, rows: &[Row<'_>]) -> (usize, Option<(DropReason, String)>) {
        let state = self.state;
        let mut stored = 0;
        let mut error = None;
        for row in rows {
            let destinations = state.sinks.of_key(row.table);
            if destinations.is_empty() {
                // A dynamic trace id's, if MI has not stopped it meanwhile.
                match self.store_dynamic(row) {
                    Ok(()) => stored += 1,
                    Err(e) => error = Some(e),
                }
                continue;
            }
            let mut all = true;
            for &sink in destinations {
                if let Err(e) = self.store(sink, row) {
                    all = false;
                    error = Some(e);
                }
            }
            stored += usize::from(all);
        }
        (stored, error)
    }

    fn tls_for(&self, dest: Destination) -> Option<(Arc<ClientConfig>, ServerName<'static>)> {
        // Called once per new connection to a collector: no need to keep it.
        match crate::opensips::tls::settings_for(dest) {
            Ok(settings) => Some(settings),
            Err(e) => {
                crate::log_error!("TLS to {}: {e}", dest.addr);
                None
            }
        }
    }

    fn dropped(&self, reason: DropReason, _count: u64, detail: &dyn Display) {
        if let Some(line) = self.state.shared.drop_line(reason, detail) {
            crate::log_warn!("{line}");
        }
    }

    fn connection(&self, dest: Destination, up: bool, detail: &dyn Display) {
        supervise::log_connection(dest, up, detail);
    }

    fn spool_note(&self, warn: bool, detail: &dyn Display) {
        supervise::log_spool_note(warn, detail);
    }
}

/// The sender processes OpenSIPS forks for the module (its `procs` export).
pub struct Senders;

impl Process for Senders {
    const NAME: &'static std::ffi::CStr = c"siptrace sender";

    /// Supervises the process that does the sending (see `crate::supervise`).
    fn run(index: i32) {
        let Some(state) = state::get() else { return };
        let supervision = Supervision {
            name: format!("sender {index}"),
            drain_time: DRAIN_TIME,
            tick: &|| {},
            restarted: &|| Counters::add(&state.shared.counters.sender_restarts),
        };
        supervise::run(supervision, &|| work(state, index))
    }
}

/// The sending process: drains queue `index` until asked to stop.
fn work(state: &'static State, index: i32) -> ! {
    let slot = usize::try_from(index).ok();
    if let Some((slot, queue)) = slot.and_then(|i| Some((i, state.queues.get(i)?))) {
        // Records from OpenSIPS never carry X-Siptrace headers. Its rows go
        // to every destination of their trace id, one by one: they cannot
        // wait in the spool (see SenderSettings::spool_rows).
        let settings = SenderSettings {
            xheaders_write: false,
            spool_rows: false,
            ..SenderSettings::from_settings(&state.settings)
        };
        let databases =
            state.sinks.databases.iter().map(|_| Database { connection: None, next_attempt: Instant::now() });
        let mut host = Host { state, databases: databases.collect(), text: Vec::new() };
        let mut sender = Sender::new(settings, &state.shared.counters);
        let name = format!("sender {index}");
        let spool_dir = state.settings.delivery.spool_dir.as_deref();
        let count = state.queues.len();
        supervise::open_spool(&name, &mut sender, spool_dir, slot, count);
        supervise::send(&name, &mut sender, queue, &mut host, DRAIN_TIME, &|| {});
    }
    process::exit(0)
}
