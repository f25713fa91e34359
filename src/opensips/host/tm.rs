//! tm's API: whether tm is loaded, its transactions, and callbacks on a
//! transaction that each hold a reference to a trace (`Held`).

use super::held::{self, Held};
use super::msg::{Connection, Msg, Sent};
use super::sys;
use crate::ffi::guard::guard;
use crate::ffi::Settled;
use std::marker::PhantomData;
use std::os::raw::c_int;
use std::ptr::NonNull;

static TM: Settled<sys::tm_binds> = Settled::new();

/// Binds tm if it is loaded. From mod_init.
pub fn bind() {
    // SAFETY: tm's `load_tm` fills a `tm_binds`.
    if let Ok(Some(api)) = unsafe { super::bind::<sys::tm_binds>(c"load_tm") } {
        TM.set(api);
    }
}

pub fn loaded() -> bool {
    TM.get().is_some()
}

/// A transaction of tm.
#[derive(Clone, Copy)]
pub struct Transaction<'a>(NonNull<sys::cell>, PhantomData<&'a sys::cell>);

impl Transaction<'_> {
    /// # Safety
    /// `t` must be null or a transaction of tm that lives for `'a`.
    pub(super) unsafe fn from_ptr<'a>(t: *mut sys::cell) -> Option<Transaction<'a>> {
        NonNull::new(t).map(|t| Transaction(t, PhantomData))
    }

    fn cell(&self) -> &sys::cell {
        // SAFETY: a live transaction (see from_ptr).
        unsafe { self.0.as_ref() }
    }

    /// Started by this server (b2b_entities' calls out, say), not by a
    /// request it received.
    pub fn is_local(&self) -> bool {
        self.cell().flags & sys::T_IS_LOCAL_FLAG != 0
    }

    /// Whether tm keeps a request this server received for it.
    pub fn has_request(&self) -> bool {
        !self.cell().uas.request.is_null()
    }
}

/// What a callback is registered on: the transaction of a message being
/// processed, or a transaction.
pub enum On<'a> {
    Msg(&'a mut Msg),
    Transaction(Transaction<'a>),
}

#[derive(Debug, Clone, Copy)]
pub enum Event {
    /// A message the transaction received (a retransmission, an ACK, a
    /// CANCEL, a reply).
    MatchedIn,
    /// A request or reply the transaction sent.
    SentOut,
    /// The transaction was cancelled.
    Cancelled,
}

impl Event {
    fn kind(self) -> c_int {
        (match self {
            Event::MatchedIn => sys::TMCB_MSG_MATCHED_IN,
            Event::SentOut => sys::TMCB_MSG_SENT_OUT,
            Event::Cancelled => sys::TMCB_TRANS_CANCELLED,
        }) as c_int
    }
}

/// What tm tells a callback.
pub struct Callback<'a> {
    /// The trace the registration holds.
    pub held: &'a Held,
    pub transaction: Option<Transaction<'a>>,
    /// The request: received, sent, or cancelling.
    pub request: Option<&'a mut Msg>,
    /// The reply received or relayed; `None` for one tm made up.
    pub reply: Option<&'a Msg>,
    /// For `SentOut`: what was sent, and where.
    pub sent: Option<Sent<'a>>,
}

/// Code that tm calls back.
pub trait Handler {
    fn run(callback: Callback<'_>);
}

/// Registers `H` for `event` on `on`, holding `held` until tm releases it.
/// Returns false when tm refuses (or is not loaded).
pub fn register<H: Handler>(on: &mut On<'_>, event: Event, held: Held) -> bool {
    let Some(register) = TM.get().and_then(|tm| tm.register_tmcb) else { return false };
    let (msg, t) = match on {
        On::Msg(msg) => (msg.as_ptr(), std::ptr::null_mut()),
        On::Transaction(t) => (std::ptr::null_mut(), t.0.as_ptr()),
    };
    let param = held.into_param();
    // SAFETY: registering on the message being processed or on a live
    // transaction; when it takes the registration, tm calls `release` with `param` once.
    let ok = unsafe { register(msg, t, event.kind(), Some(callback::<H>), param, Some(held::release)) } > 0;
    if !ok {
        // SAFETY: tm did not take the reference; it is given back once.
        drop(unsafe { Held::from_param(param) });
    }
    ok
}

unsafe extern "C" fn callback<H: Handler>(t: *mut sys::cell, kind: c_int, ps: *mut sys::tmcb_params) {
    guard("tm callback", (), || {
        // SAFETY: tm's parameters for our registration.
        let Some(ps) = (unsafe { ps.as_ref() }) else { return };
        // SAFETY: the parameter of our registration, which tm keeps until
        // the transaction is released.
        let Some(held) = (unsafe { ps.param.as_ref() }).and_then(|p| unsafe { Held::borrow_param(*p) })
        else {
            return;
        };
        let callback = Callback {
            held: &held,
            // SAFETY: tm's transaction, or null.
            transaction: unsafe { Transaction::from_ptr(t) },
            // SAFETY: the messages of the callback, when they are messages.
            request: unsafe { Msg::from_tm(ps.req) },
            // SAFETY: as above; a reply is a message apart from the request.
            reply: unsafe { Msg::from_tm(ps.rpl) }.map(|m| &*m),
            // SAFETY: for a message sent, tm gives its buffer and its
            // destination (or null).
            sent: (kind as u32 == sys::TMCB_MSG_SENT_OUT).then(|| unsafe { sent(ps) }).flatten(),
        };
        H::run(callback)
    })
}

/// What tm says it sent: the buffer (`extra1`) and where (`extra2`). The
/// connection is, as OpenSIPS's tracer takes it, the last one this process
/// sent over for a request, and the destination's for a reply.
///
/// # Safety
/// `ps` must be tm's parameters of a TMCB_MSG_SENT_OUT callback.
unsafe fn sent(ps: &sys::tmcb_params) -> Option<Sent<'_>> {
    // SAFETY: per the contract, a `str` or null.
    let bytes =
        unsafe { (ps.extra1 as *const sys::str_).as_ref() }.and_then(|s| unsafe { super::bytes(s) })?;
    // SAFETY: per the contract, a `dest_info` or null.
    let sent = match unsafe { (ps.extra2 as *const sys::dest_info).as_ref() } {
        Some(d) => {
            let id = if ps.req.is_null() {
                d.proto_reserved1
            } else {
                // SAFETY: the core's global, which this process's last
                // send over TCP set.
                unsafe { std::ptr::addr_of!(sys::last_outgoing_tcp_id).read() }
            };
            let connection = Connection::of(d.proto, id);
            // SAFETY: the destination's socket and address, valid during the callback.
            unsafe { Sent::new(bytes, d.send_sock, d.proto, &d.to, connection) }
        }
        // SAFETY: no socket, no address.
        None => unsafe { Sent::new(bytes, std::ptr::null(), 0, std::ptr::null(), None) },
    };
    Some(sent)
}
