//! Datagrams out of a sender: a non-blocking socket connected to each
//! collector (the kernel then skips the route lookup of every datagram, and
//! reports a collector that is not listening), and a whole burst to one
//! collector handed to the kernel in one `sendmmsg` call.

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
    Ok(socket)
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
        // A full buffer, or nobody listening: the rest cannot go now.
        if matches!(err.raw_os_error(), Some(libc::EAGAIN) | Some(libc::ENOBUFS) | Some(libc::ECONNREFUSED)) {
            let code = err.raw_os_error().unwrap_or(libc::EIO);
            result.failed.extend(chunk[at..].iter().map(|&i| (i, io::Error::from_raw_os_error(code))));
            return;
        }
        // This datagram is refused (too big, unreachable); go on with the next.
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
    fn a_collector_that_is_not_listening_is_noticed() {
        let port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let to: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut out = UdpOut::new();
        assert_eq!(out.send_burst(&[(to, b"first")]).sent, 1);
        std::thread::sleep(Duration::from_millis(50));
        // The ICMP the first datagram caused fails the next burst.
        let result = out.send_burst(&[(to, b"second"), (to, b"third")]);
        assert_eq!(result.sent, 0);
        assert_eq!(result.failed.len(), 2);
        assert_eq!(result.failed[0].1.raw_os_error(), Some(libc::ECONNREFUSED));
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
