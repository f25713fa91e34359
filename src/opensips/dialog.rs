//! The dialog scope, `trace(id, "d")` on an initial INVITE: the dialog
//! module's callbacks trace each request within the dialog and its
//! transaction, as OpenSIPS's tracer does; the INVITE's own transaction is
//! traced as in the transaction scope, and a CANCEL of it too.

use crate::ffi::guard::guard;
use crate::opensips::sys;
use crate::opensips::tracer::{self, Trace};
use crate::opensips::transaction::{self, Held};
use crate::opensips::{module, trace_api};
use std::os::raw::c_int;
use std::sync::OnceLock;

struct Dialog(sys::dlg_binds);
// SAFETY: a table of function pointers filled once before forking.
unsafe impl Sync for Dialog {}
unsafe impl Send for Dialog {}

static DIALOG: OnceLock<Option<Dialog>> = OnceLock::new();

/// Binds the dialog module if it is loaded. From mod_init.
pub fn init() {
    // SAFETY: looking up another module's export by name.
    let load = unsafe { sys::find_export(c"load_dlg".as_ptr(), 0) };
    let binds = load.and_then(|f| {
        let mut binds = sys::dlg_binds::default();
        // SAFETY: the dialog module's load_dlg has this signature.
        let load: sys::load_dlg_f = unsafe { std::mem::transmute(f) };
        load.is_some_and(|load| unsafe { load(&mut binds) } >= 0).then_some(Dialog(binds))
    });
    let _ = DIALOG.set(binds);
}

pub fn loaded() -> bool {
    DIALOG.get().is_some_and(Option::is_some)
}

/// Starts tracing the dialog of `msg`, an initial INVITE, and its
/// transaction. Returns false when the dialog or tm module refuses.
pub fn start(msg: &mut sys::sip_msg, trace: Trace<'_>) -> bool {
    let Some(Some(dialog)) = DIALOG.get() else { return false };
    let (Some(create), Some(get), Some(register)) =
        (dialog.0.create_dlg, dialog.0.get_dlg, dialog.0.register_dlgcb)
    else {
        return false;
    };
    // SAFETY: the dialog module's API on the message being processed.
    if unsafe { create(msg, 0) } < 1 {
        return false;
    }
    let dlg = unsafe { get() };
    if dlg.is_null() {
        return false;
    }
    // Held by the TERMINATED callback, whose release frees it; the other
    // callbacks run before it.
    let Some(info) = Held::new(trace, 1) else { return false };
    // SAFETY: registering on the dialog just made.
    let within =
        unsafe { register(dlg, sys::DLGCB_REQ_WITHIN as c_int, Some(in_dialog), info.param(), None) };
    let end = unsafe {
        register(
            dlg,
            sys::DLGCB_TERMINATED as c_int,
            Some(in_dialog),
            info.param(),
            Some(transaction::release),
        )
    };
    if end != 0 {
        // SAFETY: nobody else holds the block.
        unsafe { transaction::release(info.param()) };
        return false;
    }
    within == 0
        && transaction::start(msg, trace)
        && transaction::register(msg, sys::TMCB_TRANS_CANCELLED, Some(cancelled), info.param())
}

/// Traces `msg`, received within the dialog, and its transaction.
fn trace_request(info: Held, msg: &mut sys::sip_msg) {
    let Some(module) = module::get() else { return };
    let trace = info.trace();
    trace_api::enter(msg.id, trace.id, trace.types);
    transaction::start(msg, trace);
    tracer::incoming(module, trace, msg, false);
}

unsafe extern "C" fn in_dialog(_dlg: *mut sys::dlg_cell, _type: c_int, params: *mut sys::dlg_cb_params) {
    guard("dialog callback", (), || {
        // SAFETY: the dialog module's parameters for our registration.
        let Some(params) = (unsafe { params.as_ref() }) else { return };
        let Some(info) = (unsafe { Held::from_param(*params.param) }) else { return };
        // SAFETY: the message of the callback, when there is one.
        let Some(msg) = (unsafe { params.msg.as_mut() }) else { return };
        // A message the dialog module made up (to end a dialog) is not traced.
        if unsafe { sys::is_dummy_sip_msg(msg) } == 0 {
            return;
        }
        trace_request(info, msg);
    })
}

unsafe extern "C" fn cancelled(_t: *mut sys::cell, _type: c_int, ps: *mut sys::tmcb_params) {
    guard("tm callback", (), || {
        // SAFETY: tm's parameters for our registration.
        let Some(ps) = (unsafe { ps.as_ref() }) else { return };
        let Some(info) = (unsafe { Held::from_param(*ps.param) }) else { return };
        // SAFETY: the CANCEL, when tm passes it.
        if let Some(cancel) = unsafe { ps.req.as_mut() } {
            trace_request(info, cancel);
        }
    })
}
