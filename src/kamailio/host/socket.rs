//! Kamailio's listen sockets (`socket_info`) and the destinations of sent
//! messages (`dest_info`): their ends, the socket Kamailio would send from,
//! the lookups by name and address.

use super::net::{self, proto_number, transport, unknown_source};
use super::sys;
use crate::core::dest::Destination;
use crate::core::endpoint::{Endpoint, Transport};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::FromRawFd;
use std::os::raw::c_int;
use std::ptr::NonNull;

/// One of Kamailio's listen sockets. The core keeps its list for the life
/// of the server and every process inherits it; the descriptor is opened
/// after mod_init, so fields are read when asked for, not copied.
#[derive(Clone, Copy)]
pub struct Socket(NonNull<sys::socket_info>);

impl Socket {
    /// # Safety
    /// `p` must be null or one of the core's listen sockets.
    pub(super) unsafe fn from_ptr(p: *mut sys::socket_info) -> Option<Socket> {
        NonNull::new(p).map(Socket)
    }

    fn info(&self) -> &sys::socket_info {
        // SAFETY: a listen socket lives as long as the server (`from_ptr`).
        unsafe { self.0.as_ref() }
    }

    /// The listen socket whose name (`name=` of a `listen`) is `name`.
    pub fn by_name(name: &str) -> Option<Socket> {
        let mut s = sys::str_ { s: name.as_ptr() as *mut _, len: name.len() as c_int };
        // SAFETY: a lookup in the socket list by name; `s` outlives it and
        // is only read.
        unsafe { Socket::from_ptr(sys::ksr_get_socket_by_name(&mut s)) }
    }

    /// The listen socket on `addr` with `transport`.
    pub fn by_address(addr: SocketAddr, transport: Transport) -> Option<Socket> {
        let host = addr.ip().to_string();
        let mut s = sys::str_ { s: host.as_ptr() as *mut _, len: host.len() as c_int };
        // SAFETY: a lookup in the socket list by address; `s` outlives it
        // and is only read.
        unsafe { Socket::from_ptr(sys::grep_sock_info(&mut s, addr.port(), proto_number(transport) as u16)) }
    }

    /// The socket Kamailio would send from to reach `to` over `transport`.
    fn toward(to: SocketAddr, transport: Transport) -> Option<Socket> {
        let mut su = net::sockaddr_union(to);
        Socket::toward_su(&mut su, proto_number(transport))
    }

    fn toward_su(su: &mut sys::sockaddr_union, proto: c_int) -> Option<Socket> {
        // SAFETY: `su` is a valid address; a null msg is allowed; the result
        // is null or a listen socket.
        unsafe { Socket::from_ptr(sys::get_send_socket(std::ptr::null_mut(), su, proto)) }
    }

    /// The local end of the socket.
    pub fn local(&self) -> Option<Endpoint> {
        let si = self.info();
        Some(Endpoint::new(transport(si.proto as c_int), net::ip(&si.address)?, si.port_no))
    }

    /// The address the socket advertises (`listen=... advertise ...`), as
    /// an endpoint: the protocol it advertises (6.0; the socket's own on
    /// 5.6, which advertises none), the address the advertised name
    /// resolved to at startup, and the advertised port (0 when `advertise`
    /// gives none, as the core writes it). `None` when the socket
    /// advertises nothing, or a name that did not resolve.
    pub fn advertised(&self) -> Option<Endpoint> {
        let si = self.info();
        let info = &si.useinfo;
        if info.name.len <= 0 || info.name.s.is_null() {
            return None;
        }
        let ip = net::ip(&info.address)?;
        Some(Endpoint::new(transport(advertised_proto(si)), ip, info.port_no))
    }

    /// A UDP socket of this process's own that sends from this one: a
    /// duplicate of its descriptor. `None` when it is not an open UDP
    /// listen socket.
    pub fn duplicate_udp(&self) -> Option<std::io::Result<UdpSocket>> {
        let si = self.info();
        if transport(si.proto as c_int) != Transport::Udp || si.socket < 0 {
            return None;
        }
        // SAFETY: the listen socket's descriptor, inherited from the main
        // process; the duplicate is ours to own and close.
        let fd = unsafe { libc::dup(si.socket) };
        if fd < 0 {
            return Some(Err(std::io::Error::last_os_error()));
        }
        // SAFETY: a fresh descriptor of a UDP socket, owned from here on.
        Some(Ok(unsafe { UdpSocket::from_raw_fd(fd) }))
    }
}

/// The protocol a socket advertises: 6.0's `advertise` may name one
/// (PROTO_NONE when it does not), 5.6's cannot.
#[cfg(kamailio_6_0)]
fn advertised_proto(si: &sys::socket_info) -> c_int {
    if si.useinfo.proto as u32 == sys::sip_protos_PROTO_NONE {
        si.proto as c_int
    } else {
        si.useinfo.proto
    }
}

#[cfg(kamailio_5_6)]
fn advertised_proto(si: &sys::socket_info) -> c_int {
    si.proto as c_int
}

/// The listening socket Kamailio would send from to reach `dest`, as an
/// endpoint; the broadcast stand-in when there is none.
pub fn local_toward(dest: &Destination) -> Endpoint {
    Socket::toward(dest.addr, dest.transport).and_then(|s| s.local()).unwrap_or_else(unknown_source)
}

/// Where a message is sent: the socket it leaves from, if chosen yet, the
/// peer and the connection.
#[derive(Clone, Copy)]
pub struct DestInfo<'a>(&'a sys::dest_info);

impl<'a> DestInfo<'a> {
    /// # Safety
    /// `p` must be null or a dest_info valid for `'a`, whose `send_sock` is
    /// null or a listen socket.
    pub(super) unsafe fn from_ptr(p: *const sys::dest_info) -> Option<DestInfo<'a>> {
        // SAFETY: per the contract.
        unsafe { p.as_ref() }.map(DestInfo)
    }

    pub fn transport(self) -> Transport {
        transport(c_int::from(self.0.proto))
    }

    pub fn peer(self) -> Option<SocketAddr> {
        net::socket_addr(&self.0.to)
    }

    /// The id of the connection it goes on; 0 or less for none.
    pub fn connection_id(self) -> i32 {
        self.0.id
    }

    /// The source and destination of the message: the socket it leaves
    /// from (the one Kamailio would pick when none is set) and the peer.
    pub fn ends(self) -> Option<(Endpoint, Endpoint)> {
        let (src, t) = match self.send_socket() {
            Some(s) => {
                let local = s.local()?;
                (local, local.transport)
            }
            None => (unknown_source(), Transport::Udp),
        };
        Some((src, Endpoint { transport: t, addr: self.peer()? }))
    }

    /// The socket it leaves from: the one set, or the one Kamailio would
    /// pick.
    pub fn send_socket(self) -> Option<Socket> {
        // SAFETY: per `from_ptr`, the socket is null or a listen socket.
        match unsafe { Socket::from_ptr(self.0.send_sock) } {
            Some(s) => Some(s),
            None => {
                let mut to = self.0.to;
                Socket::toward_su(&mut to, c_int::from(self.0.proto))
            }
        }
    }
}
