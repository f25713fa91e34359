//! Kamailio's addresses as the core's endpoints: protocol numbers,
//! `ip_addr`, `sockaddr_union`, and what a received message carries
//! (`receive_info`).

use super::sys;
use crate::core::endpoint::{Endpoint, Transport};
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

/// Whether a transport keeps a connection that trace_net reports.
pub fn is_stream(t: Transport) -> bool {
    matches!(t, Transport::Tcp | Transport::Tls | Transport::Ws | Transport::Wss)
}

pub(super) fn ip(addr: &sys::ip_addr) -> Option<IpAddr> {
    // SAFETY: every variant of the union is plain bytes of the same storage.
    let bytes = unsafe { addr.u.addr };
    match addr.af {
        AF_INET => Some(IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))),
        AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(bytes))),
        _ => None,
    }
}

pub(super) fn socket_addr(su: &sys::sockaddr_union) -> Option<SocketAddr> {
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

/// `addr` as a `sockaddr_union`, for the core's socket lookups.
pub(super) fn sockaddr_union(addr: SocketAddr) -> sys::sockaddr_union {
    // SAFETY: an all-zero sockaddr_union is a valid (unspecified) address.
    let mut su: sys::sockaddr_union = unsafe { std::mem::zeroed() };
    match addr {
        SocketAddr::V4(a) => {
            // Writing a union's Copy fields needs no unsafe.
            su.sin.sin_family = AF_INET as _;
            su.sin.sin_port = a.port().to_be();
            su.sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
        }
        SocketAddr::V6(a) => {
            su.sin6.sin6_family = AF_INET6 as _;
            su.sin6.sin6_port = a.port().to_be();
            su.sin6.sin6_addr.__in6_u.__u6_addr8 = a.ip().octets();
        }
    }
    su
}

/// The stand-in source the C module records when Kamailio has no socket to
/// send from.
pub fn unknown_source() -> Endpoint {
    Endpoint::new(Transport::Udp, IpAddr::V4(Ipv4Addr::BROADCAST), 5060)
}

/// Where a message came from and arrived at: a message's `rcv`, or a TCP
/// connection's.
#[derive(Clone, Copy)]
pub struct Received<'a>(&'a sys::receive_info);

impl<'a> Received<'a> {
    pub(super) fn new(rcv: &'a sys::receive_info) -> Self {
        Received(rcv)
    }

    pub fn transport(self) -> Transport {
        transport(c_int::from(self.0.proto))
    }

    /// The peer's end and the local one.
    pub fn ends(self) -> Option<(Endpoint, Endpoint)> {
        let t = self.transport();
        let src = Endpoint::new(t, ip(&self.0.src_ip)?, self.0.src_port);
        let dst = Endpoint::new(t, ip(&self.0.dst_ip)?, self.0.dst_port);
        Some((src, dst))
    }

    /// The listen socket it arrived on.
    pub fn socket(self) -> Option<super::socket::Socket> {
        // SAFETY: a received message's bind_address is null or one of the
        // core's listen sockets.
        unsafe { super::socket::Socket::from_ptr(self.0.bind_address) }
    }

    /// The id of the TCP/TLS/WS connection it arrived on; 0 or less for
    /// none.
    pub fn connection_id(self) -> i32 {
        self.0.proto_reserved1
    }
}
