//! Datagrams out of a sender: a non-blocking socket connected to each
//! collector (the kernel then skips the route lookup of every datagram, and
//! reports a collector that is not listening), and a whole burst to one
//! collector handed to the kernel in one `sendmmsg` call.
//!
//! A datagram the kernel took can still be lost. When the network says so
//! (an ICMP "port unreachable" from a collector that is not listening),
//! the kernel queues that error on our socket, and the sender counts the
//! datagram as dropped. A collector that is silently gone is not seen.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

/// Socket send buffer asked for, to absorb a burst.
const SEND_BUFFER: libc::c_int = 4 << 20;
/// Most datagrams handed to one sendmmsg call (the kernel's UIO_MAXIOV).
const MAX_BURST: usize = 1024;
/// Most connected sockets; further destinations share an unconnected one.
const MAX_CONNECTED: usize = 64;

#[derive(Debug, Default)]
pub struct UdpOut {
    connected: HashMap<SocketAddr, UdpSocket>,
    v4: Option<UdpSocket>,
    v6: Option<UdpSocket>,
    /// Only the given source socket may be used.
    fixed_source: bool,
}

/// What became of a burst.
#[derive(Debug, Default)]
pub struct BurstResult {
    pub sent: usize,
    /// Datagrams the kernel refused, each with why.
    pub failed: Vec<(usize, io::Error)>,
}

impl UdpOut {
    pub fn new() -> UdpOut {
        UdpOut::default()
    }

    /// Sends every datagram of `burst`; those to one destination go in
    /// order, up to 1024 per system call.
    pub fn send_burst(&mut self, burst: &[(SocketAddr, &[u8])]) -> BurstResult {
        let mut result = BurstResult::default();
        let mut destinations: Vec<(SocketAddr, Vec<usize>)> = Vec::new();
        for (i, (addr, _)) in burst.iter().enumerate() {
            match destinations.iter_mut().find(|(a, _)| a == addr) {
                Some((_, indexes)) => indexes.push(i),
                None => destinations.push((*addr, vec![i])),
            }
        }
        for (addr, indexes) in destinations {
            let (socket, connected) = match self.socket_for(addr) {
                Ok(s) => s,
                Err(e) => {
                    let failed = indexes.iter().map(|&i| (i, io::Error::new(e.kind(), e.to_string())));
                    result.failed.extend(failed);
                    continue;
                }
            };
            for chunk in indexes.chunks(MAX_BURST) {
                send_chunk(socket, connected, burst, chunk, &mut result);
            }
        }
        result
    }

    /// Sends every datagram from `source`: a socket bound to the address
    /// they must come from (the server's own listening socket, say), used
    /// for destinations of its family.
    pub fn with_source(source: UdpSocket) -> UdpOut {
        let v6 = source.local_addr().is_ok_and(|a| a.is_ipv6());
        let mut out = UdpOut { fixed_source: true, ..UdpOut::default() };
        *(if v6 { &mut out.v6 } else { &mut out.v4 }) = Some(source);
        out
    }

    /// Datagrams that came back as undeliverable since the last call, by
    /// the collector they were for (None: unknown). Only sockets this
    /// sender made are asked: the server's own socket is left alone.
    pub fn take_bounced(&mut self) -> Vec<(Option<SocketAddr>, u64)> {
        let mut out = Vec::new();
        for (addr, socket) in &self.connected {
            let n = drain_errors(socket);
            if n > 0 {
                out.push((Some(*addr), n));
            }
        }
        if !self.fixed_source {
            for socket in [&self.v4, &self.v6].into_iter().flatten() {
                let n = drain_errors(socket);
                if n > 0 {
                    out.push((None, n));
                }
            }
        }
        out
    }

    /// The socket for `addr`, and whether it is connected to it.
    fn socket_for(&mut self, addr: SocketAddr) -> io::Result<(&UdpSocket, bool)> {
        if self.fixed_source {
            let slot = if addr.is_ipv6() { &self.v6 } else { &self.v4 };
            return slot.as_ref().map(|s| (s, false)).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "the send socket is of the other IP family")
            });
        }
        if !self.connected.contains_key(&addr) && self.connected.len() < MAX_CONNECTED {
            let socket = new_socket(addr.is_ipv6())?;
            socket.connect(addr)?;
            self.connected.insert(addr, socket);
        }
        if let Some(socket) = self.connected.get(&addr) {
            return Ok((socket, true));
        }
        let slot = if addr.is_ipv6() { &mut self.v6 } else { &mut self.v4 };
        if slot.is_none() {
            *slot = Some(new_socket(addr.is_ipv6())?);
        }
        slot.as_ref().map(|s| (s, false)).ok_or_else(|| io::Error::other("no socket"))
    }
}

