//! A sender process: forked by the main process like any Kamailio process
//! (listed by `core.psx`, stopped with the server), it drains one queue
//! with the core's sender and stores rows through the DB API.

use crate::core::counters::{Counters, DropReason};
use crate::core::dest::Destination;
use crate::core::record::Row;
use crate::core::sender::{tls, Sender, SenderHost, SenderSettings};
use crate::kamailio::db::DbConn;
use crate::kamailio::module::{self, Module};
use crate::kamailio::shared::{self, Shared};
use crate::kamailio::{db, send_socket, sys, tracer};
use crate::supervise::{self, Supervision};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use std::fmt::Display;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a sender without a database connection tries again.
const DB_RETRY: Duration = Duration::from_secs(5);

/// Runs sender `index` for the life of the process: it supervises the
/// process that does the sending (see `crate::supervise`).
pub fn run(module: &'static Module, index: usize) -> ! {
    let Some(shared) = shared::get() else { exit(index, "no shared state") };
    // SAFETY: a process forked by fork_process after cfg_register_child.
    if unsafe { sys::cfg_child_init() } != 0 {
        exit(index, "cannot join the config framework");
    }
    let supervision = Supervision {
        name: format!("sender {index}"),
        drain_time: DRAIN_TIME,
        // SAFETY: the cfg_update macro, for a process that joined the framework.
        tick: &|| unsafe { sys::siptrace_shim_cfg_update() },
        restarted: &|| Counters::add(&shared.counters.sender_restarts),
    };
    supervise::run(supervision, &|| work(module, index, shared))
}

/// The sending process: drains queue `index` until asked to stop.
fn work(module: &'static Module, index: usize, shared: &'static Shared) -> ! {
    // SAFETY: a config reference of this process's own.
    unsafe { sys::siptrace_shim_cfg_worker_init() };
    let config = &module.config;
    let settings = SenderSettings {
        source_ip: send_socket::source().map(|s| s.addr.ip()),
        ..SenderSettings::from_settings(&config.settings)
    };
    let mut host =
        Host { shared, uses_db: config.uses_database(), db: None, next_db_attempt: Instant::now() };
    let mut sender = Sender::new(settings, &shared.counters);
    match send_socket::udp_socket() {
        Some(Ok(socket)) => sender = sender.with_udp_source(socket),
        Some(Err(e)) => crate::log_error!("sender {index}: {e}; sending from an ephemeral socket instead"),
        None => {}
    }
    // SAFETY (tick): the cfg_update macro; this process holds its own reference.
    let tick = || unsafe { sys::siptrace_shim_cfg_update() };
    let name = format!("sender {index}");
    supervise::send(&name, &mut sender, &module.queues[index], &mut host, DRAIN_TIME, &tick);
    // SAFETY: this child is done; Kamailio's own exit path belongs to the
    // main process.
    unsafe { libc::_exit(0) }
}

/// How long a stopping sender may take to deliver what is queued.
const DRAIN_TIME: Duration = Duration::from_secs(3);

fn exit(index: usize, why: &str) -> ! {
    crate::log_error!("sender {index} cannot run: {why}");
    // SAFETY: leaving this child at once; unwinding back into Kamailio's
    // main-process code that forked it would be wrong.
    unsafe { libc::_exit(1) }
}

struct Host {
    shared: &'static Shared,
    uses_db: bool,
    db: Option<DbConn>,
    next_db_attempt: Instant,
}

impl Host {
    /// The database connection, opened on first use and after a failure,
    /// at most once per DB_RETRY.
    fn db(&mut self) -> Result<&DbConn, String> {
        if self.db.is_none() {
            let now = Instant::now();
            if now < self.next_db_attempt {
                return Err("no database connection".into());
            }
            self.next_db_attempt = now + DB_RETRY;
            match db::connect() {
                Ok(conn) => {
                    crate::log_info!("database connection open");
                    self.db = Some(conn);
                }
                Err(e) => {
                    crate::log_warn!("no database connection: {e}; retrying in {DB_RETRY:?}");
                    return Err(e.to_string());
                }
            }
        }
        self.db.as_ref().ok_or_else(|| "no database connection".to_string())
    }
}

impl SenderHost for Host {
    fn store_rows(&mut self, rows: &[Row<'_>]) -> (usize, Option<(DropReason, String)>) {
        if !self.uses_db {
            return (0, Some((DropReason::DbUnavailable, "no database configured".into())));
        }
        let conn = match self.db() {
            Ok(conn) => conn,
            Err(e) => return (0, Some((DropReason::DbUnavailable, e))),
        };
        let (stored, error) = conn.insert_batch(rows);
        if let Some(e) = &error {
            if stored == 0 && !conn.is_alive() {
                // Reconnect next time; the driver may not recover by itself.
                self.db = None;
                return (0, Some((DropReason::DbUnavailable, e.clone())));
            }
        }
        (stored, error.map(|e| (DropReason::DbFailed, e)))
    }

    fn tls_for(&self, dest: Destination) -> Option<(Arc<ClientConfig>, ServerName<'static>)> {
        // Called once per new connection to a collector: no need to keep it.
        let name = tls::server_name(&module::tls_name(dest)).ok()?;
        let file = &module::get()?.config.settings.senders.tls_ca_file;
        match tls::client_config(Path::new(file)) {
            Ok(config) => Some((config, name)),
            Err(e) => {
                crate::log_error!("TLS to {}: {e}", dest.addr);
                None
            }
        }
    }

    fn dropped(&self, reason: DropReason, _count: u64, detail: &dyn Display) {
        tracer::log_drop(self.shared, reason, detail);
    }

    fn connection(&self, dest: Destination, up: bool, detail: &dyn Display) {
        supervise::log_connection(dest, up, detail);
    }
}
