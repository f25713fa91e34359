//! A SIP message as OpenSIPS hands it over, where it came from, and what
//! OpenSIPS says about a message it sent: the ends of both, read from its
//! receive info, sockets and addresses.

use super::sys;
use crate::core::endpoint::{Endpoint, Transport};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::raw::c_int;

/// A message being processed (`struct sip_msg`).
#[repr(transparent)]
pub struct Msg(sys::sip_msg);

/// A mark on a message that other parts of OpenSIPS act on.
#[derive(Debug, Clone, Copy)]
pub enum Mark {
    /// Traced: the core's stateless callbacks (`sl`) report what is sent for it.
    Traced,
    /// Traced in the B2B scope: b2b_logic asks for a tracer for its session.
    TracedB2b,
}

impl Msg {
    /// # Safety
    /// `p` must be null or a message OpenSIPS is processing, which nothing
    /// else refers to during `'a`.
    pub(super) unsafe fn from_ptr<'a>(p: *mut sys::sip_msg) -> Option<&'a mut Msg> {
        // SAFETY: per the contract; `Msg` is a transparent `sip_msg`.
        unsafe { (p as *mut Msg).as_mut() }
    }

    /// A message OpenSIPS hands over, unless it is null or tm's
    /// FAKED_REPLY (-1), which stands for a reply tm made up.
    ///
    /// # Safety
    /// As for `from_ptr`, when `p` is neither.
    pub(super) unsafe fn from_tm<'a>(p: *mut sys::sip_msg) -> Option<&'a mut Msg> {
        if p as isize == -1 {
            return None;
        }
        // SAFETY: per the contract.
        unsafe { Msg::from_ptr(p) }
    }

    pub(super) fn as_ptr(&mut self) -> *mut sys::sip_msg {
        &mut self.0
    }

    /// The message's number, which changes with each message a process
    /// handles.
    pub fn id(&self) -> u32 {
        self.0.id
    }

    /// The message as received or built.
    pub fn buffer(&self) -> &[u8] {
        // SAFETY: a message OpenSIPS handed over holds `len` bytes at `buf`.
        unsafe { crate::ffi::host_bytes(self.0.buf, self.0.len) }.unwrap_or_default()
    }

    pub fn is_request(&self) -> bool {
        self.0.first_line.type_ == sys::SIP_REQUEST as _
    }

    pub(super) fn proto(&self) -> c_int {
        self.0.rcv.proto
    }

    /// The transport it came over.
    fn transport(&self) -> Transport {
        transport_of(self.proto())
    }

    /// Where it came from, as OpenSIPS's tracer reports it: on OpenSIPS
    /// 4.0 the real client behind a PROXY-protocol listener, else the peer
    /// of the socket.
    pub fn source(&self) -> Option<Endpoint> {
        let (ip, port) = real_source(&self.0.rcv);
        Some(Endpoint::new(self.transport(), ip_of(ip)?, port))
    }

    /// The address of the socket's peer, which sent the message (a proxy
    /// in front of a PROXY-protocol listener, say).
    pub fn peer_ip(&self) -> Option<IpAddr> {
        ip_of(&self.0.rcv.src_ip)
    }

    /// The connection it came over, unless it came over UDP.
    pub fn connection(&self) -> Option<Connection> {
        Connection::of(self.proto(), self.0.rcv.proto_reserved1)
    }

    /// Where it arrived: the advertised address of the socket when it has
    /// one, else the address it was sent to.
    pub fn local_end(&self) -> Option<Endpoint> {
        // SAFETY: a socket of the server, or null.
        let (ip, port) = match unsafe { self.0.rcv.bind_address.as_ref() } {
            Some(sock) if sock.adv_sock_str.len > 0 => (ip_of(&sock.adv_address)?, sock.adv_port),
            _ => (ip_of(&self.0.rcv.dst_ip)?, self.0.rcv.dst_port),
        };
        Some(Endpoint::new(self.transport(), ip, port))
    }

    pub fn mark(&mut self, mark: Mark) {
        self.0.msg_flags |= match mark {
            Mark::Traced => sys::FL_USE_SIPTRACE,
            Mark::TracedB2b => sys::FL_USE_SIPTRACE_B2B,
        };
    }

    /// A message a module made up (the dialog module, to end a dialog).
    pub fn is_dummy(&self) -> bool {
        // SAFETY: the core only compares the message's buffer pointer.
        unsafe { sys::is_dummy_sip_msg(&self.0 as *const sys::sip_msg as *mut sys::sip_msg) == 0 }
    }
}

/// `get_rcv_src_ip` and `get_rcv_src_port` of OpenSIPS 4.0: the real
/// endpoint a PROXY-protocol header named, when one did.
#[cfg(opensips_4_0)]
fn real_source(rcv: &sys::receive_info) -> (&sys::ip_addr, u16) {
    if rcv.real_ep.flags == sys::proxy_protocol_flags_PP_OK {
        (&rcv.real_ep.src_ip, rcv.real_ep.src_port)
    } else {
        (&rcv.src_ip, rcv.src_port)
    }
}

/// OpenSIPS 3.6 has no PROXY protocol: the socket's peer.
#[cfg(opensips_3_6)]
fn real_source(rcv: &sys::receive_info) -> (&sys::ip_addr, u16) {
    (&rcv.src_ip, rcv.src_port)
}

/// A connection of OpenSIPS's TCP layer (TCP, TLS, WS, WSS), by its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection(u32);

impl Connection {
    /// The connection `id` of a message over `proto`: none over UDP, nor
    /// without an id.
    pub(super) fn of(proto: c_int, id: u32) -> Option<Connection> {
        (proto != sys::sip_protos_PROTO_UDP as c_int && id != 0).then_some(Connection(id))
    }

