//! The core's stateless callbacks: what OpenSIPS sends without a
//! transaction (the ACK of a 2xx relayed, a reply of `sl`), for messages
//! marked `Mark::Traced`.

use super::msg::{Msg, Sent};
use super::sys;
use crate::ffi::guard::guard;
use std::os::raw::c_int;

/// Code the core calls for each request or reply sent statelessly for a
/// marked message.
pub trait Handler {
    fn sent(msg: &Msg, sent: Sent<'_>);
}

/// Registers `H` for requests and replies alike. From mod_init.
pub fn register<H: Handler>() -> Result<(), String> {
    for kind in [sys::sl_cb_type_SLCB_REQUEST_OUT, sys::sl_cb_type_SLCB_REPLY_OUT] {
        // SAFETY: registering a callback for the messages marked traced.
        if unsafe { sys::register_slcb(kind, sys::FL_USE_SIPTRACE, Some(sent::<H>)) } != 0 {
            return Err("cannot register the stateless callbacks".into());
        }
    }
    Ok(())
}

unsafe extern "C" fn sent<H: Handler>(
    req: *mut sys::sip_msg,
    buffer: *mut sys::str_,
    _code: c_int,
    to: *const sys::sockaddr_union,
    sock: *const sys::socket_info,
    proto: c_int,
) {
    guard("stateless callback", (), || {
        // SAFETY: the message being processed, and what is sent for it.
        let (Some(msg), Some(buffer)) = (unsafe { Msg::from_ptr(req) }, unsafe { buffer.as_ref() }) else {
            return;
        };
        // SAFETY: the buffer is valid for its length during the callback.
        let Some(bytes) = (unsafe { super::bytes(buffer) }) else { return };
        // Without a protocol, the message's own.
        let proto = if proto == 0 { msg.proto() } else { proto };
        // SAFETY: the core's socket and address, or null, valid during the callback.
        let mut sent = unsafe { Sent::new(bytes, sock, proto, to, None) };
        // OpenSIPS's tracer correlates it with the message's connection,
        // but names the destination it was sent to.
        sent.connection = msg.connection();
        H::sent(msg, sent)
    })
}
