//! Transport endpoints: where a traced message came from or went to.

use std::fmt;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};

/// The transport a SIP message used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
    Sctp,
    Ws,
    Wss,
}

impl Transport {
    /// The lower-case name used in `proto:ip:port` strings and URIs.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Sctp => "sctp",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        }
    }

    pub fn from_name(name: &str) -> Option<Transport> {
        [Transport::Udp, Transport::Tcp, Transport::Tls, Transport::Sctp, Transport::Ws, Transport::Wss]
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(name))
    }

    /// The IP protocol number HEP carries in chunk 0x0002. Transports over
    /// TLS or WebSocket get 22, as Kamailio's siptrace and sipcapture use.
    pub fn hep_ip_proto(self) -> u8 {
        match self {
            Transport::Udp => 17,
            Transport::Tcp => 6,
            Transport::Sctp => 132,
            Transport::Tls | Transport::Ws | Transport::Wss => 22,
        }
    }
}

/// A transport address: protocol, IP and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub transport: Transport,
    pub addr: SocketAddr,
}

/// Longest `proto:ip:port` text: "sctp:[" + 45-char IPv6 + "]:65535".
pub const ENDPOINT_TEXT_MAX: usize = 64;

impl Endpoint {
    pub fn new(transport: Transport, ip: IpAddr, port: u16) -> Self {
        Endpoint { transport, addr: SocketAddr::new(ip, port) }
    }

    /// Reads `proto:ip:port` text, IPv6 in brackets, as [`Endpoint::text`]
    /// writes it.
    pub fn parse(text: &str) -> Option<Endpoint> {
        let (proto, addr) = text.split_once(':')?;
        Some(Endpoint { transport: Transport::from_name(proto)?, addr: addr.parse().ok()? })
    }

    /// An address as Kamailio's siptrace reads one in a script argument
    /// (`pipport2su`): `proto:ip:port`, IPv6 in brackets or not, the port
    /// optional (0), and `any` for UDP.
    pub fn parse_pipport(text: &str) -> Option<Endpoint> {
        let (proto, rest) = text.split_once(':')?;
        let transport =
            if proto.eq_ignore_ascii_case("any") { Transport::Udp } else { Transport::from_name(proto)? };
        let addr = match rest.parse::<std::net::SocketAddr>() {
            Ok(addr) => addr,
            Err(_) => {
                let ip = rest.strip_prefix('[').and_then(|r| r.strip_suffix(']')).unwrap_or(rest);
                std::net::SocketAddr::new(ip.parse().ok()?, 0)
            }
        };
        Some(Endpoint { transport, addr })
    }

    /// The `proto:ip:port` text of the `fromip`/`toip` columns, with IPv6
    /// addresses in brackets, formatted without allocating.
    pub fn text(&self) -> EndpointText {
        let mut text = EndpointText { buf: [0; ENDPOINT_TEXT_MAX], len: 0 };
        if let SocketAddr::V4(a) = self.addr {
            // Two per row: written by hand, without the formatting machinery.
            text.push(self.transport.name().as_bytes());
            for (i, octet) in a.ip().octets().into_iter().enumerate() {
                text.push(if i == 0 { b":" } else { b"." });
                text.push_decimal(u32::from(octet));
            }
            text.push(b":");
            text.push_decimal(u32::from(a.port()));
            return text;
        }
        let mut cursor = std::io::Cursor::new(&mut text.buf[..]);
        // Cannot fail: the longest form fits the buffer.
        let _ = write!(cursor, "{}:{}", self.transport.name(), self.addr);
        text.len = cursor.position() as u8;
        text
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transport.name(), self.addr)
    }
}

/// A formatted endpoint held on the stack.
#[derive(Clone, Copy)]
pub struct EndpointText {
    buf: [u8; ENDPOINT_TEXT_MAX],
    len: u8,
}