fn new_socket(v6: bool) -> io::Result<UdpSocket> {
    let any: SocketAddr =
        if v6 { (Ipv6Addr::UNSPECIFIED, 0).into() } else { (Ipv4Addr::UNSPECIFIED, 0).into() };
    let socket = UdpSocket::bind(any)?;
    socket.set_nonblocking(true)?;
    // SAFETY: setting an int option on a socket we own; a refusal only
    // leaves the default size.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            &SEND_BUFFER as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    // Queue each ICMP error, so that every bounced datagram can be counted.
    let (level, option) =
        if v6 { (libc::SOL_IPV6, libc::IPV6_RECVERR) } else { (libc::SOL_IP, libc::IP_RECVERR) };
    let on: libc::c_int = 1;
    // SAFETY: as above.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            option,
            &on as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(socket)
}

/// Reads the socket's queued errors; returns how many were ICMP errors,
/// each about one datagram that was sent and not delivered.
fn drain_errors(socket: &UdpSocket) -> u64 {
    let mut count = 0;
    loop {
        let mut data = [0u8; 64];
        let mut control = [0u64; 64];
        let mut iov = libc::iovec { iov_base: data.as_mut_ptr() as *mut libc::c_void, iov_len: data.len() };
        // SAFETY: an all-zero msghdr is valid; its pointers are set to live
        // buffers below.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = std::mem::size_of_val(&control);
        // SAFETY: reading into the buffers `msg` points at.
        let n =
            unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return count;
        }
        // SAFETY: walking the control messages the kernel wrote into `msg`.
        let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        while !cmsg.is_null() {
            // SAFETY: `cmsg` points into `control`, as CMSG_* return.
            let header = unsafe { &*cmsg };
            let is_error = (header.cmsg_level == libc::SOL_IP && header.cmsg_type == libc::IP_RECVERR)
                || (header.cmsg_level == libc::SOL_IPV6 && header.cmsg_type == libc::IPV6_RECVERR);
            if is_error {
                // SAFETY: the data of an IP(V6)_RECVERR message starts with
                // a sock_extended_err; read unaligned to be safe.
                let err =
                    unsafe { (libc::CMSG_DATA(cmsg) as *const libc::sock_extended_err).read_unaligned() };
                if err.ee_origin == libc::SO_EE_ORIGIN_ICMP || err.ee_origin == libc::SO_EE_ORIGIN_ICMP6 {
                    count += 1;
                }
            }
            // SAFETY: as above.
            cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
        }
    }
}

