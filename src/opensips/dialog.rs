//! The dialog scope, `trace(id, "d")` on an initial INVITE: the dialog
//! module's callbacks trace each request within the dialog and its
//! transaction, as OpenSIPS's tracer does; the INVITE's own transaction is
//! traced as in the transaction scope, and a CANCEL of it too.

use crate::opensips::host::dialog::{self, Event};
use crate::opensips::host::held::{Held, Trace};
use crate::opensips::host::msg::Msg;
use crate::opensips::host::tm;
use crate::opensips::{state, trace_api, tracer, transaction};

/// Starts tracing the dialog of `msg`, an initial INVITE, and its
/// transaction. Returns false when the dialog or tm module refuses.
pub fn start(msg: &mut Msg, trace: Trace<'_>) -> bool {
    let Some(dlg) = dialog::create(msg) else { return false };
    // Each callback holds a reference, released with the dialog (or the
    // transaction, for the CANCEL's).
    let Some(held) = Held::new(trace) else { return false };
    let within = dlg.register::<InDialog>(Event::RequestWithin, held.clone());
    if !dlg.register::<InDialog>(Event::Terminated, held.clone()) {
        return false;
    }
    within
        && transaction::start(msg, trace)
        && tm::register::<Cancelled>(&mut tm::On::Msg(msg), tm::Event::Cancelled, held)
}

/// Traces `msg`, received within the dialog, and its transaction.
fn trace_request(held: &Held, msg: &mut Msg) {
    let Some(state) = state::get() else { return };
    let trace = held.trace();
    trace_api::enter(msg.id(), trace.id, trace.types);
    transaction::start(msg, trace);
    tracer::incoming(state, trace, msg, false);
}

struct InDialog;

impl dialog::Handler for InDialog {
    fn run(msg: &mut Msg, held: &Held) {
        // A message the dialog module made up (to end a dialog) is not traced.
        if !msg.is_dummy() {
            trace_request(held, msg);
        }
    }
}

struct Cancelled;

impl tm::Handler for Cancelled {
    fn run(cb: tm::Callback<'_>) {
        if let Some(cancel) = cb.request {
            trace_request(cb.held, cancel);
        }
    }
}
