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
//! the block waits in a per-process slot for the dialog module's CREATED
//! callback, which runs while the same request is routed; the slot is
//! emptied when that request's script ends, whatever happened.

use crate::ffi::guard::guard;
use crate::kamailio::sys;
use crate::kamailio::trace_info::{release_callback, TraceInfo};
use crate::kamailio::{call_context, transaction};
use std::cell::Cell;
use std::os::raw::{c_int, c_uint, c_void};
use std::sync::OnceLock;

/// The dialog events a traced dialog listens to: every request within it.
const DIALOG_EVENTS: u32 = sys::DLGCB_CONFIRMED | sys::DLGCB_REQ_WITHIN | sys::DLGCB_TERMINATED;

/// The dialog module's API, bound in mod_init.
struct Dialog(sys::dlg_binds);

// SAFETY: a table of function pointers the dialog module fills once, in
// mod_init before Kamailio forks; only read afterwards.
unsafe impl Sync for Dialog {}
unsafe impl Send for Dialog {}

static DIALOG: OnceLock<Dialog> = OnceLock::new();

fn api() -> Option<&'static sys::dlg_binds> {
    DIALOG.get().map(|d| &d.0)
}

pub fn available() -> bool {
    api().is_some()
}

/// A block waiting for the dialog of the request being routed, by that
/// request's id and process.
struct Pending {
    msg_id: c_uint,
    pid: c_int,
    info: *mut TraceInfo,
}

thread_local! {
    // Kamailio's workers are single-threaded processes; the slot is the
    // process's own.
    static PENDING: Cell<Option<Pending>> = const { Cell::new(None) };
}

/// Binds the dialog module, when it is loaded, and registers for the
/// dialogs it creates.
pub fn mod_init() -> Result<(), String> {
    let mut binds = sys::dlg_binds::default();
    // SAFETY: load_dlg_api fills `binds` from the dialog module, if loaded.
    if unsafe { sys::load_dlg_api(&mut binds) } != 0 {
        crate::log_info!(
            "the dialog module is not loaded; dialog tracing will trace the INVITE's transaction"
        );
        return Ok(());
    }
    let register = binds.register_dlgcb.ok_or("the dialog module gave no register_dlgcb")?;
    if binds.get_dlg.is_none() || binds.release_dlg.is_none() {
        return Err("the dialog module gave no get_dlg/release_dlg".into());
    }
    // SAFETY: a static function and no parameter to free.
    if unsafe {
        register(
            std::ptr::null_mut(),
            sys::DLGCB_CREATED as c_int,
            Some(on_created),
            std::ptr::null_mut(),
            None,
        )
    } != 0
    {
        return Err("cannot register for the dialogs the dialog module creates".into());
    }
    // SAFETY: a static function; Kamailio keeps the registration.
    if unsafe {
        sys::register_script_cb(
            Some(after_request_script),
            sys::POST_SCRIPT_CB | sys::script_cb_flag_REQUEST_CB,
            std::ptr::null_mut(),
        )
    } != 0
    {
        return Err("cannot register the end-of-script callback".into());
    }
    let _ = DIALOG.set(Dialog(binds));
    Ok(())
}

/// Makes the dialog of initial INVITE `msg` a holder of `info`: at once if
/// the dialog exists, else when the dialog module creates it.
///
/// # Safety
/// `msg` must be the live request being routed; `info` a block the caller
/// holds.
pub unsafe fn start(msg: *mut sys::sip_msg, info: *mut TraceInfo) -> Result<(), String> {
    let api = api().ok_or("the dialog module is not loaded")?;
    let (Some(get), Some(release)) = (api.get_dlg, api.release_dlg) else { return Ok(()) };
    // SAFETY: the dialog module looks up the dialog of a live request and
    // returns it referenced, or null.
    let dlg = unsafe { get(msg) };
    // SAFETY: the caller holds `info`; the new reference goes to the dialog
    // or to the slot.
    unsafe { TraceInfo::retain(info) };
    if !dlg.is_null() {
        // SAFETY: a referenced dialog; `attach` takes the new reference.
        let result = unsafe { attach(dlg, info) };
        unsafe { release(dlg) };
        return result;
    }
    // SAFETY: per the contract.
    let (msg_id, pid) = unsafe { ((*msg).id, (*msg).pid) };
    replace_pending(Some(Pending { msg_id, pid, info }));
    Ok(())
}