impl EndpointText {
    fn push(&mut self, bytes: &[u8]) {
        let at = self.len as usize;
        self.buf[at..at + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len() as u8;
    }

    fn push_decimal(&mut self, mut n: u32) {
        let mut digits = [0u8; 10];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn text_matches_the_sip_trace_column_format() {
        let v4 = Endpoint::new(Transport::Udp, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 5060);
        assert_eq!(v4.text().as_bytes(), b"udp:127.0.0.1:5060");
        assert_eq!(v4.to_string(), "udp:127.0.0.1:5060");
        let v6 = Endpoint::new(Transport::Tls, IpAddr::V6(Ipv6Addr::LOCALHOST), 5061);
        assert_eq!(v6.text().as_bytes(), b"tls:[::1]:5061");
    }

    #[test]
    fn text_parses_back() {
        for text in ["udp:127.0.0.1:5060", "tls:[2001:db8::1]:5061", "tcp:10.0.0.1:1"] {
            assert_eq!(Endpoint::parse(text).unwrap().to_string(), text);
        }
        for bad in ["127.0.0.1:5060", "udp:127.0.0.1", "quic:1.2.3.4:5", "udp:host:5060", "udp:[::1]"] {
            assert_eq!(Endpoint::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn ipv4_text_written_by_hand_is_the_formatted_one() {
        for (ip, port) in [([0, 0, 0, 0], 0), ([10, 1, 20, 255], 9), ([255, 255, 255, 255], 65535)] {
            for t in [Transport::Udp, Transport::Sctp, Transport::Wss] {
                let e = Endpoint::new(t, IpAddr::V4(Ipv4Addr::from(ip)), port);
                assert_eq!(e.text().as_bytes(), e.to_string().as_bytes());
            }
        }
    }

    #[test]
    fn longest_text_fits() {
        let ip: Ipv6Addr = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255".parse().unwrap();
        let e = Endpoint::new(Transport::Sctp, IpAddr::V6(ip), 65535);
        assert_eq!(e.text().as_bytes(), e.to_string().as_bytes());
        assert!(e.to_string().len() <= ENDPOINT_TEXT_MAX);
    }

    #[test]
    fn transport_names_round_trip() {
        for t in
            [Transport::Udp, Transport::Tcp, Transport::Tls, Transport::Sctp, Transport::Ws, Transport::Wss]
        {
            assert_eq!(Transport::from_name(t.name()), Some(t));
            assert_eq!(Transport::from_name(&t.name().to_uppercase()), Some(t));
        }
        assert_eq!(Transport::from_name("quic"), None);
    }

    #[test]
    fn hep_protocol_numbers() {
        assert_eq!(Transport::Udp.hep_ip_proto(), 17);
        assert_eq!(Transport::Tcp.hep_ip_proto(), 6);
        assert_eq!(Transport::Sctp.hep_ip_proto(), 132);
        assert_eq!(Transport::Wss.hep_ip_proto(), 22);
    }

    #[test]
    fn addresses_as_kamailio_siptrace_reads_them() {
        let e = Endpoint::parse_pipport("udp:127.0.0.1:5062").unwrap();
        assert_eq!((e.transport, e.addr.to_string()), (Transport::Udp, "127.0.0.1:5062".into()));
        let e = Endpoint::parse_pipport("tcp:[2001:db8::1]:5060").unwrap();
        assert_eq!((e.transport, e.addr.to_string()), (Transport::Tcp, "[2001:db8::1]:5060".into()));
        assert_eq!(Endpoint::parse_pipport("any:10.0.0.1:5060").unwrap().transport, Transport::Udp);
        assert_eq!(Endpoint::parse_pipport("udp:10.0.0.1").unwrap().addr.port(), 0);
        assert_eq!(Endpoint::parse_pipport("tls:[::1]").unwrap().addr.to_string(), "[::1]:0");
        for bad in ["", "10.0.0.1:5060", "udp:", "foo:10.0.0.1:5060", "udp:host.example:5060"] {
            assert!(Endpoint::parse_pipport(bad).is_none(), "{bad}");
        }
    }
}
