//! The sender process OpenSIPS forks for the module (its `procs` export):
//! it drains the queue with the core's sender, as on Kamailio.

use crate::core::counters::{Counters, DropReason};
use crate::core::dest::Destination;
use crate::core::record::Row;
use crate::core::sender::{Sender, SenderHost, SenderSettings};
use crate::opensips::db::Connection;
use crate::opensips::dynamic::Target;
use crate::opensips::module::{self, Module};
use crate::opensips::sinks::{self, Sink};
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
    module: &'static Module,
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
        let module = self.module;
        let id = std::str::from_utf8(row.table).ok().and_then(|k| k.parse::<usize>().ok());
        let entry =
            id.and_then(|id| id.checked_sub(module.ids.len())).and_then(|slot| module.dynamic.get(slot));
        match entry.map(|e| (e, e.target)) {
            Some((e, Target::File)) => {
                sinks::append_file(e.path(), module.defaults.file_mode, row, &mut self.text)
            }
            Some((_, Target::Syslog { facility, level })) => {
                sinks::write_syslog(facility, level, row, &mut self.text)
            }
            _ => Err((DropReason::NoDestination, "its trace id was stopped".to_string())),
        }
    }

    /// Hands `row` to destination `sink`.
    fn store(&mut self, sink: usize, row: &Row<'_>) -> Result<(), (DropReason, String)> {
        match &self.module.sinks.all[sink] {
            Sink::Db { db, table } => {
                let db = *db;
                let Some(connection) = self.database(db) else {
                    return Err((DropReason::DbUnavailable, format!("no connection to database {db}")));
                };
                let result = connection.insert(row, table);
                if matches!(&result, Err((DropReason::DbFailed, _))) {
                    // Reconnect next time: the driver may not recover by itself.
                    self.databases[db].connection = None;
                }
                result
            }
            Sink::File { path, fd } => sinks::write_file(*fd, path, row, &mut self.text),
            Sink::Syslog { facility, level } => sinks::write_syslog(*facility, *level, row, &mut self.text),
        }
    }
}

impl SenderHost for Host {
    /// Every row goes to each destination of its trace id; one that misses
    /// any of them is counted as dropped, with the last reason.
    fn store_rows(&mut self, rows: &[Row<'_>]) -> (usize, Option<(DropReason, String)>) {
        let module = self.module;
        let mut stored = 0;
        let mut error = None;
        for row in rows {
            let destinations = module.sinks.of_key(row.table);
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
        if let Some(line) = self.module.shared.drop_line(reason, detail) {
            crate::log_warn!("{line}");
        }
    }

    fn connection(&self, dest: Destination, up: bool, detail: &dyn Display) {
        supervise::log_connection(dest, up, detail);
    }
}

/// The body of sender process `index`, which OpenSIPS forks: it
/// supervises the process that does the sending (see `crate::supervise`).
pub unsafe extern "C" fn run(index: libc::c_int) {
    crate::ffi::guard::guard("the sender", (), || {
        let Some(module) = module::get() else { return };
        let supervision = Supervision {
            name: format!("sender {index}"),
            drain_time: DRAIN_TIME,
            tick: &|| {},
            restarted: &|| Counters::add(&module.shared.counters.sender_restarts),
        };
        supervise::run(supervision, &|| work(module, index))
    })
}

/// The sending process: drains queue `index` until asked to stop.
fn work(module: &'static Module, index: libc::c_int) -> ! {
    if let Some(queue) = module.queues.get(index as usize) {
        // Records from OpenSIPS never carry X-Siptrace headers.
        let settings =
            SenderSettings { xheaders_write: false, ..SenderSettings::from_settings(&module.settings) };
        let databases = module
            .sinks
            .databases
            .iter()
            .map(|_| Database { connection: None, next_attempt: Instant::now() });
        let mut host = Host { module, databases: databases.collect(), text: Vec::new() };
        let mut sender = Sender::new(settings, &module.shared.counters);
        let name = format!("sender {index}");
        supervise::send(&name, &mut sender, queue, &mut host, DRAIN_TIME, &|| {});
    }
    // SAFETY: leaving the process; OpenSIPS's exit path is the main process's.
    unsafe { libc::_exit(0) }
}
