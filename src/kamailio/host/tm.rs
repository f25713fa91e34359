//! The tm module's API: transaction callbacks, the lookups of the
//! transaction a CANCEL or an ACK belongs to, and what a callback sees of
//! the transaction (`cell`) and of the event (`tmcb_params`).
//!
//! Only the functions the module calls are taken from `tm_binds`, whose
//! layout changes between releases.

use super::msg::Msg;
use super::shm::{self, ShmRc};
use super::socket::DestInfo;
use super::sys;
use crate::ffi::guard::guard;
use crate::ffi::host_bytes;
use std::marker::PhantomData;
use std::os::raw::c_int;
use std::ptr::NonNull;

/// The tm functions the module uses, bound in mod_init.
#[derive(Clone, Copy)]
pub struct Tm {
    register_tmcb: sys::register_tmcb_f,
    t_gett: sys::tgett_f,
    t_sett: sys::tsett_f,
    t_lookup_original: sys::tlookup_original_f,
    t_lookup_request: sys::tlookup_request_f,
    unref_cell: sys::unref_cell_f,
}

/// Events of a transaction a callback is registered for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TmEvents(u32);

impl TmEvents {
    pub const REQUEST_SENT: TmEvents = TmEvents(sys::TMCB_REQUEST_SENT);
    pub const RESPONSE_IN: TmEvents = TmEvents(sys::TMCB_RESPONSE_IN);
    pub const RESPONSE_SENT: TmEvents = TmEvents(sys::TMCB_RESPONSE_SENT);
    pub const RESPONSE_READY: TmEvents = TmEvents(sys::TMCB_RESPONSE_READY);
    pub const ACK_NEG_IN: TmEvents = TmEvents(sys::TMCB_ACK_NEG_IN);
    pub const E2ECANCEL_IN: TmEvents = TmEvents(sys::TMCB_E2ECANCEL_IN);
    pub const ON_FAILURE: TmEvents = TmEvents(sys::TMCB_ON_FAILURE);
}

impl std::ops::BitOr for TmEvents {
    type Output = TmEvents;

    fn bitor(self, other: TmEvents) -> TmEvents {
        TmEvents(self.0 | other.0)
    }
}

/// The event a callback runs for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TmEventKind {
    RequestSent,
    ResponseIn,
    ResponseSent,
    ResponseReady,
    AckNegIn,
    E2eCancelIn,
    OnFailure,
    Other,
}

/// Why a callback was not registered.
#[derive(Debug, PartialEq, Eq)]
pub enum RegisterError {
    /// tm gave no register function.
    Unavailable,
    /// tm refused the registration.
    Refused,
}

/// What runs when TM creates the transaction of a request it received
/// (`TMCB_REQUEST_IN`), before the request is copied into it: a flag set
/// on the request then is the transaction's request's too.
pub trait TmRequestIn: 'static {
    fn created(cell: Cell<'_>, request: Msg<'_>);
}

/// What a transaction callback does; TM calls it with the parameter given
/// at registration, one owner of which TM holds until it releases it.
pub trait TmHandler: 'static {
    type Param: 'static;
    fn on_event(event: &TmEvent<'_>, param: Option<&ShmRc<Self::Param>>);
}

impl Tm {
    /// tm's API, when the tm module is loaded.
    pub fn bind() -> Option<Tm> {
        let mut binds = sys::tm_binds::default();
        // SAFETY: load_tm_api fills `binds` from the tm module, if it is loaded.
        if unsafe { sys::load_tm_api(&mut binds) } != 0 {
            return None;
        }
        Some(Tm {
            register_tmcb: binds.register_tmcb,
            t_gett: binds.t_gett,
            t_sett: binds.t_sett,
            t_lookup_original: binds.t_lookup_original,
            t_lookup_request: binds.t_lookup_request,
            unref_cell: binds.unref_cell,
        })
    }

    /// Registers `H` for `events` of the transaction of request `msg` (or
    /// of the request, until its transaction exists). TM keeps `param` and
    /// releases it with the transaction, once; a refused registration
    /// releases it here.
    pub fn register<H: TmHandler>(
        &self,
        msg: Msg<'_>,
        events: TmEvents,
        param: Option<ShmRc<H::Param>>,
    ) -> Result<(), RegisterError> {
        let register = self.register_tmcb.ok_or(RegisterError::Unavailable)?;
        let raw = param.map_or(std::ptr::null_mut(), ShmRc::into_raw);
        // SAFETY: a live request; TM keeps the static callback and `raw`,
        // and calls the release function once for it.
        let registered = unsafe {
            register(
                msg.as_ptr(),
                std::ptr::null_mut(),
                events.0 as c_int,
                Some(on_event::<H>),
                raw,
                Some(shm::release::<H::Param>),
            )
        };
        if registered <= 0 {
            // SAFETY: TM did not take the owner given above.
            drop(unsafe { ShmRc::<H::Param>::from_raw(raw) });
            return Err(RegisterError::Refused);
        }
        Ok(())
    }

