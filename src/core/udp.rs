//! Sends trace datagrams. One non-blocking socket per IP family, opened on
//! first use in the process that sends: a full socket buffer costs a
//! counted drop, never a blocked SIP worker.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

#[derive(Debug, Default)]
pub struct UdpSender {
    v4: Option<UdpSocket>,
    v6: Option<UdpSocket>,
}

impl UdpSender {
    pub const fn new() -> UdpSender {
        UdpSender { v4: None, v6: None }
    }

    pub fn send(&mut self, to: SocketAddr, datagram: &[u8]) -> io::Result<()> {
        let socket = match to {
            SocketAddr::V4(_) => Self::socket(&mut self.v4, Ipv4Addr::UNSPECIFIED.into())?,
            SocketAddr::V6(_) => Self::socket(&mut self.v6, Ipv6Addr::UNSPECIFIED.into())?,
        };
        let sent = socket.send_to(datagram, to)?;
        if sent != datagram.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "datagram truncated"));
        }
        Ok(())
    }

    fn socket(slot: &mut Option<UdpSocket>, any: std::net::IpAddr) -> io::Result<&UdpSocket> {
        match slot {
            Some(socket) => Ok(socket),
            None => {
                let socket = UdpSocket::bind(SocketAddr::new(any, 0))?;
                socket.set_nonblocking(true)?;
                Ok(slot.insert(socket))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_datagrams_to_a_listener() {
        let listener = UdpSocket::bind("127.0.0.1:0").unwrap();
        listener.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let mut sender = UdpSender::new();
        sender.send(listener.local_addr().unwrap(), b"one").unwrap();
        sender.send(listener.local_addr().unwrap(), b"two").unwrap();
        let mut buf = [0u8; 16];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"one");
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"two");
    }

    #[test]
    fn oversize_datagram_is_an_error_not_a_panic() {
        let mut sender = UdpSender::new();
        let huge = vec![0u8; 70_000];
        assert!(sender.send("127.0.0.1:9".parse().unwrap(), &huge).is_err());
    }
}
