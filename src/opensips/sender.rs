//! The sender process OpenSIPS forks for the module (its `procs` export):
//! it drains the queue with the core's sender, as on Kamailio.

use crate::core::counters::{Counters, DropReason};
use crate::core::dest::Destination;
use crate::core::record::Row;
use crate::core::sender::{Sender, SenderHost, SenderSettings};
use crate::core::shared::Shared;
use crate::opensips::db::Connection;
use crate::opensips::module::{self, Module};
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
    shared: &'static Shared,
    db: Option<Connection>,
    next_db_attempt: Instant,
}

impl Host {
    /// The database connection, opened on first use and after a failure,
    /// at most once per DB_RETRY.
    fn db(&mut self) -> Option<&Connection> {
        if self.db.is_none() && Instant::now() >= self.next_db_attempt {
            self.next_db_attempt = Instant::now() + DB_RETRY;
            self.db = Connection::open();
            match &self.db {
                Some(_) => crate::log_info!("database connection open"),
                None => crate::log_warn!("no database connection; retrying in {DB_RETRY:?}"),
            }
        }
        self.db.as_ref()
    }
}

impl SenderHost for Host {
    fn store_rows(&mut self, rows: &[Row<'_>]) -> (usize, Option<(DropReason, String)>) {
        let Some(db) = self.db() else {
            return (0, Some((DropReason::DbUnavailable, "no database connection".into())));
        };
        let (stored, error) = db.insert(rows);
        if stored == 0 && error.as_ref().is_some_and(|(r, _)| *r == DropReason::DbFailed) {
            // Reconnect next time: the driver may not recover by itself.
            self.db = None;
        }
        (stored, error)
    }

    fn tls_for(&self, _dest: Destination) -> Option<(Arc<ClientConfig>, ServerName<'static>)> {
        None
    }

    fn dropped(&self, reason: DropReason, _count: u64, detail: &dyn Display) {
        if let Some(line) = self.shared.drop_line(reason, detail) {
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
    crate::guard::guard("the sender", (), || {
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
            SenderSettings { xheaders_write: false, ..SenderSettings::from_config(&module.config) };
        let mut host = Host { shared: module.shared, db: None, next_db_attempt: Instant::now() };
        let mut sender = Sender::new(settings, &module.shared.counters);
        let name = format!("sender {index}");
        supervise::send(&name, &mut sender, queue, &mut host, DRAIN_TIME, &|| {});
    }
    // SAFETY: leaving the process; OpenSIPS's exit path is the main process's.
    unsafe { libc::_exit(0) }
}
