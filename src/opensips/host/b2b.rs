//! b2b_logic's tracer hook: when b2b_logic makes a session of a request
//! marked `Mark::TracedB2b`, it asks for a tracer, and b2b_entities then
//! hands that tracer each transaction of the session's entities.

use super::held::{self, Held};
use super::msg::Msg;
use super::sys;
use super::tm::Transaction;
use crate::ffi::guard::guard;
use crate::ffi::Settled;
use std::cell::UnsafeCell;
use std::os::raw::{c_int, c_void};

/// Set when b2b_logic took the hook.
static BOUND: Settled<()> = Settled::new();

/// The tracer for b2b_logic's sessions.
pub trait Tracer {
    /// The trace of the session being made, if the request is traced (a
    /// reference, which b2b_logic releases with the session).
    fn session() -> Option<Held>;
    /// A transaction of a traced session's entity: `msg` is its request
    /// when the entity received one; `t` is `None` for the ACK of a 2xx,
    /// which has no transaction. False fails it.
    fn transaction(msg: Option<&Msg>, t: Option<Transaction<'_>>, held: &Held) -> bool;
}

/// Hands b2b_logic the tracer `T`, if b2b_logic is loaded. From mod_init.
pub fn bind<T: Tracer>() -> Result<(), String> {
    // SAFETY: b2b_logic's `b2b_logic_bind` fills a `b2bl_api`.
    let api = match unsafe { super::bind::<sys::b2bl_api>(c"b2b_logic_bind") } {
        Ok(Some(api)) => api,
        Ok(None) => return Ok(()),
        Err(()) => return Err("b2b_logic is loaded but its API cannot be bound".into()),
    };
    let register = api.register_set_tracer_cb.ok_or("b2b_logic has no tracer hook")?;
    // SAFETY: handing b2b_logic our hook, for requests marked for it.
    if unsafe { register(Some(set_tracer::<T>), sys::FL_USE_SIPTRACE_B2B) } < 0 {
        return Err("b2b_logic refused the tracer hook (is another tracer loaded?)".into());
    }
    BOUND.set(());
    Ok(())
}

pub fn loaded() -> bool {
    BOUND.get().is_some()
}

thread_local! {
    /// What b2b_logic reads at once, in the same process and thread, when
    /// `set_tracer` returns it.
    static SLOT: UnsafeCell<sys::b2b_tracer> = const {
        UnsafeCell::new(sys::b2b_tracer { f: None, param: std::ptr::null_mut(), f_freep: None })
    };
}

/// b2b_logic's question when it makes a session of a marked request.
unsafe extern "C" fn set_tracer<T: Tracer>() -> *mut sys::b2b_tracer {
    let slot = SLOT.with(UnsafeCell::get);
    guard("b2b tracer", slot, || {
        let tracer = match T::session() {
            Some(held) => sys::b2b_tracer {
                f: Some(transaction::<T>),
                param: held.into_param(),
                f_freep: Some(held::release),
            },
            None => sys::b2b_tracer { f: None, param: std::ptr::null_mut(), f_freep: None },
        };
        // SAFETY: this thread's slot; b2b_logic copies it before it asks again.
        unsafe { slot.write(tracer) };
        slot
    })
}

unsafe extern "C" fn transaction<T: Tracer>(
    msg: *mut sys::sip_msg,
    t: *mut c_void,
    param: *mut c_void,
) -> c_int {
    guard("b2b tracer", 0, || {
        // SAFETY: the session's reference, which b2b_logic keeps meanwhile.
        let Some(held) = (unsafe { Held::borrow_param(param) }) else { return 0 };
        // tm's T_UNDEFINED: a negative hop-by-hop ACK, not for tracing.
        if t as isize == -1 {
            return 0;
        }
        // SAFETY: the message b2b_entities received, or null.
        let msg = unsafe { Msg::from_ptr(msg) }.map(|m| &*m);
        // SAFETY: a transaction of tm, or null.
        let t = unsafe { Transaction::from_ptr(t as *mut sys::cell) };
        if T::transaction(msg, t, &held) {
            0
        } else {
            -1
        }
    })
}