    /// Registers `H` for every transaction TM creates for a request it
    /// received. TM's list of these lives in its shared memory, made in its
    /// mod_init: call this after every module's mod_init (child_init's
    /// PROC_INIT), before Kamailio forks.
    pub fn on_request_in<H: TmRequestIn>(&self) -> Result<(), RegisterError> {
        let register = self.register_tmcb.ok_or(RegisterError::Unavailable)?;
        // SAFETY: a static callback without a parameter; TM keeps it.
        let registered = unsafe {
            register(
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                sys::TMCB_REQUEST_IN as c_int,
                Some(request_in::<H>),
                std::ptr::null_mut(),
                None,
            )
        };
        if registered <= 0 {
            return Err(RegisterError::Refused);
        }
        Ok(())
    }

    /// As [`Tm::register`], on transaction `cell` of request `msg`, which
    /// the caller holds: for a callback of [`TmRequestIn`], when the
    /// transaction is not yet the current one.
    pub fn register_on<H: TmHandler>(
        &self,
        cell: Cell<'_>,
        msg: Msg<'_>,
        events: TmEvents,
        param: Option<ShmRc<H::Param>>,
    ) -> Result<(), RegisterError> {
        let register = self.register_tmcb.ok_or(RegisterError::Unavailable)?;
        let raw = param.map_or(std::ptr::null_mut(), ShmRc::into_raw);
        // SAFETY: a live request and its held transaction; TM keeps the
        // static callback and `raw`, and calls the release function once.
        let registered = unsafe {
            register(
                msg.as_ptr(),
                cell.ptr.as_ptr(),
                events.0 as c_int,
                Some(on_event::<H>),
                raw,
                Some(shm::release::<H::Param>),
            )
        };
        if registered <= 0 {
            // SAFETY: TM did not take the owner given above.
            drop(unsafe { ShmRc::<H::Param>::from_raw(raw) });
            return Err(RegisterError::Refused);
        }
        Ok(())
    }

    /// Runs `f` with the INVITE transaction that `cancel` cancels, when TM
    /// finds one.
    pub fn with_cancelled<R>(&self, cancel: Msg<'_>, f: impl FnOnce(Cell<'_>) -> R) -> Option<R> {
        let (Some(lookup), Some(unref)) = (self.t_lookup_original, self.unref_cell) else { return None };
        if self.t_gett.is_none() || self.t_sett.is_none() {
            return None;
        }
        // SAFETY: TM's lookup on a live request; a found cell is referenced
        // by the lookup, and released here after `f`.
        unsafe {
            let invite = lookup(cancel.as_ptr());
            let cell = Cell::from_ptr(invite)?;
            let result = f(cell);
            unref(invite);
            Some(result)
        }
    }

    /// Runs `f` with the transaction whose negative reply `ack`
    /// acknowledges, when TM finds one. The current transaction is left as
    /// it was.
    pub fn with_acked<R>(&self, ack: Msg<'_>, f: impl FnOnce(Cell<'_>) -> R) -> Option<R> {
        let (Some(lookup), Some(unref), Some(gett), Some(sett)) =
            (self.t_lookup_request, self.unref_cell, self.t_gett, self.t_sett)
        else {
            return None;
        };
        // SAFETY: TM's lookup on a live request; when it returns 1 (the ACK
        // of a negative reply) it has set its transaction, referenced, as
        // the current one, released here after `f`. The current
        // transaction is restored afterwards.
        unsafe {
            let current = gett();
            let mut canceled: c_int = 0;
            let mut result = None;
            if lookup(ack.as_ptr(), 0, &mut canceled) == 1 {
                let t = gett();
                if let Some(cell) = Cell::from_ptr(t) {
                    result = Some(f(cell));
                    unref(t);
                }
            }
            sett(current, sys::T_BR_UNDEFINED);
            result
        }
    }
}

/// A transaction, while a callback or a lookup holds it.
#[derive(Clone, Copy)]
pub struct Cell<'a> {
    ptr: NonNull<sys::cell>,
    _life: PhantomData<&'a sys::cell>,
}

