//! The sender process OpenSIPS forks for the module (its `procs` export):
//! it drains the queue with the core's sender, as on Kamailio.

use crate::core::counters::{Counters, DropReason};
use crate::core::dest::Destination;
use crate::core::record::Row;
use crate::core::sender::{Sender, SenderHost, SenderSettings};
use crate::core::shared::Shared;
use crate::guard::guard;
use crate::opensips::db::Connection;
use crate::opensips::module::{self, Module};
use crate::supervise::{self, Supervision};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use std::fmt::Display;
use std::sync::Arc;
use std::time::{Duration, Instant};

const STREAM_BACKLOG: usize = 4 << 20;
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
        let to = format!("{}:{}", dest.transport.name(), dest.addr);
        if up {
            crate::log_info!("HEP collector {to}: {detail}");
        } else {
            crate::log_warn!("HEP collector {to}: connection failed: {detail}; retrying");
        }
    }
}

/// The body of sender process `index`, which OpenSIPS forks: it
/// supervises the process that does the sending (see `crate::supervise`).
pub unsafe extern "C" fn run(index: libc::c_int) {
    let Some(module) = module::get() else { return };
    let supervision = Supervision {
        name: format!("sender {index}"),
        drain_time: DRAIN_TIME,
        tick: &|| {},
        restarted: &|| Counters::add(&module.shared.counters.sender_restarts),
    };
    supervise::run(supervision, &|| work(module, index))
}

/// The sending process: drains queue `index` until asked to stop.
fn work(module: &'static Module, index: libc::c_int) -> ! {
    guard("the sender", (), || {
        let Some(queue) = module.queues.get(index as usize).copied() else { return };
        let config = &module.config;
        let settings = SenderSettings {
            batch_size: config.senders.batch_size,
            flush_interval: Duration::from_millis(config.senders.flush_interval_ms),
            hep: config.hep.clone(),
            stream_backlog: STREAM_BACKLOG,
            db_flush_interval: Duration::from_millis(config.senders.db_flush_interval_ms),
            db_batch_size: config.senders.db_batch_size,
            xheaders_write: false,
            source_ip: None,
        };
        let mut host = Host { shared: module.shared, db: None, next_db_attempt: Instant::now() };
        let mut sender = Sender::new(settings, &module.shared.counters);
        sender.take_over(&queue, &host);
        while !supervise::stopping() {
            let taken = guard("the sender", 0, || sender.step(&queue, &mut host));
            if taken < config.senders.batch_size {
                std::thread::sleep(sender.flush_interval());
            }
        }
        let left = guard("the sender", queue.depth(), || sender.drain(&queue, &mut host, DRAIN_TIME));
        if left > 0 {
            crate::log_warn!("sender {index} stopped with {left} bytes of traces undelivered");
        }
    });
    // SAFETY: leaving the process; OpenSIPS's exit path is the main process's.
    unsafe { libc::_exit(0) }
}
