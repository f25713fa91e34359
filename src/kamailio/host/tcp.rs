//! Kamailio's TCP connections: whether one was opened by the peer, and the
//! event of one closing (SREV_TCP_CLOSED, in the TCP main process).

use super::net::Received;
use super::sys;
use crate::ffi::guard::guard;
use std::os::raw::c_int;
use std::sync::atomic::{AtomicI32, Ordering};

/// Why a connection closed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CloseReason {
    Timeout,
    Reset,
    Eof,
}

/// What to do when a connection closes.
pub trait TcpClosedHandler: 'static {
    fn closed(id: i32, ends: Received<'_>, reason: CloseReason);
}

/// Whether connection `id` was opened by the peer; `None` when it is no
/// longer known.
pub fn is_passive(id: i32) -> Option<bool> {
    // SAFETY: looks the connection up by id; a found one is referenced and
    // released below.
    let con = unsafe { sys::tcpconn_get(id, std::ptr::null_mut(), 0, std::ptr::null_mut(), 0) };
    // SAFETY: a found connection stays valid while referenced.
    let c = unsafe { con.as_mut() }?;
    let passive = c.flags & sys::F_CONN_PASSIVE != 0;
    // tcpconn_put(), a macro: drops the reference the lookup took.
    // SAFETY: refcnt is an int that the core changes atomically.
    unsafe { AtomicI32::from_ptr(std::ptr::addr_of_mut!(c.refcnt.val)) }.fetch_sub(1, Ordering::AcqRel);
    Some(passive)
}

/// Registers `H` for closed connections. The core keeps one callback for
/// the event, in 5.6 as in 6.0: a module that took it first (tcpops,
/// loaded before this one) makes this fail, and one loaded after this one
/// fails to load.
pub fn on_closed<H: TcpClosedHandler>() -> bool {
    // SAFETY: the core keeps the static function pointer.
    unsafe { sys::sr_event_register_cb(sys::SREV_TCP_CLOSED as c_int, Some(closed::<H>)) == 0 }
}

unsafe extern "C" fn closed<H: TcpClosedHandler>(evp: *mut sys::sr_event_param_t) -> c_int {
    guard("the closed-connection callback", 0, || {
        // SAFETY: the core passes its event with a tcp_closed_event_info.
        let info =
            unsafe { evp.as_ref().and_then(|e| (e.data as *const sys::tcp_closed_event_info_t).as_ref()) };
        let Some(info) = info else { return 0 };
        // SAFETY: the connection is live while its close is reported.
        let Some(con) = (unsafe { info.con.as_ref() }) else { return 0 };
        let reason = match info.reason {
            sys::tcp_closed_reason_TCP_CLOSED_TIMEOUT => CloseReason::Timeout,
            sys::tcp_closed_reason_TCP_CLOSED_RESET => CloseReason::Reset,
            _ => CloseReason::Eof,
        };
        H::closed(closed_id(info, con), Received::new(&con.rcv), reason);
        0
    })
}

/// The id of the connection a close event is about: the event carries it
/// from Kamailio 6.0 on (`tcp_closed_event_info.id`, the same value as the
/// connection's), and 5.6 has only the connection's.
#[cfg(kamailio_6_0)]
fn closed_id(info: &sys::tcp_closed_event_info_t, _con: &sys::tcp_connection) -> i32 {
    info.id
}

#[cfg(kamailio_5_6)]
fn closed_id(_info: &sys::tcp_closed_event_info_t, con: &sys::tcp_connection) -> i32 {
    con.id
}
