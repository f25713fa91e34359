//! From OpenSIPS's view of a message to a queued trace record: the ends of
//! a message received or sent, chosen as OpenSIPS's tracer chooses them.

use crate::core::counters::DropReason;
use crate::core::endpoint::{Endpoint, Transport};
use crate::core::hep::proto_type;
use crate::core::record::{Direction, Timestamp, TraceRecord};
use crate::core::shared::enqueue;
use crate::opensips::module::Module;
use crate::opensips::sys;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::raw::c_int;

/// A trace in progress: the trace id's index, the kinds of records it
/// takes (see `trace_api`), the forced correlation, and the attributes
/// its rows carry (`trace_attrs`).
#[derive(Debug, Clone, Copy)]
pub struct Trace<'a> {
    pub id: usize,
    pub types: u32,
    pub correlation: Option<&'a [u8]>,
    pub attrs: Option<&'a [u8]>,
}

pub fn ip_of(ip: &sys::ip_addr) -> Option<IpAddr> {
    // SAFETY: the union's bytes are plain data.
    let bytes = unsafe { ip.u.addr };
    match ip.af as i32 {
        libc::AF_INET => Some(IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))),
        libc::AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(bytes))),
        _ => None,
    }
}

pub fn address_of(su: &sys::sockaddr_union) -> Option<SocketAddr> {
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

pub fn transport_of(proto: c_int) -> Transport {
    match proto as u32 {
        sys::sip_protos_PROTO_TCP => Transport::Tcp,
        sys::sip_protos_PROTO_TLS => Transport::Tls,
        sys::sip_protos_PROTO_SCTP => Transport::Sctp,
        sys::sip_protos_PROTO_WS => Transport::Ws,
        sys::sip_protos_PROTO_WSS => Transport::Wss,
        _ => Transport::Udp,
    }
}

/// Where a received message arrived: the advertised address of the
/// socket when it has one.
fn local_end(msg: &sys::sip_msg) -> Option<(IpAddr, u16)> {
    // SAFETY: a socket of the server, or null.
    if let Some(sock) = unsafe { msg.rcv.bind_address.as_ref() } {
        if sock.adv_sock_str.len > 0 {
            return Some((ip_of(&sock.adv_address)?, sock.adv_port));
        }
    }
    Some((ip_of(&msg.rcv.dst_ip)?, msg.rcv.dst_port))
}

/// The bytes of an OpenSIPS `str`; empty when it has none.
///
/// # Safety
/// `s.s` must be null or valid for `s.len` bytes for as long as `'a`.
pub unsafe fn str_bytes<'a>(s: &sys::str_) -> &'a [u8] {
    if s.s.is_null() || s.len <= 0 {
        return &[];
    }
    // SAFETY: per the contract.
    unsafe { std::slice::from_raw_parts(s.s as *const u8, s.len as usize) }
}

/// The bytes of the `str` at `p`, when `p` is not null.
///
/// # Safety
/// `p` must be null or point at a `str` as `str_bytes` requires.
pub unsafe fn str_at<'a>(p: *const sys::str_) -> Option<&'a [u8]> {
    // SAFETY: per the contract.
    unsafe { p.as_ref().map(|s| str_bytes(s)) }
}

/// The bytes of a message.
///
/// # Safety
/// `msg` must be a message OpenSIPS handed over, with its buffer.
pub unsafe fn buffer(msg: &sys::sip_msg) -> &[u8] {
    // SAFETY: per the contract.
    unsafe { std::slice::from_raw_parts(msg.buf as *const u8, msg.len as usize) }
}

/// Traces a message this server received; `by_tm` when tm matched it to
/// a transaction, whose replies show `trace_local_ip` as their receiver.
pub fn incoming(module: &Module, trace: Trace<'_>, msg: &sys::sip_msg, by_tm: bool) -> bool {
    let transport = transport_of(msg.rcv.proto);
    let (Some(src), Some((dst_ip, dst_port))) = (ip_of(&msg.rcv.src_ip), local_end(msg)) else {
        report(module, DropReason::Unparsable, "the message has no IP addresses");
        return false;
    };
    let mut ends =
        (Endpoint::new(transport, src, msg.rcv.src_port), Endpoint::new(transport, dst_ip, dst_port));
    let is_reply = msg.first_line.type_ != sys::SIP_REQUEST as _;
    if let Some(local) = module.local_ip.filter(|_| by_tm && is_reply) {
        ends.1 = local;
    }
    // SAFETY: a received message has its buffer.
    queue(module, trace, Direction::In, ends, unsafe { buffer(msg) })
}

/// Traces `bytes`, which this server sent for `msg` (when there is one)
/// from `sock` to `to` over `proto`. `trace_local_ip`, when set, stands for
/// the source; else without a socket the message's own receiving end
/// does; without a destination, `255.255.255.255:9`, as the tracer writes.
pub fn outgoing(
    module: &Module,
    trace: Trace<'_>,
    msg: Option<&sys::sip_msg>,
    bytes: &[u8],
    sock: *const sys::socket_info,
    proto: c_int,
    to: *const sys::sockaddr_union,
) -> bool {
    // SAFETY: a socket of the server, or null.
    let sock = unsafe { sock.as_ref() };
    // SAFETY: the socket's port record, or null.
    let real_ports = sock.and_then(|s| unsafe { s.last_real_ports.as_ref() });
    let src = match sock.filter(|s| s.sock_str.len > 0) {
        _ if module.local_ip.is_some() => module.local_ip,
        Some(s) => {
            let ip = if s.adv_sock_str.len > 0 { &s.adv_address } else { &s.address };
            let port = real_ports.map(|p| p.local).filter(|&p| p != 0).unwrap_or(s.port_no);
            ip_of(ip).map(|ip| Endpoint::new(transport_of(s.proto), ip, port))
        }
        None => msg
            .and_then(|m| local_end(m).map(|(ip, port)| Endpoint::new(transport_of(m.rcv.proto), ip, port))),
    };
    // SAFETY: a destination address, or null.
    let dst = match unsafe { to.as_ref() }.and_then(address_of) {
        Some(addr) => {
            let port = real_ports.map(|p| p.remote).filter(|&p| p != 0).unwrap_or(addr.port());
            Some(Endpoint::new(transport_of(proto), addr.ip(), port))
        }
        None => Some(Endpoint::new(Transport::Udp, Ipv4Addr::BROADCAST.into(), 9)),
    };
    let (Some(src), Some(dst)) = (src, dst) else {
        report(module, DropReason::Unparsable, "an outgoing message has no usable addresses");
        return false;
    };
    queue(module, trace, Direction::Out, (src, dst), bytes)
}

fn queue(
    module: &Module,
    trace: Trace<'_>,
    direction: Direction,
    ends: (Endpoint, Endpoint),
    payload: &[u8],
) -> bool {
    if !module.id_on(trace.id) || trace.types & crate::opensips::trace_api::SIP_BIT == 0 {
        return false;
    }
    let Some(outputs) = module.outputs(trace.id) else { return false };
    // The attributes go where Kamailio's traced user goes: one per row.
    let mut attrs = Vec::new();
    if let Some(a) = trace.attrs.filter(|a| !a.is_empty()) {
        crate::core::record::pack_traced_user(&mut attrs, a);
    }
    let record = TraceRecord {
        time: Timestamp::now(),
        direction,
        src: ends.0,
        dst: ends.1,
        payload,
        correlation_id: trace.correlation,
        extra_correlation: None,
        proto_type: proto_type::SIP,
        traced_users: (!attrs.is_empty()).then_some(attrs.as_slice()),
    };
    match enqueue(&module.queues, &module.shared.counters, &record, &outputs, None) {
        Ok(()) => true,
        Err(e) => {
            report(module, e.reason, &e.detail);
            false
        }
    }
}

pub fn report(module: &Module, reason: DropReason, detail: &str) {
    if let Some(line) = module.shared.count_drop(reason, 1, &detail) {
        crate::log_warn!("{line}");
    }
}
