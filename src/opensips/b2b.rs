//! The B2B scope, `trace(id, "b")`: the calls a B2B scenario of OpenSIPS's
//! b2b_logic makes of the traced request. trace() flags the request and
//! keeps its trace at hand; when b2b_logic makes a session of that request,
//! it asks for a tracer, and b2b_entities then hands it each transaction
//! of the session's entities, on both sides: the request received is traced
//! at once, and tm callbacks on the transaction trace the rest, as in the
//! transaction scope.

use crate::ffi::guard::guard;
use crate::opensips::module;
use crate::opensips::sys;
use crate::opensips::tracer::{self, Trace};
use crate::opensips::transaction::{self, Held};
use std::cell::UnsafeCell;
use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Whether b2b_logic is loaded and takes our tracer.
static LOADED: AtomicBool = AtomicBool::new(false);

/// The trace of the request this process works on now, which b2b_logic may
/// make a session of (a `Held` parameter), holding one reference for this
/// slot.
static CURRENT: AtomicUsize = AtomicUsize::new(0);

/// What b2b_logic copies when it makes a session: the tracer it returns is
/// read at once, in the same process.
struct TracerSlot(UnsafeCell<sys::b2b_tracer>);
// SAFETY: each process has its own copy, and OpenSIPS processes are single
// threaded; it is written and read within one call of `set_tracer`.
unsafe impl Sync for TracerSlot {}
static TRACER: TracerSlot =
    TracerSlot(UnsafeCell::new(sys::b2b_tracer { f: None, param: std::ptr::null_mut(), f_freep: None }));

/// Binds b2b_logic if it is loaded. From mod_init.
pub fn init() -> Result<(), String> {
    // SAFETY: looking up another module's export by name.
    let Some(bind) = (unsafe { sys::find_export(c"b2b_logic_bind".as_ptr(), 0) }) else { return Ok(()) };
    let mut api = sys::b2bl_api::default();
    // SAFETY: b2b_logic's bind function has this signature and fills `api`.
    let bind: sys::load_b2bl_f = unsafe { std::mem::transmute(bind) };
    if !bind.is_some_and(|bind| unsafe { bind(&mut api) } >= 0) {
        return Err("b2b_logic is loaded but its API cannot be bound".into());
    }
    let register = api.register_set_tracer_cb.ok_or("b2b_logic has no tracer hook")?;
    // SAFETY: handing b2b_logic our hook, for requests trace() flags.
    if unsafe { register(Some(set_tracer), sys::FL_USE_SIPTRACE_B2B) } < 0 {
        return Err("b2b_logic refused the tracer hook (is another tracer loaded?)".into());
    }
    LOADED.store(true, Ordering::Relaxed);
    Ok(())
}

pub fn loaded() -> bool {
    LOADED.load(Ordering::Relaxed)
}

/// trace() in the B2B scope: flags `msg` for b2b_logic and keeps its trace
/// for the session b2b_logic may make of it.
pub fn start(msg: &mut sys::sip_msg, trace: Trace<'_>) -> bool {
    let Some(tx) = Held::new(trace, 1) else { return false };
    forget_current();
    CURRENT.store(tx.param() as usize, Ordering::Relaxed);
    msg.msg_flags |= sys::FL_USE_SIPTRACE_B2B;
    true
}

/// Drops the trace kept for the previous request, when a new one comes.
pub fn forget_current() {
    let old = CURRENT.swap(0, Ordering::Relaxed);
    if old != 0 {
        // SAFETY: the slot's own reference to a block `start` made.
        unsafe { transaction::release(old as *mut c_void) };
    }
}

/// b2b_logic's question when it makes a session of a flagged request: the
/// tracer its entities call, with the request's trace (a reference for the
/// session, which b2b_logic gives back through `f_freep`).
unsafe extern "C" fn set_tracer() -> *mut sys::b2b_tracer {
    let slot = TRACER.0.get();
    guard("b2b tracer", slot, || {
        // SAFETY: the slot's trace, alive while the slot holds it.
        let tracer = match unsafe { Held::from_param(CURRENT.load(Ordering::Relaxed) as *mut c_void) } {
            Some(tx) => {
                tx.add_refs(1);
                sys::b2b_tracer {
                    f: Some(trace_transaction),
                    param: tx.param(),
                    f_freep: Some(transaction::release),
                }
            }
            None => sys::b2b_tracer { f: None, param: std::ptr::null_mut(), f_freep: None },
        };
        // SAFETY: this process's slot, see TracerSlot.
        unsafe { slot.write(tracer) };
        slot
    })
}

/// A transaction of a traced session's entity: for one the entity received
/// (`msg` is its request), the request now; then the rest through tm. For
/// the ACK of a 2xx, which has no transaction, only the ACK.
unsafe extern "C" fn trace_transaction(msg: *mut sys::sip_msg, t: *mut c_void, param: *mut c_void) -> c_int {
    guard("b2b tracer", 0, || {
        let Some(module) = module::get() else { return 0 };
        // SAFETY: the session's trace, alive while b2b_logic holds it.
        let Some(block) = (unsafe { Held::from_param(param) }) else { return 0 };
        // tm's T_UNDEFINED: a negative hop-by-hop ACK, not for tracing.
        if t as isize == -1 {
            return 0;
        }
        // SAFETY: the message b2b_entities received, or null.
        let msg = unsafe { msg.as_ref() };
        // SAFETY: a transaction of tm, or null.
        let local = match unsafe { (t as *const sys::cell).as_ref() } {
            None => {
                if let Some(msg) = msg {
                    tracer::incoming(module, block.trace(), msg, false);
                }
                return 0;
            }
            Some(cell) => cell.flags & sys::T_IS_LOCAL_FLAG != 0,
        };
        if let Some(msg) = msg.filter(|_| !local) {
            tracer::incoming(module, block.trace(), msg, false);
        }
        block.add_refs(2);
        if transaction::watch(std::ptr::null_mut(), t as *mut sys::cell, block) {
            0
        } else {
            tracer::report(
                module,
                crate::core::counters::DropReason::NoDestination,
                "tm refused the callbacks",
            );
            -1
        }
    })
}
