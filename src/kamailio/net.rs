//! Kamailio's address structures turned into the core's endpoints, and
//! its strings and message buffers into byte slices.

use crate::core::endpoint::{Endpoint, Transport};
use crate::kamailio::sys;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::raw::c_int;

const AF_INET: u32 = libc::AF_INET as u32;
const AF_INET6: u32 = libc::AF_INET6 as u32;

/// Kamailio's protocol number as a transport. Anything unknown counts as
/// UDP, as the C module's proto names do.
pub fn transport(proto: c_int) -> Transport {
    match proto as u32 {
        sys::sip_protos_PROTO_TCP => Transport::Tcp,
        sys::sip_protos_PROTO_TLS => Transport::Tls,
        sys::sip_protos_PROTO_SCTP => Transport::Sctp,
        sys::sip_protos_PROTO_WS => Transport::Ws,
        sys::sip_protos_PROTO_WSS => Transport::Wss,
        _ => Transport::Udp,
    }
}

/// A transport as Kamailio's protocol number: the inverse of [`transport`].
pub fn proto_number(transport: Transport) -> c_int {
    (match transport {
        Transport::Udp => sys::sip_protos_PROTO_UDP,
        Transport::Tcp => sys::sip_protos_PROTO_TCP,
        Transport::Tls => sys::sip_protos_PROTO_TLS,
        Transport::Sctp => sys::sip_protos_PROTO_SCTP,
        Transport::Ws => sys::sip_protos_PROTO_WS,
        Transport::Wss => sys::sip_protos_PROTO_WSS,
    }) as c_int
}

pub fn ip(addr: &sys::ip_addr) -> Option<IpAddr> {
    // SAFETY: every variant of the union is plain bytes of the same storage.
    let bytes = unsafe { addr.u.addr };
    match addr.af {
        AF_INET => Some(IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))),
        AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(bytes))),
        _ => None,
    }
}

pub fn socket_addr(su: &sys::sockaddr_union) -> Option<SocketAddr> {
    // SAFETY: the family field is common to all variants and selects which
    // one the storage holds.
    unsafe {
        match su.s.sa_family as u32 {
            AF_INET => {
                let sin = su.sin;
                let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(sin.sin_port)))
            }
            AF_INET6 => {
                let sin6 = su.sin6;
                let ip = Ipv6Addr::from(sin6.sin6_addr.__in6_u.__u6_addr8);
                Some(SocketAddr::new(IpAddr::V6(ip), u16::from_be(sin6.sin6_port)))
            }
            _ => None,
        }
    }
}

/// Source and destination of a received message.
pub fn received(rcv: &sys::receive_info) -> Option<(Endpoint, Endpoint)> {
    let t = transport(rcv.proto as c_int);
    let src = Endpoint::new(t, ip(&rcv.src_ip)?, rcv.src_port);
    let dst = Endpoint::new(t, ip(&rcv.dst_ip)?, rcv.dst_port);
    Some((src, dst))
}

/// The local endpoint of a socket Kamailio listens on.
pub fn local(sock: &sys::socket_info) -> Option<Endpoint> {
    Some(Endpoint::new(transport(sock.proto as c_int), ip(&sock.address)?, sock.port_no))
}

/// The stand-in source the C module records when Kamailio has no socket to
/// send from.
pub fn unknown_source() -> Endpoint {
    Endpoint::new(Transport::Udp, IpAddr::V4(Ipv4Addr::BROADCAST), 5060)
}

/// Source and destination of an outgoing message: the socket it leaves
/// from (the one Kamailio would pick when none is set) and the peer.
///
/// # Safety
/// `dst.send_sock` must be null or point at a live socket_info.
pub unsafe fn sent(dst: &sys::dest_info) -> Option<(Endpoint, Endpoint)> {
    let mut to = dst.to;
    let sock = if dst.send_sock.is_null() {
        // SAFETY: `to` is a valid sockaddr_union; a null msg is allowed.
        unsafe { sys::get_send_socket(std::ptr::null_mut(), &mut to, dst.proto as c_int) }
    } else {
        dst.send_sock
    };
    // SAFETY: per the contract, or as returned by Kamailio.
    let (src, t) = match unsafe { sock.as_ref() } {
        Some(s) => (local(s)?, transport(s.proto as c_int)),
        None => (unknown_source(), Transport::Udp),
    };
    let peer = socket_addr(&dst.to)?;
    Some((src, Endpoint { transport: t, addr: peer }))
}

/// The listening socket Kamailio would send from to reach `dest`, as an
/// endpoint; the broadcast stand-in when there is none.
pub fn local_toward(dest: &crate::core::dest::Destination) -> Endpoint {
    // SAFETY: an all-zero sockaddr_union is a valid (unspecified) address.
    let mut to: sys::sockaddr_union = unsafe { std::mem::zeroed() };
    match dest.addr {
        SocketAddr::V4(a) => {
            // Writing a union's Copy fields needs no unsafe.
            to.sin.sin_family = AF_INET as _;
            to.sin.sin_port = a.port().to_be();
            to.sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
        }
        SocketAddr::V6(a) => {
            to.sin6.sin6_family = AF_INET6 as _;
            to.sin6.sin6_port = a.port().to_be();
            to.sin6.sin6_addr.__in6_u.__u6_addr8 = a.ip().octets();
        }
    }
    // SAFETY: `to` is a valid address; a null msg is allowed.
    let sock = unsafe { sys::get_send_socket(std::ptr::null_mut(), &mut to, proto_number(dest.transport)) };
    // SAFETY: null or a live listening socket.
    unsafe { sock.as_ref() }.and_then(local).unwrap_or_else(unknown_source)
}

/// The bytes of a Kamailio string; `None` when it is null or empty.
///
/// # Safety
/// `s` must be a valid str for the duration of the borrow.
pub unsafe fn str_bytes<'a>(s: &sys::str_) -> Option<&'a [u8]> {
    if s.s.is_null() || s.len <= 0 {
        return None;
    }
    // SAFETY: per the contract.
    Some(unsafe { std::slice::from_raw_parts(s.s as *const u8, s.len as usize) })
}

/// The raw text of a message, as Kamailio received it.
pub fn message_bytes(msg: &sys::sip_msg) -> Option<&[u8]> {
    let s = sys::str_ { s: msg.buf, len: i32::try_from(msg.len).ok()? };
    // SAFETY: a message's buffer holds `len` bytes while the message lives.
    unsafe { str_bytes(&s) }
}
