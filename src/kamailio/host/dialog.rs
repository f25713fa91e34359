//! The dialog module's API: the dialog of a request, callbacks for the
//! dialogs it creates and for the requests within one.

use super::msg::Msg;
use super::shm::{self, ShmRc};
use super::sys;
use crate::ffi::guard::guard;
use std::marker::PhantomData;
use std::os::raw::c_int;
use std::ptr::NonNull;

/// The dialog functions the module uses, bound in mod_init.
#[derive(Clone, Copy)]
pub struct Dialogs {
    register: unsafe extern "C" fn(
        *mut sys::dlg_cell,
        c_int,
        sys::dialog_cb,
        *mut std::ffi::c_void,
        sys::param_free_cb,
    ) -> c_int,
    get: unsafe extern "C" fn(*mut sys::sip_msg) -> *mut sys::dlg_cell,
    release: unsafe extern "C" fn(*mut sys::dlg_cell),
}

/// A dialog, while the dialog module or a lookup holds it.
#[derive(Clone, Copy)]
pub struct Dlg<'a> {
    ptr: NonNull<sys::dlg_cell>,
    _life: PhantomData<&'a sys::dlg_cell>,
}

impl Dlg<'_> {
    /// The dialog's identity while it lives: its address.
    pub fn id(self) -> usize {
        self.ptr.as_ptr() as usize
    }
}

/// What happens when the dialog module creates a dialog, or when an
/// initial INVITE spirals back into a dialog (`DLGCB_SPIRALED`).
pub trait DlgCreated: 'static {
    fn created(dlg: Dlg<'_>, request: Msg<'_>);
}

/// What a dialog callback does for a request within its dialog, with the
/// parameter given at registration.
pub trait DlgHandler: 'static {
    type Param: 'static;
    fn request_within(request: Msg<'_>, param: &ShmRc<Self::Param>);
}

/// The dialog events of a traced dialog: every request within it (the
/// BYE is TERMINATED's), and with CONFIRMED the ACK that confirms it.
const WITHIN: u32 = sys::DLGCB_REQ_WITHIN | sys::DLGCB_TERMINATED;
const CONFIRMED: u32 = sys::DLGCB_CONFIRMED;

impl Dialogs {
    /// The dialog module's API: `Ok(None)` when it is not loaded.
    pub fn bind() -> Result<Option<Dialogs>, String> {
        let mut binds = sys::dlg_binds::default();
        // SAFETY: load_dlg_api fills `binds` from the dialog module, if loaded.
        if unsafe { sys::load_dlg_api(&mut binds) } != 0 {
            return Ok(None);
        }
        let register = binds.register_dlgcb.ok_or("the dialog module gave no register_dlgcb")?;
        let (Some(get), Some(release)) = (binds.get_dlg, binds.release_dlg) else {
            return Err("the dialog module gave no get_dlg/release_dlg".into());
        };
        Ok(Some(Dialogs { register, get, release }))
    }

    /// Registers `H` for every dialog the module creates.
    pub fn on_created<H: DlgCreated>(&self) -> bool {
        // SAFETY: a static function and no parameter to free.
        unsafe {
            (self.register)(
                std::ptr::null_mut(),
                sys::DLGCB_CREATED as c_int,
                Some(created::<H>),
                std::ptr::null_mut(),
                None,
            ) == 0
        }
    }

    /// Registers `H` for the initial INVITEs that spiral back into `dlg`
    /// (the same INVITE, routed to this server again).
    pub fn on_spiraled<H: DlgCreated>(&self, dlg: Dlg<'_>) -> bool {
        // SAFETY: a held dialog; a static function and no parameter to free.
        unsafe {
            (self.register)(
                dlg.ptr.as_ptr(),
                sys::DLGCB_SPIRALED as c_int,
                Some(created::<H>),
                std::ptr::null_mut(),
                None,
            ) == 0
        }
    }

    /// Runs `f` with the dialog of request `msg`, if it has one yet.
    pub fn with_dialog_of<R>(&self, msg: Msg<'_>, f: impl FnOnce(Option<Dlg<'_>>) -> R) -> R {
        // SAFETY: the dialog module looks up the dialog of a live request
        // and returns it referenced, or null.
        let dlg = unsafe { (self.get)(msg.as_ptr()) };
        let Some(ptr) = NonNull::new(dlg) else { return f(None) };
        let result = f(Some(Dlg { ptr, _life: PhantomData }));
        // SAFETY: the reference the lookup took.
        unsafe { (self.release)(dlg) };
        result
    }

    /// Registers `H` for the requests within `dlg`, and with `confirmed`
    /// for the ACK that confirms it. The dialog keeps `param` and releases
    /// it once, when it is destroyed; a refused registration releases it
    /// here.
    pub fn attach<H: DlgHandler>(&self, dlg: Dlg<'_>, param: ShmRc<H::Param>, confirmed: bool) -> bool {
        let events = if confirmed { WITHIN | CONFIRMED } else { WITHIN };
        let raw = param.into_raw();
        // SAFETY: a held dialog; it keeps the static callback and `raw`,
        // and calls the release function once for it.
        let failed = unsafe {
            (self.register)(
                dlg.ptr.as_ptr(),
                events as c_int,
                Some(within::<H>),
                raw,
                Some(shm::release::<H::Param>),
            )
        } != 0;
        if failed {
            // SAFETY: the dialog module did not take the owner.
            drop(unsafe { ShmRc::<H::Param>::from_raw(raw) });
        }
        !failed
    }
}

unsafe extern "C" fn created<H: DlgCreated>(
    dlg: *mut sys::dlg_cell,
    _kind: c_int,
    params: *mut sys::dlg_cb_params,
) {
    guard("the dialog creation or spiral callback", (), || {
        // SAFETY: the dialog module passes live parameters with the request
        // that created the dialog, and the dialog, held during the call.
        let request = unsafe { params.as_ref().and_then(|p| Msg::from_ptr(p.req)) };
        let (Some(request), Some(ptr)) = (request, NonNull::new(dlg)) else { return };
        H::created(Dlg { ptr, _life: PhantomData }, request);
    })
}

unsafe extern "C" fn within<H: DlgHandler>(
    _dlg: *mut sys::dlg_cell,
    _kind: c_int,
    params: *mut sys::dlg_cb_params,
) {
    guard("the dialog callback", (), || {
        // SAFETY: the dialog module passes live parameters whose `param`
        // points at the slot holding the registered owner.
        let Some(p) = (unsafe { params.as_ref() }) else { return };
        // SAFETY: as above; the dialog holds the owner during the callback.
        let param = unsafe { p.param.as_ref().and_then(|slot| ShmRc::<H::Param>::borrow_slot(slot)) };
        // No request: the dialog module ends the dialog itself (a timeout).
        // SAFETY: null or the live request within the dialog.
        let request = unsafe { Msg::from_ptr(p.req) };
        if let (Some(request), Some(param)) = (request, param) {
            H::request_within(request, param);
        }
    })
}
