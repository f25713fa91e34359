//! Dialog tracing: the "d" mode of `sip_trace()` and `sip_trace_mode()`.
//!
//! The initial INVITE is traced as a transaction. When the dialog module
//! creates its dialog, the dialog becomes a holder of the same `TraceInfo`
//! and traces every request within it, from either side: the ACK that
//! confirms it, re-INVITEs, UPDATEs and the like, and the BYE, each with
//! its own transaction's messages.
//!
//! The dialog may be created after the script call (by `t_relay()` with
//! the dialog flag) or before it (`dlg_manage()` first). In the first case
//! the block waits in a per-process list for the dialog module's CREATED
//! callback, which runs while the same request is routed; the list is
//! emptied when that request's script ends, whatever happened. It holds
//! one block per trace of the request: the script's and each trace
//! session's.

use crate::kamailio::call_context;
use crate::kamailio::host::dialog::{Dialogs, Dlg, DlgCreated, DlgHandler};
use crate::kamailio::host::msg::{Method, Msg, MsgKey};
use crate::kamailio::host::script_cb::{self, ScriptHook, When};
use crate::kamailio::host::version::{self, Release};
use crate::kamailio::state::{self, State};
use crate::kamailio::trace_info::{TraceInfo, TraceRef};
use crate::kamailio::transaction;
use std::cell::{Cell, RefCell};

/// A block waiting for the dialog of the request being routed.
struct Pending {
    request: MsgKey,
    info: TraceRef,
}

thread_local! {
    // Kamailio's workers are single-threaded processes; the list is the
    // process's own.
    static PENDING: RefCell<Vec<Pending>> = const { RefCell::new(Vec::new()) };
    /// The dialog created last in this process, and the request it was
    /// created for: a dialog an initial INVITE finds that was not created
    /// for it is one the INVITE spiraled back into.
    static LAST_CREATED: Cell<Option<(MsgKey, usize)>> = const { Cell::new(None) };
}

/// Whether a spiraled INVITE's dialog trace follows the dialog: 6.0's
/// `trace_dialog_spiral` (on by default). 5.6's C module has no such
/// tracing, and neither has this one there.
fn traces_spirals(state: &State) -> bool {
    state.config.trace_dialog_spiral && version::at_least(Release(6, 0))
}

/// Binds the dialog module, when it is loaded, and registers for the
/// dialogs it creates.
pub fn mod_init() -> Result<Option<Dialogs>, String> {
    let Some(dialogs) = Dialogs::bind()? else {
        crate::log_info!(
            "the dialog module is not loaded; dialog tracing will trace the INVITE's transaction"
        );
        return Ok(None);
    };
    if !dialogs.on_created::<Created>() {
        return Err("cannot register for the dialogs the dialog module creates".into());
    }
    if !script_cb::register::<AfterRequest>(When::After, false) {
        return Err("cannot register the end-of-script callback".into());
    }
    Ok(Some(dialogs))
}

/// Makes the dialog of initial INVITE `msg` a holder of `info`: at once if
/// the dialog exists, else when the dialog module creates it (or, with
/// spirals traced, finds the INVITE spiraled back into it). A dialog that
/// exists but was created for an earlier pass of the INVITE (a spiral) is
/// followed only when spirals are traced; otherwise the INVITE's
/// transaction alone is.
pub fn start(state: &State, dialogs: &Dialogs, msg: Msg<'_>, info: &TraceRef) -> Result<(), String> {
    dialogs.with_dialog_of(msg, |dlg| match dlg {
        Some(dlg) if traces_spirals(state) || created_for(msg, dlg) => {
            attach(state, dialogs, dlg, info.clone())
        }
        Some(_) => {
            crate::log_debug!("a spiraled INVITE: its dialog is not traced again (trace_dialog_spiral)");
            Ok(())
        }
        None => {
            let pending = Pending { request: msg.key(), info: info.clone() };
            // Blocks of an earlier request nobody took are released.
            let stale = PENDING.with(|list| {
                let mut list = list.borrow_mut();
                let stale = take_others(&mut list, msg.key());
                list.push(pending);
                stale
            });
            drop(stale);
            Ok(())
        }
    })
}

