//! A sender process: forked by the main process like any Kamailio process
//! (listed by `core.psx`, stopped with the server), it drains one queue
//! with the core's sender and stores rows through the DB API.

use crate::core::counters::{Counters, DropReason};
use crate::core::dest::Destination;
use crate::core::record::Row;
use crate::core::sender::{tls, Sender, SenderHost, SenderSettings};
use crate::kamailio::db::DbConn;
use crate::kamailio::guard::guard;
use crate::kamailio::module::{self, Module};
use crate::kamailio::shared::{self, Shared};
use crate::kamailio::{db, send_socket, sys, tracer};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use std::fmt::Display;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most bytes waiting for one TCP or TLS collector.
const STREAM_BACKLOG: usize = 4 << 20;
/// How often a sender without a database connection tries again.
const DB_RETRY: Duration = Duration::from_secs(5);

/// Runs sender `index` for the life of the process: the process Kamailio
/// forked watches over a child process that does the sending, and starts
/// a new one if it dies. Kamailio stops the whole server when one of its
/// own children dies; a dead sending process costs traces, never calls.
pub fn run(module: &'static Module, index: usize) -> ! {
    let Some(shared) = shared::get() else { exit(index, "no shared state") };
    // SAFETY: a process forked by fork_process after cfg_register_child.
    if unsafe { sys::cfg_child_init() } != 0 {
        exit(index, "cannot join the config framework");
    }
    catch_stop_signal();
    // SAFETY: the default disposition, so that waitpid sees the child's end.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };
    let supervisor = std::process::id() as libc::pid_t;
    loop {
        // SAFETY: this process runs no threads; the child only runs `work`.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            work(module, index, shared, supervisor);
        }
        if pid < 0 {
            exit(index, "cannot fork the sending process");
        }
        crate::log_info!("sender {index} started (pid {pid})");
        let status = supervise(pid);
        if STOP.load(Ordering::Relaxed) {
            // SAFETY: leaving this child; see `exit`.
            unsafe { libc::_exit(0) }
        }
        Counters::add(&shared.counters.sender_restarts);
        crate::log_error!("sender {index} (pid {pid}) {status}; starting it again in {RESTART_DELAY:?}");
        sleep_unless_stopped(RESTART_DELAY);
        if STOP.load(Ordering::Relaxed) {
            // SAFETY: as above.
            unsafe { libc::_exit(0) }
        }
    }
}

/// How long a sender waits before it replaces a sending process that
/// died, so that one that dies at once does not take a core.
const RESTART_DELAY: Duration = Duration::from_secs(1);

/// Waits for the sending process `pid` to end, keeping this process's
/// config current, and passes a stop request on to it. Returns how it
/// ended.
fn supervise(pid: libc::pid_t) -> String {
    let mut stop_sent: Option<Instant> = None;
    loop {
        // SAFETY: the cfg_update macro, for a process that joined the framework.
        unsafe { sys::siptrace_shim_cfg_update() };
        if STOP.load(Ordering::Relaxed) {
            match stop_sent {
                None => {
                    // SAFETY: signalling our own child.
                    unsafe { libc::kill(pid, libc::SIGTERM) };
                    stop_sent = Some(Instant::now());
                }
                Some(at) if at.elapsed() > DRAIN_TIME + Duration::from_secs(1) => {
                    // SAFETY: as above; it did not stop in time.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                Some(_) => {}
            }
        }
        let mut status = 0;
        // SAFETY: waiting for our own child, without blocking.
        match unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } {
            0 => std::thread::sleep(Duration::from_millis(100)),
            p if p == pid => return describe_exit(status),
            _ => {
                if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                    return "ended (its status is unknown)".into();
                }
            }
        }
    }
}

fn describe_exit(status: libc::c_int) -> String {
    if libc::WIFSIGNALED(status) {
        format!("was killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("exited with status {}", libc::WEXITSTATUS(status))
    }
}

fn sleep_unless_stopped(time: Duration) {
    let until = Instant::now() + time;
    while !STOP.load(Ordering::Relaxed) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The sending process: drains queue `index` until asked to stop.
fn work(module: &'static Module, index: usize, shared: &'static Shared, supervisor: libc::pid_t) -> ! {
    // SAFETY: ask for SIGTERM when the supervisor goes, and check it has not
    // gone already; then take a config reference of this process's own.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
        if libc::getppid() != supervisor {
            libc::_exit(0);
        }
        sys::siptrace_shim_cfg_worker_init();
    }
    let config = &module.config;
    let settings = SenderSettings {
        batch_size: config.senders.batch_size,
        flush_interval: Duration::from_millis(config.senders.flush_interval_ms),
        hep: config.hep.clone(),
        stream_backlog: STREAM_BACKLOG,
        db_flush_interval: Duration::from_millis(config.senders.db_flush_interval_ms),
        db_batch_size: config.senders.db_batch_size,
        xheaders_write: config.xheaders_write,
        source_ip: send_socket::source().map(|s| s.addr.ip()),
    };
    let mut host =
        Host { shared, uses_db: config.uses_database(), db: None, next_db_attempt: Instant::now() };
    let mut sender = Sender::new(settings, &shared.counters);
    match send_socket::udp_socket() {
        Some(Ok(socket)) => sender = sender.with_udp_source(socket),
        Some(Err(e)) => crate::log_error!("sender {index}: {e}; sending from an ephemeral socket instead"),
        None => {}
    }
    let queue = module.queues[index];
    let batch_size = config.senders.batch_size;
    sender.take_over(&queue, &host);
    while !STOP.load(Ordering::Relaxed) {
        // SAFETY: the cfg_update macro; this process holds its own reference.
        unsafe { sys::siptrace_shim_cfg_update() };
        let taken = guard("the sender", 0, || sender.step(&queue, &mut host));
        if taken < batch_size {
            std::thread::sleep(sender.flush_interval());
        }
    }
    // The server is stopping: deliver what the workers queued and the rows
    // held back, within a bounded time, so that nothing accepted goes unsaid.
    let left = guard("the sender", queue.depth(), || sender.drain(&queue, &mut host, DRAIN_TIME));
    if left > 0 {
        crate::log_warn!("sender {index} stopped with {left} bytes of traces undelivered");
    } else {
        crate::log_info!("sender {index} stopped");
    }
    // SAFETY: this child is done; Kamailio's own exit path belongs to the
    // main process.
    unsafe { libc::_exit(0) }
}

/// Set when the sender is asked to stop.
static STOP: AtomicBool = AtomicBool::new(false);

/// How long a stopping sender may take to deliver what is queued.
const DRAIN_TIME: Duration = Duration::from_secs(3);

extern "C" fn on_stop_signal(_signal: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Kamailio stops its children with SIGTERM; the sender finishes its work
/// first instead of exiting in the middle of it.
fn catch_stop_signal() {
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_stop_signal as *const () as usize;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGTERM, &action, std::ptr::null_mut());
        libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut());
    }
}

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
        let file = &module::get()?.config.senders.tls_ca_file;
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
        let to = format!("{}:{}", dest.transport.name(), dest.addr);
        if up {
            crate::log_info!("HEP collector {to}: {detail}");
        } else {
            crate::log_warn!("HEP collector {to}: connection failed: {detail}; retrying");
        }
    }
}
