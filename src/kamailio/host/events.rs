//! The core's network events: every SIP message the core receives or
//! sends (SREV_NET_DATA_RECV, SREV_NET_DATA_SENT).

use super::net::Received;
use super::socket::DestInfo;
use super::sys;
use crate::ffi::guard::guard;
use crate::ffi::host_bytes;
use std::os::raw::c_int;

/// What the network events do with the bytes of each message.
pub trait NetDataHandler: 'static {
    fn received(payload: &[u8], from: Received<'_>);
    fn sent(payload: &[u8], to: DestInfo<'_>);
}

/// Registers `H` for both events. Fails when another module holds them:
/// the core keeps one callback per event.
pub fn register<H: NetDataHandler>() -> bool {
    // SAFETY: registering static callbacks in the main process before fork.
    let recv = unsafe { sys::sr_event_register_cb(sys::SREV_NET_DATA_RECV as c_int, Some(on_received::<H>)) };
    // SAFETY: as above.
    let sent = unsafe { sys::sr_event_register_cb(sys::SREV_NET_DATA_SENT as c_int, Some(on_sent::<H>)) };
    recv == 0 && sent == 0
}

/// The event's network data, when it carries a payload.
///
/// # Safety
/// `evp` must be null or the core's event parameter for a network data
/// event, live for `'a`.
unsafe fn net_info<'a>(evp: *mut sys::sr_event_param_t) -> Option<(&'a sys::sr_net_info_t, &'a [u8])> {
    // SAFETY: per the contract, `data` is an sr_net_info_t for this event.
    let info = unsafe { (evp.as_ref()?.data as *const sys::sr_net_info_t).as_ref()? };
    // SAFETY: the core hands over `len` valid bytes for the event's duration.
    let payload = unsafe { host_bytes(info.data.s, info.data.len) }?;
    Some((info, payload))
}

unsafe extern "C" fn on_received<H: NetDataHandler>(evp: *mut sys::sr_event_param_t) -> c_int {
    guard("the receive event", 0, || {
        // SAFETY: the core passes its parameter for this event, with a
        // receive_info, live during the call.
        let Some((info, payload)) = (unsafe { net_info(evp) }) else { return 0 };
        // SAFETY: as above.
        if let Some(rcv) = unsafe { info.rcv.as_ref() } {
            H::received(payload, Received::new(rcv));
        }
        0
    })
}

unsafe extern "C" fn on_sent<H: NetDataHandler>(evp: *mut sys::sr_event_param_t) -> c_int {
    guard("the send event", 0, || {
        // SAFETY: as above, with a dest_info whose send_sock is null or a
        // listen socket.
        let Some((info, payload)) = (unsafe { net_info(evp) }) else { return 0 };
        // SAFETY: as above.
        if let Some(dst) = unsafe { DestInfo::from_ptr(info.dst) } {
            H::sent(payload, dst);
        }
        0
    })
}