    /// The correlation id OpenSIPS gave the connection, as its tracer puts
    /// it in HEP packets (`net`); 0 when the connection is gone, as there.
    pub fn correlation_id(self) -> u64 {
        let mut id = 0;
        // SAFETY: a lookup in the core's connection table, under its lock;
        // it writes `id`.
        unsafe { sys::tcp_get_correlation_id(self.0, &mut id) };
        id
    }

    /// The far end of the connection (OpenSIPS 4.0's `tcp_get_rcv`): the
    /// real client behind a PROXY-protocol header when one came, else the
    /// peer. `None` when the connection is gone.
    #[cfg(opensips_4_0)]
    fn far_end(self) -> Option<(IpAddr, u16)> {
        let mut rcv = sys::receive_info::default();
        // SAFETY: the core copies the connection's receive info under its
        // lock into `rcv`, or says it has no such connection.
        if unsafe { sys::tcp_get_rcv(self.0, &mut rcv) } != 0 {
            return None;
        }
        let (ip, port) = real_source(&rcv);
        Some((ip_of(ip)?, port))
    }
}

/// What OpenSIPS sent, and between which ends, as far as it says.
pub struct Sent<'a> {
    pub bytes: &'a [u8],
    /// The sending socket's end: its advertised address when it has one,
    /// the real local port when the connection knows it. `None` without a
    /// socket (or one without a name).
    pub from: Option<Endpoint>,
    /// The destination, with the real remote port when the connection
    /// knows it. On OpenSIPS 4.0, the far end of the connection it went
    /// over, as its tracer reports it (the real client behind a
    /// PROXY-protocol listener).
    pub to: Option<Endpoint>,
    /// The connection OpenSIPS's tracer correlates it with (`net`).
    pub connection: Option<Connection>,
}

impl<'a> Sent<'a> {
    /// `bytes` sent from `sock` to `to` over `proto`, through `connection`
    /// (which names the far end on OpenSIPS 4.0) when it is one.
    ///
    /// # Safety
    /// `sock` and `to` must each be null or valid for `'a`.
    pub(super) unsafe fn new(
        bytes: &'a [u8],
        sock: *const sys::socket_info,
        proto: c_int,
        to: *const sys::sockaddr_union,
        connection: Option<Connection>,
    ) -> Sent<'a> {
        // SAFETY: per the contract.
        let sock = unsafe { sock.as_ref() };
        // SAFETY: the socket's port record, or null.
        let real_ports = sock.and_then(|s| unsafe { s.last_real_ports.as_ref() });
        let from = sock.filter(|s| s.sock_str.len > 0).and_then(|s| {
            let ip = if s.adv_sock_str.len > 0 { &s.adv_address } else { &s.address };
            let port = real_ports.map(|p| p.local).filter(|&p| p != 0).unwrap_or(s.port_no);
            Some(Endpoint::new(transport_of(s.proto), ip_of(ip)?, port))
        });
        // SAFETY: per the contract.
        let to = unsafe { to.as_ref() }.and_then(address_of).map(|addr| {
            #[cfg(opensips_4_0)]
            if let Some((ip, port)) = connection.and_then(Connection::far_end) {
                return Endpoint::new(transport_of(proto), ip, port);
            }
            let port = real_ports.map(|p| p.remote).filter(|&p| p != 0).unwrap_or(addr.port());
            Endpoint::new(transport_of(proto), addr.ip(), port)
        });
        Sent { bytes, from, to, connection }
    }
}

pub(super) fn ip_of(ip: &sys::ip_addr) -> Option<IpAddr> {
    // SAFETY: every member of the union is plain bytes.
    let bytes = unsafe { ip.u.addr };
    match ip.af as i32 {
        libc::AF_INET => Some(IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))),
        libc::AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(bytes))),
        _ => None,
    }
}

/// OpenSIPS's form of `ip`.
pub(super) fn ip_addr(ip: IpAddr) -> sys::ip_addr {
    let mut out = sys::ip_addr::default();
    match ip {
        IpAddr::V4(v4) => {
            out.af = libc::AF_INET as _;
            out.len = 4;
            // SAFETY: writing the union's bytes.
            unsafe { out.u.addr[..4].copy_from_slice(&v4.octets()) };
        }
        IpAddr::V6(v6) => {
            out.af = libc::AF_INET6 as _;
            out.len = 16;
            // SAFETY: as above.
            unsafe { out.u.addr.copy_from_slice(&v6.octets()) };
        }
    }
    out
}

pub(super) fn address_of(su: &sys::sockaddr_union) -> Option<SocketAddr> {
    // SAFETY: the family field is common to every member; the member read
    // is the one it names.
    unsafe {
        match su.s.sa_family as i32 {
            libc::AF_INET => {
                let sin = &su.sin;
                let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                Some(SocketAddr::new(ip.into(), u16::from_be(sin.sin_port)))
            }
            libc::AF_INET6 => {
                let sin6 = &su.sin6;
                let ip = Ipv6Addr::from(sin6.sin6_addr.__in6_u.__u6_addr8);
                Some(SocketAddr::new(ip.into(), u16::from_be(sin6.sin6_port)))
            }
            _ => None,
        }
    }
}

pub(super) fn transport_of(proto: c_int) -> Transport {
    match proto as u32 {
        sys::sip_protos_PROTO_TCP => Transport::Tcp,
        sys::sip_protos_PROTO_TLS => Transport::Tls,
        sys::sip_protos_PROTO_SCTP => Transport::Sctp,
        sys::sip_protos_PROTO_WS => Transport::Ws,
        sys::sip_protos_PROTO_WSS => Transport::Wss,
        _ => Transport::Udp,
    }
}
