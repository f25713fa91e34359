//! The sender processes' supervision, the same on every host. A server
//! stops altogether when one of the processes it forked dies; so the
//! process it forks for a sender forks the sending process itself, watches
//! it, and starts a new one when it dies. A dead sending process then costs
//! traces (counted by the new one), never calls.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Set when the server asks the process to stop (SIGTERM or SIGINT).
pub static STOP: AtomicBool = AtomicBool::new(false);

/// How long a sender waits before it replaces a sending process that
/// died, so that one that dies at once does not take a core.
const RESTART_DELAY: Duration = Duration::from_secs(1);

extern "C" fn on_stop_signal(_signal: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// The server stops its processes with SIGTERM: a sender finishes its work
/// first instead of exiting in the middle of it.
pub fn catch_stop_signal() {
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_stop_signal as *const () as usize;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGTERM, &action, std::ptr::null_mut());
        libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut());
    }
}

pub fn stopping() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// What a supervised sender needs from its host.
pub struct Supervision<'a> {
    pub name: String,
    /// How long the sending process may take to stop once asked.
    pub drain_time: Duration,
    /// Called about ten times a second in the supervising process (on
    /// Kamailio, to keep its config current).
    pub tick: &'a dyn Fn(),
    /// Called after a sending process died, before the next starts.
    pub restarted: &'a dyn Fn(),
}

/// Supervises the sending process, which runs `work` and then exits, for
/// the life of this process. This process was forked by the host from one
/// of its own: it never returns into the host's code, not even on a panic.
pub fn run(s: Supervision<'_>, work: &dyn Fn()) -> ! {
    let name = s.name.clone();
    // `supervise` never returns, so getting past this line means it panicked.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| supervise(s, work)));
    crate::log_error!("{name}: the supervising process stopped on an internal error");
    // SAFETY: leaving this forked process without unwinding into the host.
    unsafe { libc::_exit(1) }
}

fn supervise(s: Supervision<'_>, work: &dyn Fn()) -> ! {
    catch_stop_signal();
    // SAFETY: the default disposition, so that waitpid sees the child's end.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };
    let supervisor = std::process::id() as libc::pid_t;
    loop {
        // SAFETY: this process runs no threads; the child only runs `work`.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: ask for SIGTERM when the supervisor goes, and check it
            // has not gone already.
            unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                if libc::getppid() != supervisor {
                    libc::_exit(0);
                }
            }
            // The fork boundary: a panic in the sending process ends it here,
            // logged, and never unwinds into the host's child_init code.
            let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
                Ok(()) => 0,
                Err(_) => {
                    crate::log_error!("{}: the sending process stopped on an internal error", s.name);
                    1
                }
            };
            // SAFETY: the sending process is done; `_exit` skips the host's
            // atexit handlers, which belong to the process it was forked from.
            unsafe { libc::_exit(code) }
        }
        if pid < 0 {
            crate::log_error!("{} cannot fork its sending process; no traces will be sent", s.name);
            // SAFETY: leaving this process; the server sees it end.
            unsafe { libc::_exit(1) }
        }
        crate::log_info!("{} started (pid {pid})", s.name);
        let status = wait(pid, &s);
        if stopping() {
            // SAFETY: leaving this process at the server's request.
            unsafe { libc::_exit(0) }
        }
        (s.restarted)();
        crate::log_error!("{} (pid {pid}) {status}; starting it again in {RESTART_DELAY:?}", s.name);
        let until = Instant::now() + RESTART_DELAY;
        while !stopping() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
        if stopping() {
            // SAFETY: as above.
            unsafe { libc::_exit(0) }
        }
    }
}

/// Waits for the sending process `pid` to end, passing a stop request on
/// to it. Returns how it ended.
fn wait(pid: libc::pid_t, s: &Supervision<'_>) -> String {
    let mut stop_sent: Option<Instant> = None;
    loop {
        (s.tick)();
        if stopping() {
            match stop_sent {
                None => {
                    // SAFETY: signalling our own child.
                    unsafe { libc::kill(pid, libc::SIGTERM) };
                    stop_sent = Some(Instant::now());
                }
                Some(at) if at.elapsed() > s.drain_time + Duration::from_secs(1) => {
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

/// The sending process's loop: takes over the queue from a process that
/// died, delivers batches until the server asks to stop (running `tick`
/// each round), then delivers what is left within `drain_time`.
pub fn send(
    name: &str,
    sender: &mut crate::core::sender::Sender<'_>,
    queue: &crate::core::ring::Ring,
    host: &mut dyn crate::core::sender::SenderHost,
    drain_time: Duration,
    tick: &dyn Fn(),
) {
    sender.take_over(queue, host);
    while !stopping() {
        tick();
        let taken = crate::ffi::guard::guard("the sender", 0, || sender.step(queue, host));
        if taken < sender.batch_size() {
            std::thread::sleep(sender.flush_interval());
        }
    }
    // The server is stopping: deliver what the workers queued and what is
    // held back, within a bounded time, so that nothing accepted goes unsaid.
    let left =
        crate::ffi::guard::guard("the sender", queue.depth(), || sender.drain(queue, host, drain_time));
    if left > 0 {
        crate::log_warn!("{name} stopped with {left} bytes of traces undelivered");
    } else {
        crate::log_info!("{name} stopped");
    }
}

/// Logs a TCP or TLS collector's connection going down or coming back.
pub fn log_connection(dest: crate::core::dest::Destination, up: bool, detail: &dyn std::fmt::Display) {
    let to = format!("{}:{}", dest.transport.name(), dest.addr);
    if up {
        crate::log_info!("HEP collector {to}: {detail}");
    } else {
        crate::log_warn!("HEP collector {to}: connection failed: {detail}; retrying");
    }
}

/// Logs news of the spool (`warn`: a problem).
pub fn log_spool_note(warn: bool, detail: &dyn std::fmt::Display) {
    if warn {
        crate::log_warn!("{detail}");
    } else {
        crate::log_info!("{detail}");
    }
}

/// In the sending process `name` (sender `index` of `count`): opens its
/// disk spool under `dir`, when the config gives one, and says what an
/// earlier run left there. A spool that cannot be opened is logged, and
/// the sender runs without it.
pub fn open_spool(
    name: &str,
    sender: &mut crate::core::sender::Sender<'_>,
    dir: Option<&str>,
    index: usize,
    count: usize,
) {
    let Some(dir) = dir else { return };
    match sender.open_spool(std::path::Path::new(dir), index, count) {
        Ok(Some(news)) => crate::log_info!("{name}: {news}"),
        Ok(None) => {}
        Err(e) => crate::log_error!("{name}: {e}; records no collector takes are dropped"),
    }
}
