//! A sender process: forked by the main process like any Kamailio process
//! (listed by `core.psx`, stopped with the server), it drains one queue
//! with the core's sender and stores rows with the module's own writer
//! (`core::store`) or through the DB API, as mod_init chose.

use crate::core::counters::{Counters, DropReason};
use crate::core::dest::Destination;
use crate::core::record::Row;
use crate::core::sender::{tls, Sender, SenderHost, SenderSettings};
use crate::core::shared::Shared;
use crate::core::store::{self, Backend, Event, NativeStore};
use crate::kamailio::db::{self, DbConn, DbSetup};
use crate::kamailio::host::process;
use crate::kamailio::state::State;
use crate::kamailio::{send_socket, tracer};
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
pub fn run(state: &'static State, index: usize) -> ! {
    if !process::cfg_child_init() {
        exit(index, "cannot join the config framework");
    }
    let supervision = Supervision {
        name: format!("sender {index}"),
        drain_time: DRAIN_TIME,
        tick: &process::cfg_update,
        restarted: &|| Counters::add(&state.shared.counters.sender_restarts),
    };
    supervise::run(supervision, &|| work(state, index))
}

/// The sending process: drains queue `index` until asked to stop.
fn work(state: &'static State, index: usize) -> ! {
    process::cfg_worker_init();
    let config = &state.config;
    let settings = SenderSettings {
        source_ip: send_socket::source(state).map(|s| s.addr.ip()),
        ..SenderSettings::from_settings(&config.settings)
    };
    let mut host = Host {
        state,
        db_setup: state.db.filter(|_| config.uses_database()).map(|db| DbSetup::new(config, db)),
        uses_db: config.uses_database(),
        native: state.native_rows.clone().filter(|_| config.uses_database()).map(NativeStore::new),
        db: None,
        next_db_attempt: Instant::now(),
    };
    let mut sender = Sender::new(settings, &state.shared.counters);
    let name = format!("sender {index}");
    let spool_dir = config.settings.delivery.spool_dir.as_deref();
    supervise::open_spool(&name, &mut sender, spool_dir, index, config.settings.senders.count);
    match send_socket::udp_socket(state) {
        Some(Ok(socket)) => sender = sender.with_udp_source(socket),
        Some(Err(e)) => crate::log_error!("sender {index}: {e}; sending from an ephemeral socket instead"),
        None => {}
    }
    supervise::send(&name, &mut sender, &state.queues[index], &mut host, DRAIN_TIME, &process::cfg_update);
    // This child is done; Kamailio's own exit path belongs to the main
    // process.
    process::exit(0)
}

/// How long a stopping sender may take to deliver what is queued.
const DRAIN_TIME: Duration = Duration::from_secs(3);

fn exit(index: usize, why: &str) -> ! {
    crate::log_error!("sender {index} cannot run: {why}");
    process::exit(1)
}

struct Host {
    state: &'static State,
    /// The table rows go to, when the database is used and bound.
    db_setup: Option<DbSetup>,
    uses_db: bool,
    /// The module's own writer, for sqlite:// and postgres:// URLs.
    native: Option<NativeStore>,
    /// The DB API's connection, for the other URLs (and with db_native=0).
    db: Option<DbConn>,
    next_db_attempt: Instant,
}

impl Host {
    /// Opens the database connection on first use and after a failure,
    /// at most once per DB_RETRY.
    fn open_db(&mut self) -> Result<(), String> {
        if self.db.is_some() {
            return Ok(());
        }
        let now = Instant::now();
        if now < self.next_db_attempt {
            return Err("no database connection".into());
        }
        self.next_db_attempt = now + DB_RETRY;
        let setup = self.db_setup.as_ref().ok_or("database not bound")?;
        match db::connect(setup) {
            Ok(conn) => {
                crate::log_info!("database connection open");
                self.db = Some(conn);
                Ok(())
            }
            Err(e) => {
                crate::log_warn!("no database connection: {e}; retrying in {DB_RETRY:?}");
                Err(e.to_string())
            }
        }
    }
}

/// Stores rows through the module's own writer. Several senders writing
/// one SQLite file take turns, as they do through the DB API, so that
/// none of them waits in SQLite's busy handler for another.
fn store_native(
    shared: &Shared,
    native: &mut NativeStore,
    rows: &[Row<'_>],
) -> (usize, Option<(DropReason, String)>) {
    let _writer = match native.settings().backend {
        Backend::Sqlite => match shared.db_lock.lock_timeout(store::sqlite::BUSY_TIMEOUT) {
            Some(guard) => Some(guard),
            None => {
                let why = format!("another process held the database for {:?}", store::sqlite::BUSY_TIMEOUT);
                return (0, Some((DropReason::DbFailed, why)));
            }
        },
        Backend::Postgres => None,
    };
    let stored = native.store(rows);
    match &stored.event {
        Some(Event::Connected) => crate::log_info!("database connection open"),
        Some(Event::ConnectFailed(e)) => {
            crate::log_warn!("no database connection: {e}; retrying in {:?}", store::RETRY)
        }
        Some(Event::Lost(e)) => crate::log_warn!("database connection lost: {e}; connecting again"),
        None => {}
    }
    (stored.stored, stored.error)
}

impl SenderHost for Host {
    fn store_rows(&mut self, rows: &[Row<'_>]) -> (usize, Option<(DropReason, String)>) {
        if !self.uses_db {
            return (0, Some((DropReason::DbUnavailable, "no database configured".into())));
        }
        if let Some(native) = self.native.as_mut() {
            return store_native(self.state.shared, native, rows);
        }
        if let Err(e) = self.open_db() {
            return (0, Some((DropReason::DbUnavailable, e)));
        }
        let (Some(conn), Some(setup)) = (&self.db, &self.db_setup) else {
            return (0, Some((DropReason::DbUnavailable, "no database connection".into())));
        };
        let (stored, error) = conn.insert_batch(setup, self.state.shared, rows);
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
        let name = tls::server_name(&self.state.tls_name(dest)).ok()?;
        let file = &self.state.config.settings.senders.tls_ca_file;
        match tls::client_config(Path::new(file)) {
            Ok(config) => Some((config, name)),
            Err(e) => {
                crate::log_error!("TLS to {}: {e}", dest.addr);
                None
            }
        }
    }

    fn dropped(&self, reason: DropReason, _count: u64, detail: &dyn Display) {
        tracer::log_drop(self.state.shared, reason, detail);
    }

    fn connection(&self, dest: Destination, up: bool, detail: &dyn Display) {
        supervise::log_connection(dest, up, detail);
    }

    fn spool_note(&self, warn: bool, detail: &dyn Display) {
        supervise::log_spool_note(warn, detail);
    }
}
