//! The sl module's callbacks: the stateless replies it sends, and the ACKs
//! of its own replies that it absorbs.

use super::msg::Msg;
use super::socket::DestInfo;
use super::sys;
use crate::ffi::guard::guard;
use crate::ffi::host_bytes;
use std::net::SocketAddr;

/// What the SL callbacks do.
pub trait SlHandler: 'static {
    fn reply_sent(reply: &SlReply<'_>);
    fn ack_filtered(ack: Msg<'_>);
}

/// A stateless reply being sent.
pub struct SlReply<'a>(&'a sys::sl_cbp_t);

impl<'a> SlReply<'a> {
    /// The request it answers.
    pub fn request(&self) -> Option<Msg<'a>> {
        // SAFETY: SL passes null or the live request it answers.
        unsafe { Msg::from_ptr(self.0.req) }
    }

    pub fn payload(&self) -> Option<&'a [u8]> {
        // SAFETY: SL passes null or the reply's text, live during the call.
        let reply = unsafe { self.0.reply.as_ref() }?;
        // SAFETY: as above: `len` bytes.
        unsafe { host_bytes(reply.s, reply.len) }
    }

    pub fn peer(&self) -> Option<SocketAddr> {
        // SAFETY: null or the reply's destination, live during the call.
        unsafe { DestInfo::from_ptr(self.0.dst) }?.peer()
    }
}

/// Registers `H` with the sl module: for every reply, and with
/// `acks_too`, for every ACK it absorbs. `Ok(false)` when sl is not loaded.
pub fn register<H: SlHandler>(acks_too: bool) -> Result<bool, String> {
    let mut sl = sys::sl_api_t::default();
    // SAFETY: sl_load_api fills `sl` from the sl module, if it is loaded.
    if unsafe { sys::sl_load_api(&mut sl) } != 0 {
        return Ok(false);
    }
    let register = sl.register_cb.ok_or("the sl module gave no register_cb")?;
    let mut callbacks =
        vec![(sys::SLCB_REPLY_READY, on_reply::<H> as unsafe extern "C" fn(*mut sys::sl_cbp_t))];
    if acks_too {
        callbacks.push((sys::SLCB_ACK_FILTERED, on_ack::<H>));
    }
    for (kind, function) in callbacks {
        let mut element = sys::sl_cbelem_t { type_: kind, cbf: Some(function), ..Default::default() };
        // SAFETY: SL copies the element; the function is static.
        if unsafe { register(&mut element) } != 0 {
            return Err("cannot register the SL callbacks".into());
        }
    }
    Ok(true)
}

unsafe extern "C" fn on_reply<H: SlHandler>(cbp: *mut sys::sl_cbp_t) {
    guard("the stateless reply callback", (), || {
        // SAFETY: SL passes live parameters for the reply it sends.
        if let Some(p) = unsafe { cbp.as_ref() } {
            H::reply_sent(&SlReply(p));
        }
    })
}

unsafe extern "C" fn on_ack<H: SlHandler>(cbp: *mut sys::sl_cbp_t) {
    guard("the stateless ACK callback", (), || {
        // SAFETY: SL passes live parameters with the ACK it filtered.
        let ack = unsafe { cbp.as_ref().and_then(|p| Msg::from_ptr(p.req)) };
        if let Some(ack) = ack {
            H::ack_filtered(ack);
        }
    })
}