fn send_chunk(
    socket: &UdpSocket,
    connected: bool,
    burst: &[(SocketAddr, &[u8])],
    chunk: &[usize],
    result: &mut BurstResult,
) {
    let mut addrs: Vec<(libc::sockaddr_storage, libc::socklen_t)> =
        chunk.iter().map(|&i| sockaddr(burst[i].0)).collect();
    let mut iovecs: Vec<libc::iovec> = chunk
        .iter()
        .map(|&i| libc::iovec {
            iov_base: burst[i].1.as_ptr() as *mut libc::c_void,
            iov_len: burst[i].1.len(),
        })
        .collect();
    let mut headers: Vec<libc::mmsghdr> = (0..chunk.len())
        .map(|k| {
            // SAFETY: an all-zero msghdr is valid; the pointers set below
            // stay alive until the last sendmmsg call returns.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            if !connected {
                h.msg_hdr.msg_name = &mut addrs[k].0 as *mut libc::sockaddr_storage as *mut libc::c_void;
                h.msg_hdr.msg_namelen = addrs[k].1;
            }
            h.msg_hdr.msg_iov = &mut iovecs[k];
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    let mut at = 0;
    while at < headers.len() {
        // SAFETY: `headers[at..]` point at live addresses and buffers.
        let n = unsafe {
            libc::sendmmsg(
                socket.as_raw_fd(),
                headers[at..].as_mut_ptr(),
                (headers.len() - at) as libc::c_uint,
                // The server's own socket, when it is the source, stays blocking.
                libc::MSG_DONTWAIT,
            )
        };
        if n > 0 {
            result.sent += n as usize;
            at += n as usize;
            continue;
        }
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            continue;
        }
        // A full buffer: the rest cannot go now.
        if matches!(err.raw_os_error(), Some(libc::EAGAIN) | Some(libc::ENOBUFS)) {
            let code = err.raw_os_error().unwrap_or(libc::EIO);
            result.failed.extend(chunk[at..].iter().map(|&i| (i, io::Error::from_raw_os_error(code))));
            return;
        }
        // This datagram is refused (too big; or an earlier one bounced, which
        // the kernel reports once, on this send); go on with the next.
        result.failed.push((chunk[at], err));
        at += 1;
    }
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: zeroed storage is a valid sockaddr_storage; each branch
    // writes a complete address of its family into it.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from(*a.ip()).to_be() },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
            unsafe { (&mut storage as *mut libc::sockaddr_storage as *mut libc::sockaddr_in).write(sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above.
            unsafe { (&mut storage as *mut libc::sockaddr_storage as *mut libc::sockaddr_in6).write(sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_arrives_in_order_on_both_families() {
        let v4 = UdpSocket::bind("127.0.0.1:0").unwrap();
        let v6 = UdpSocket::bind("[::1]:0").ok();
        for s in [Some(&v4), v6.as_ref()].into_iter().flatten() {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        }
        let payloads: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; 10 + i as usize]).collect();
        let mut burst: Vec<(SocketAddr, &[u8])> =
            payloads.iter().map(|p| (v4.local_addr().unwrap(), p.as_slice())).collect();
        if let Some(v6) = &v6 {
            burst.push((v6.local_addr().unwrap(), b"six"));
        }
        let mut out = UdpOut::new();
        let result = out.send_burst(&burst);
        assert!(result.failed.is_empty(), "{:?}", result.failed);
        assert_eq!(result.sent, burst.len());
        let mut buf = [0u8; 128];
        for p in &payloads {
            let n = v4.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], p.as_slice());
        }
        if let Some(v6) = &v6 {
            let n = v6.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"six");
        }
    }

    #[test]
    fn every_datagram_to_a_collector_that_is_not_listening_is_accounted_for() {
        let port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let to: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut out = UdpOut::new();
        let mut sent = 0;
        let mut refused = 0;
        for _ in 0..5 {
            let result = out.send_burst(&[(to, b"one"), (to, b"two"), (to, b"three")]);
            sent += result.sent;
            refused += result.failed.len();
            assert!(result.failed.iter().all(|(_, e)| e.raw_os_error() == Some(libc::ECONNREFUSED)));
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(sent + refused, 15);
        assert!(sent > 0 && refused > 0, "sent {sent}, refused {refused}");
        std::thread::sleep(Duration::from_millis(50));
        let bounced: u64 = out.take_bounced().iter().map(|(_, n)| n).sum();
        assert_eq!(bounced, sent as u64, "each datagram that went out came back");
        assert!(out.take_bounced().is_empty(), "each is counted once");
    }

    #[test]
    fn datagrams_a_collector_receives_are_not_counted_as_bounced() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut out = UdpOut::new();
        let result = out.send_burst(&[(rx.local_addr().unwrap(), b"hello")]);
        assert_eq!(result.sent, 1);
        std::thread::sleep(Duration::from_millis(20));
        assert!(out.take_bounced().is_empty());
    }

    #[test]
    fn an_oversize_datagram_fails_alone() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let to = rx.local_addr().unwrap();
        let huge = vec![0u8; 70_000];
        let burst: Vec<(SocketAddr, &[u8])> = vec![(to, b"before"), (to, &huge), (to, b"after")];
        let result = UdpOut::new().send_burst(&burst);
        assert_eq!(result.sent, 2);
        assert_eq!(result.failed.len(), 1);
        assert_eq!(result.failed[0].0, 1);
        assert_eq!(result.failed[0].1.raw_os_error(), Some(libc::EMSGSIZE));
        let mut buf = [0u8; 16];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"before");
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"after");
    }
}
