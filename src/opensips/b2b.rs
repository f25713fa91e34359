//! The B2B scope, `trace(id, "b")`: the calls a B2B scenario of OpenSIPS's
//! b2b_logic makes of the traced request. trace() marks the request and
//! keeps its trace at hand; when b2b_logic makes a session of that request,
//! it asks for a tracer, and b2b_entities then hands it each transaction
//! of the session's entities, on both sides: the request received is traced
//! at once, and tm callbacks on the transaction trace the rest, as in the
//! transaction scope.

use crate::core::counters::DropReason;
use crate::opensips::host::b2b;
use crate::opensips::host::held::{Held, Trace};
use crate::opensips::host::msg::{Mark, Msg};
use crate::opensips::host::tm::{On, Transaction};
use crate::opensips::{state, tracer, transaction};
use std::cell::RefCell;
use std::mem::ManuallyDrop;

thread_local! {
    /// The trace of the request this process works on now, which b2b_logic
    /// may make a session of; held until the next request replaces it. Not
    /// dropped at exit: OpenSIPS's shared memory may be gone by then.
    static CURRENT: RefCell<ManuallyDrop<Option<Held>>> = RefCell::default();
}

/// Hands b2b_logic the tracer, if b2b_logic is loaded. From mod_init.
pub fn init() -> Result<(), String> {
    b2b::bind::<Session>()
}

/// trace() in the B2B scope: marks `msg` for b2b_logic and keeps its trace
/// for the session b2b_logic may make of it.
pub fn start(msg: &mut Msg, trace: Trace<'_>) -> bool {
    let Some(held) = Held::new(trace) else { return false };
    CURRENT.with_borrow_mut(|current| **current = Some(held));
    msg.mark(Mark::TracedB2b);
    true
}

/// Drops the trace kept for the previous request, when a new one comes.
pub fn forget_current() {
    CURRENT.with_borrow_mut(|current| **current = None);
}

struct Session;

impl b2b::Tracer for Session {
    fn session() -> Option<Held> {
        CURRENT.with_borrow(|current| (**current).clone())
    }

    /// For a transaction the entity received, its request now; then the
    /// rest through tm. For the ACK of a 2xx, which has no transaction,
    /// only the ACK.
    fn transaction(msg: Option<&Msg>, t: Option<Transaction<'_>>, held: &Held) -> bool {
        let Some(state) = state::get() else { return true };
        let Some(t) = t else {
            if let Some(msg) = msg {
                tracer::incoming(state, held.trace(), msg, false);
            }
            return true;
        };
        if let Some(msg) = msg.filter(|_| !t.is_local()) {
            tracer::incoming(state, held.trace(), msg, false);
        }
        if transaction::watch(&mut On::Transaction(t), held) {
            true
        } else {
            state.report(DropReason::NoDestination, "tm refused the callbacks");
            false
        }
    }
}