/// Puts `new` in the slot, releasing what waited there before.
fn replace_pending(new: Option<Pending>) {
    if let Some(old) = PENDING.with(|slot| slot.replace(new)) {
        // SAFETY: the slot held one reference.
        unsafe { TraceInfo::release(old.info) };
    }
}

/// Registers the dialog callbacks with `info`, whose reference the caller
/// hands over.
///
/// # Safety
/// `dlg` must be a live dialog, `info` a live block.
unsafe fn attach(dlg: *mut sys::dlg_cell, info: *mut TraceInfo) -> Result<(), String> {
    let register = api().and_then(|a| a.register_dlgcb).ok_or("the dialog module is not loaded")?;
    // SAFETY: the dialog keeps the callback and releases `info` once, when
    // the dialog is destroyed.
    let failed = unsafe {
        register(
            dlg,
            DIALOG_EVENTS as c_int,
            Some(on_dialog_event),
            info as *mut c_void,
            Some(release_callback),
        )
    } != 0;
    if failed {
        // SAFETY: the dialog module did not take the reference.
        unsafe { TraceInfo::release(info) };
        return Err("the dialog module refused the dialog callbacks".into());
    }
    Ok(())
}

/// A dialog was created; if its INVITE is the one waiting in the slot, the
/// dialog takes over the slot's reference.
unsafe extern "C" fn on_created(dlg: *mut sys::dlg_cell, _kind: c_int, params: *mut sys::dlg_cb_params) {
    guard("the dialog creation callback", (), || {
        // SAFETY: the dialog module passes live parameters.
        let Some(req) = (unsafe { params.as_ref() }).and_then(|p| unsafe { p.req.as_ref() }) else { return };
        let Some(pending) = PENDING.with(|slot| slot.take()) else { return };
        if pending.msg_id != req.id || pending.pid != req.pid {
            PENDING.with(|slot| slot.set(Some(pending)));
            return;
        }
        // SAFETY: a live dialog; the slot's reference moves to it.
        if let Err(e) = unsafe { attach(dlg, pending.info) } {
            crate::log_warn!("cannot trace the dialog: {e}");
        }
    })
}

/// The end of a request's script: a block nobody took is released.
unsafe extern "C" fn after_request_script(
    _msg: *mut sys::sip_msg,
    _flags: c_uint,
    _param: *mut c_void,
) -> c_int {
    guard("the end-of-script callback", 1, || {
        replace_pending(None);
        // Anything else than 0 lets Kamailio go on.
        1
    })
}

/// A request within a traced dialog, from either side: traced as received,
/// and, unless it is an ACK, its transaction traced too.
unsafe extern "C" fn on_dialog_event(
    _dlg: *mut sys::dlg_cell,
    _kind: c_int,
    params: *mut sys::dlg_cb_params,
) {
    guard("the dialog callback", (), || {
        // SAFETY: the dialog module passes live parameters whose `param`
        // points at the block registered with the callback.
        let Some(p) = (unsafe { params.as_ref() }) else { return };
        let info = unsafe { p.param.as_ref() }.map_or(std::ptr::null_mut(), |i| *i as *mut TraceInfo);
        // No request: the dialog module ends the dialog itself (a timeout).
        let req = p.req;
        // SAFETY: as above; the dialog holds `info` during the callback.
        let (Some(r), Some(info_ref)) = (unsafe { req.as_ref() }, unsafe { info.as_ref() }) else { return };
        // SAFETY: a live request.
        let is_ack = r.first_line.type_ == sys::SIP_REQUEST as _
            && unsafe { r.first_line.u.request.method_value } as u32 == sys::request_method_METHOD_ACK;
        if !is_ack {
            // SAFETY: a live request and a held block.
            if let Err(e) = unsafe { transaction::follow(req, info) } {
                crate::log_warn!("cannot trace a transaction within a traced dialog: {e}");
            }
        }
        // SAFETY: a live request, whose script goes on with the call current.
        unsafe {
            call_context::enter_traced(req, info_ref);
            transaction::trace_received(req, Some(info_ref));
        }
    })
}