impl<'a> Cell<'a> {
    /// `None` for null and for T_UNDEFINED (-1).
    ///
    /// # Safety
    /// Otherwise `p` must be a transaction held for `'a`.
    unsafe fn from_ptr(p: *mut sys::cell) -> Option<Cell<'a>> {
        if p as isize == -1 {
            return None;
        }
        NonNull::new(p).map(|ptr| Cell { ptr, _life: PhantomData })
    }

    fn raw(&self) -> &sys::cell {
        // SAFETY: held for 'a (`from_ptr`); read one field at a time.
        unsafe { self.ptr.as_ref() }
    }

    /// The request that created the transaction; none for a local one.
    pub fn request(self) -> Option<Msg<'a>> {
        // SAFETY: the transaction's request lives as long as it.
        unsafe { Msg::from_ptr(self.raw().uas.request) }
    }

    pub fn is_invite(self) -> bool {
        u32::from(self.raw().flags) & sys::T_IS_INVITE_FLAG != 0
    }

    /// The reply the transaction sent last, as TM keeps it to retransmit.
    pub fn response(self) -> Option<&'a [u8]> {
        let response = &self.raw().uas.response;
        // SAFETY: TM's reply buffer holds `buffer_len` bytes while the
        // transaction is held.
        unsafe { host_bytes(response.buffer, response.buffer_len) }
    }
}

/// What a transaction callback sees.
pub struct TmEvent<'a> {
    cell: Option<Cell<'a>>,
    kind: TmEventKind,
    ps: &'a sys::tmcb_params,
}

impl<'a> TmEvent<'a> {
    pub fn kind(&self) -> TmEventKind {
        self.kind
    }

    pub fn cell(&self) -> Option<Cell<'a>> {
        self.cell
    }

    /// Whether TM is retransmitting what it sent before.
    pub fn is_retransmission(&self) -> bool {
        u32::from(self.ps.flags) & sys::TMCB_RETR_F != 0
    }

    pub fn request(&self) -> Option<Msg<'a>> {
        // SAFETY: TM passes null or a message live during the callback.
        unsafe { Msg::from_ptr(self.ps.req) }
    }

    /// The reply, when there is a real one (not null, not a faked reply).
    pub fn reply(&self) -> Option<Msg<'a>> {
        // SAFETY: as above; a faked reply reads as none.
        unsafe { Msg::from_ptr(self.ps.rpl) }
    }

    /// The bytes TM sends, for the events that send.
    pub fn sent(&self) -> Option<&'a [u8]> {
        // SAFETY: TM's send buffer holds `len` bytes during the callback.
        unsafe { host_bytes(self.ps.send_buf.s, self.ps.send_buf.len) }
    }

    pub fn dest(&self) -> Option<DestInfo<'a>> {
        // SAFETY: null or the destination of what TM sends, with a null or
        // listen send socket, live during the callback.
        unsafe { DestInfo::from_ptr(self.ps.dst) }
    }
}

fn kind_of(kind: c_int) -> TmEventKind {
    match kind as u32 {
        sys::TMCB_REQUEST_SENT => TmEventKind::RequestSent,
        sys::TMCB_RESPONSE_IN => TmEventKind::ResponseIn,
        sys::TMCB_RESPONSE_SENT => TmEventKind::ResponseSent,
        sys::TMCB_RESPONSE_READY => TmEventKind::ResponseReady,
        sys::TMCB_ACK_NEG_IN => TmEventKind::AckNegIn,
        sys::TMCB_E2ECANCEL_IN => TmEventKind::E2eCancelIn,
        sys::TMCB_ON_FAILURE => TmEventKind::OnFailure,
        _ => TmEventKind::Other,
    }
}

unsafe extern "C" fn request_in<H: TmRequestIn>(t: *mut sys::cell, _kind: c_int, ps: *mut sys::tmcb_params) {
    guard("the new transaction callback", (), || {
        // SAFETY: TM passes live parameters with the request, and the new
        // transaction, for the callback's duration.
        let request = unsafe { ps.as_ref().and_then(|ps| Msg::from_ptr(ps.req)) };
        // SAFETY: as above.
        let cell = unsafe { Cell::from_ptr(t) };
        if let (Some(cell), Some(request)) = (cell, request) {
            H::created(cell, request);
        }
    })
}

unsafe extern "C" fn on_event<H: TmHandler>(t: *mut sys::cell, kind: c_int, ps: *mut sys::tmcb_params) {
    guard("the transaction callback", (), || {
        // SAFETY: TM passes live parameters for the callback's duration.
        let Some(ps) = (unsafe { ps.as_ref() }) else { return };
        // SAFETY: `param` points at the slot TM keeps the registered owner
        // in, which it holds until it calls the release function.
        let param = unsafe { ps.param.as_ref().and_then(|slot| ShmRc::borrow_slot(slot)) };
        // SAFETY: TM holds the transaction during the callback.
        let cell = unsafe { Cell::from_ptr(t) };
        H::on_event(&TmEvent { cell, kind: kind_of(kind), ps }, param);
    })
}