/// Whether `dlg` was created for `msg`, in this process.
fn created_for(msg: Msg<'_>, dlg: Dlg<'_>) -> bool {
    LAST_CREATED.with(Cell::get) == Some((msg.key(), dlg.id()))
}

/// Takes the blocks waiting for another request than `request` out of
/// `list`.
fn take_others(list: &mut Vec<Pending>, request: MsgKey) -> Vec<Pending> {
    let (keep, others) = std::mem::take(list).into_iter().partition(|p| p.request == request);
    *list = keep;
    others
}

/// Empties the list; what waited there is released, outside the borrow
/// (a release frees shared memory, nothing that comes back here).
fn clear_pending() {
    drop(PENDING.with(|list| std::mem::take(&mut *list.borrow_mut())));
}

/// Registers the dialog callbacks with `info`, a holder the dialog takes;
/// the ACK that confirms the dialog unless `trace_dialog_ack` is 0.
fn attach(state: &State, dialogs: &Dialogs, dlg: Dlg<'_>, info: TraceRef) -> Result<(), String> {
    if !dialogs.attach::<Within>(dlg, info, state.config.trace_dialog_ack) {
        return Err("the dialog module refused the dialog callbacks".into());
    }
    Ok(())
}

/// A dialog was created; the blocks waiting for its INVITE go to it.
struct Created;

impl DlgCreated for Created {
    fn created(dlg: Dlg<'_>, request: Msg<'_>) {
        let Some(state) = state::get() else { return };
        let Some(dialogs) = state.dialogs.as_ref() else { return };
        LAST_CREATED.with(|c| c.set(Some((request.key(), dlg.id()))));
        if traces_spirals(state) && !dialogs.on_spiraled::<Spiraled>(dlg) {
            crate::log_warn!("cannot register for the spirals of a dialog");
        }
        take_pending(state, dialogs, dlg, request);
    }
}

/// An initial INVITE spiraled back into a dialog (with spirals traced): a
/// dialog trace it started waits in the list, and follows the dialog too.
struct Spiraled;

impl DlgCreated for Spiraled {
    fn created(dlg: Dlg<'_>, request: Msg<'_>) {
        let Some(state) = state::get() else { return };
        let Some(dialogs) = state.dialogs.as_ref() else { return };
        take_pending(state, dialogs, dlg, request);
    }
}

/// The blocks waiting for `request` go to `dlg`, each with the list's
/// reference.
fn take_pending(state: &State, dialogs: &Dialogs, dlg: Dlg<'_>, request: Msg<'_>) {
    let waiting = PENDING.with(|list| {
        let mut list = list.borrow_mut();
        let others = take_others(&mut list, request.key());
        std::mem::replace(&mut *list, others)
    });
    for pending in waiting {
        if let Err(e) = attach(state, dialogs, dlg, pending.info) {
            crate::log_warn!("cannot trace the dialog: {e}");
        }
    }
}

/// The end of a request's script: a block nobody took is released.
struct AfterRequest;

impl ScriptHook for AfterRequest {
    fn run(_message: Option<Msg<'_>>) {
        clear_pending();
    }
}

/// A request within a traced dialog, from either side: traced as received,
/// and, unless it is an ACK, its transaction traced too.
struct Within;

impl DlgHandler for Within {
    type Param = TraceInfo;

    fn request_within(request: Msg<'_>, info: &TraceRef) {
        let Some(state) = state::get() else { return };
        if request.method() != Some(Method::Ack) {
            if let Err(e) = transaction::follow(state, request, info) {
                crate::log_warn!("cannot trace a transaction within a traced dialog: {e}");
            }
        }
        // The rest of the request's script runs with the call current.
        call_context::enter_traced(request, info);
        transaction::trace_received(state, request, Some(info));
    }
}
