//! The transaction scope, `trace(id, "t")`: tm callbacks on the traced
//! request's transaction catch what it receives (retransmissions, ACK,
//! CANCEL, replies) and what it sends (the relayed requests and the
//! replies). What tm forwards statelessly (the ACK of a 2xx, say) is caught
//! by the core's stateless callbacks, for messages `trace()` marked.

use crate::opensips::host::held::{Held, Trace};
use crate::opensips::host::msg::{Mark, Msg, Sent};
use crate::opensips::host::{sl, tm};
use crate::opensips::{state, trace_api, tracer};
use std::cell::RefCell;
use std::mem::ManuallyDrop;

/// Binds tm if it is loaded, and registers the stateless callbacks. From
/// mod_init.
pub fn init() -> Result<(), String> {
    tm::bind();
    sl::register::<Stateless>()
}

/// How many traces of one message the stateless callbacks see.
const CURRENT_TRACES: usize = 8;

/// The traces of the message this process works on now, for the
/// stateless callbacks: its id, and each trace started on it (trace() and
/// every dynamic trace id that matched it), each held until the next
/// message replaces it. Not dropped at exit: OpenSIPS's shared memory may
/// be gone by then.
#[derive(Default)]
struct Current {
    msg: u32,
    traces: [Option<Held>; CURRENT_TRACES],
}

thread_local! {
    static CURRENT: RefCell<ManuallyDrop<Current>> = RefCell::default();
}

/// Notes `held` as one of message `id`'s traces. A later trace of the same
/// trace id takes the place of the earlier (the route's trace() and the
/// dialog's callback both trace a request within a dialog; what goes out
/// statelessly for it is traced once, as by OpenSIPS's tracer).
fn note_current(id: u32, held: &Held) {
    CURRENT.with_borrow_mut(|current| {
        if current.msg != id {
            **current = Current { msg: id, ..Current::default() };
        }
        let trace_id = held.trace().id;
        let same_or_free = current.traces.iter_mut().find(|slot| match slot {
            Some(noted) => noted.trace().id == trace_id,
            None => true,
        });
        if let Some(slot) = same_or_free {
            *slot = Some(held.clone());
        }
    })
}

/// Starts tracing the transaction of `msg`, a request. Returns false when
/// tm refuses.
pub fn start(msg: &mut Msg, trace: Trace<'_>) -> bool {
    let Some(held) = Held::new(trace) else { return false };
    if !watch(&mut tm::On::Msg(msg), &held) {
        return false;
    }
    msg.mark(Mark::Traced);
    note_current(msg.id(), &held);
    true
}

/// Registers the two tm callbacks on `on`, each holding a reference to
/// `held`. Returns false when tm refuses.
pub fn watch(on: &mut tm::On<'_>, held: &Held) -> bool {
    tm::register::<MatchedIn>(on, tm::Event::MatchedIn, held.clone())
        && tm::register::<SentOut>(on, tm::Event::SentOut, held.clone())
}

struct MatchedIn;

impl tm::Handler for MatchedIn {
    fn run(cb: tm::Callback<'_>) {
        let Some(state) = state::get() else { return };
        // Replies of a transaction this server started (b2b_entities' calls
        // out, say) are left out, as OpenSIPS's tracer leaves them.
        if cb.request.is_none() && !cb.transaction.is_some_and(|t| t.has_request()) {
            return;
        }
        if let Some(msg) = cb.request.as_deref().or(cb.reply) {
            // What the reply's routes log belongs to the traced call too.
            let trace = cb.held.trace();
            trace_api::enter(msg.id(), trace.id, trace.types);
            tracer::incoming(state, trace, msg, true);
        }
    }
}

struct SentOut;

impl tm::Handler for SentOut {
    fn run(cb: tm::Callback<'_>) {
        let Some(state) = state::get() else { return };
        if cb.request.is_none() && !cb.transaction.is_some_and(|t| t.has_request()) {
            return;
        }
        // For a request out, the request is it; for a reply out, the reply
        // relayed, or none for one tm made up (a 100 Trying, say).
        let Some(sent) = &cb.sent else { return };
        let msg = cb.request.as_deref().or(cb.reply);
        tracer::outgoing(state, cb.held.trace(), msg, sent);
    }
}

/// A request or reply sent statelessly for a message `trace()` marked.
struct Stateless;

impl sl::Handler for Stateless {
    fn sent(msg: &Msg, sent: Sent<'_>) {
        let Some(state) = state::get() else { return };
        CURRENT.with_borrow(|current| {
            if current.msg != msg.id() {
                return;
            }
            for held in current.traces.iter().map_while(Option::as_ref) {
                tracer::outgoing(state, held.trace(), Some(msg), &sent);
            }
        })
    }
}
