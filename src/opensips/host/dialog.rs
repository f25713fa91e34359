//! The dialog module's API: whether it is loaded, making the dialog of an
//! initial INVITE, and callbacks on it that each hold a reference to a
//! trace (`Held`), released with the dialog.

use super::held::{self, Held};
use super::msg::Msg;
use super::sys;
use crate::ffi::guard::guard;
use crate::ffi::Settled;
use std::os::raw::c_int;
use std::ptr::NonNull;

static DIALOG: Settled<sys::dlg_binds> = Settled::new();

/// Binds the dialog module if it is loaded. From mod_init.
pub fn bind() {
    // SAFETY: the dialog module's `load_dlg` fills a `dlg_binds`.
    if let Ok(Some(api)) = unsafe { super::bind::<sys::dlg_binds>(c"load_dlg") } {
        DIALOG.set(api);
    }
}

pub fn loaded() -> bool {
    DIALOG.get().is_some()
}

/// A dialog the dialog module keeps.
pub struct Dialog(NonNull<sys::dlg_cell>);

#[derive(Debug, Clone, Copy)]
pub enum Event {
    /// A request within the dialog.
    RequestWithin,
    /// The dialog ended (with its BYE, when there is one).
    Terminated,
}

/// Code the dialog module calls back, with the message of the event.
pub trait Handler {
    fn run(msg: &mut Msg, held: &Held);
}

/// Makes the dialog of `msg`, an initial INVITE; `None` when the dialog
/// module refuses or is not loaded.
pub fn create(msg: &mut Msg) -> Option<Dialog> {
    let api = DIALOG.get()?;
    let (create, get) = (api.create_dlg?, api.get_dlg?);
    // SAFETY: the dialog module's API on the message being processed.
    if unsafe { create(msg.as_ptr(), 0) } < 1 {
        return None;
    }
    // SAFETY: the dialog just made for the message being processed.
    NonNull::new(unsafe { get() }).map(Dialog)
}

impl Dialog {
    /// Registers `H` for `event`, holding `held` until the dialog is
    /// destroyed. Returns false when the dialog module refuses.
    pub fn register<H: Handler>(&self, event: Event, held: Held) -> bool {
        let Some(register) = DIALOG.get().and_then(|api| api.register_dlgcb) else { return false };
        let kind = match event {
            Event::RequestWithin => sys::DLGCB_REQ_WITHIN,
            Event::Terminated => sys::DLGCB_TERMINATED,
        } as c_int;
        let param = held.into_param();
        // SAFETY: registering on a live dialog; the dialog module calls
        // `release` with `param` when it destroys the dialog.
        let ok =
            unsafe { register(self.0.as_ptr(), kind, Some(callback::<H>), param, Some(held::release)) } == 0;
        if !ok {
            // SAFETY: the dialog module did not take the reference.
            drop(unsafe { Held::from_param(param) });
        }
        ok
    }
}

unsafe extern "C" fn callback<H: Handler>(
    _dlg: *mut sys::dlg_cell,
    _kind: c_int,
    params: *mut sys::dlg_cb_params,
) {
    guard("dialog callback", (), || {
        // SAFETY: the dialog module's parameters for our registration.
        let Some(params) = (unsafe { params.as_ref() }) else { return };
        // SAFETY: the parameter of our registration, kept until the dialog goes.
        let Some(held) = (unsafe { params.param.as_ref() }).and_then(|p| unsafe { Held::borrow_param(*p) })
        else {
            return;
        };
        // SAFETY: the message of the callback, when there is one.
        let Some(msg) = (unsafe { Msg::from_ptr(params.msg) }) else { return };
        H::run(msg, &held)
    })
}
