//! State shared by all Kamailio processes, in Kamailio's shared memory: the
//! on/off switch of `siptrace.status`, the counters, the log rate limits,
//! and the lock that keeps SQLite writers from colliding.

use crate::core::ring::Ring;
use crate::kamailio::sys;
use std::sync::atomic::{AtomicPtr, Ordering};

pub use crate::core::shared::Shared;

static SHARED: AtomicPtr<Shared> = AtomicPtr::new(std::ptr::null_mut());

/// Allocates the shared state. Called once from mod_init, before Kamailio
/// forks, so every process inherits the same pointer.
pub fn init(trace_on: bool) -> Result<(), String> {
    // SAFETY: plain allocation from Kamailio's shared memory pool.
    let p = unsafe { sys::siptrace_shim_shm_malloc(std::mem::size_of::<Shared>()) } as *mut Shared;
    if p.is_null() {
        return Err("out of shared memory".into());
    }
    // SAFETY: `p` is a fresh allocation of the right size; Kamailio's shm
    // blocks are aligned for any scalar type, and live until shutdown.
    unsafe { Shared::init_at(p, trace_on) }.map_err(|e| format!("cannot create the database lock: {e}"))?;
    SHARED.store(p, Ordering::Release);
    Ok(())
}

/// The shared state, once mod_init has run.
pub fn get() -> Option<&'static Shared> {
    // SAFETY: the pointer is null or points at the block `init` wrote, which
    // lives until the server exits (destroy runs when no worker is left).
    unsafe { SHARED.load(Ordering::Acquire).as_ref() }
}

pub fn tracing_on() -> bool {
    get().is_some_and(|s| s.trace_on.load(Ordering::Relaxed))
}

/// A queue of `bytes` bytes in shared memory, for one sender.
pub fn new_queue(bytes: usize) -> Result<Ring, String> {
    // SAFETY: plain allocation from Kamailio's shared memory pool.
    let mem = unsafe { sys::siptrace_shim_shm_malloc(bytes) } as *mut u8;
    if mem.is_null() {
        return Err(format!(
            "cannot allocate a {} KiB queue in shared memory; give Kamailio more (-m) or set a smaller queue_size",
            bytes / 1024
        ));
    }
    // SAFETY: a fresh shm block of `bytes` bytes, 8-byte aligned, kept
    // until the server exits.
    unsafe { Ring::init(mem, bytes) }.map_err(|e| format!("cannot create a queue: {e}"))
}
