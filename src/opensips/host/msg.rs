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

    /// Where it came from.
    pub fn source(&self) -> Option<Endpoint> {
        let ip = ip_of(&self.0.rcv.src_ip)?;
        Some(Endpoint::new(self.transport(), ip, self.0.rcv.src_port))
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

/// What OpenSIPS sent, and between which ends, as far as it says.
pub struct Sent<'a> {
    pub bytes: &'a [u8],
    /// The sending socket's end: its advertised address when it has one,
    /// the real local port when the connection knows it. `None` without a
    /// socket (or one without a name).
    pub from: Option<Endpoint>,
    /// The destination, with the real remote port when the connection
    /// knows it.
    pub to: Option<Endpoint>,
}

impl<'a> Sent<'a> {
    /// `bytes` sent from `sock` to `to` over `proto`.
    ///
    /// # Safety
    /// `sock` and `to` must each be null or valid for `'a`.
    pub(super) unsafe fn new(
        bytes: &'a [u8],
        sock: *const sys::socket_info,
        proto: c_int,
        to: *const sys::sockaddr_union,
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
            let port = real_ports.map(|p| p.remote).filter(|&p| p != 0).unwrap_or(addr.port());
            Endpoint::new(transport_of(proto), addr.ip(), port)
        });
        Sent { bytes, from, to }
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
