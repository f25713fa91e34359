//! Trace destinations: the `duplicate_uri` parameter and the URI argument
//! of `sip_trace()`, in the SIP URI form Kamailio's siptrace takes
//! (`sip:host[:port][;transport=proto]`).
//!
//! Parsing never touches the network. Host names are resolved once, at
//! startup, by [`DestUri::resolve`]; at run time only addresses that are IP
//! literals or were resolved at startup are used.

use crate::core::endpoint::Transport;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// The port a destination gets when its URI names none.
pub const DEFAULT_PORT: u16 = 5060;
/// The same for a sips: URI.
pub const DEFAULT_TLS_PORT: u16 = 5061;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

/// A parsed destination URI.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DestUri {
    pub host: Host,
    pub port: u16,
    pub transport: Transport,
}

/// A destination ready to send to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Destination {
    pub addr: SocketAddr,
    pub transport: Transport,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestError(pub String);

impl std::fmt::Display for DestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, DestError> {
    Err(DestError(msg.into()))
}

impl DestUri {
    pub fn parse(uri: &str) -> Result<DestUri, DestError> {
        let uri = uri.trim();
        let (secure, rest) = match uri.split_once(':') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("sip") => (false, rest),
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("sips") => (true, rest),
            _ => return err("expected a sip: URI such as sip:10.0.0.1:9060"),
        };
        // Headers (?...) carry nothing for a trace destination.
        let rest = rest.split('?').next().unwrap_or_default();
        let (hostport, params) = match rest.split_once(';') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        };
        // A user part is allowed and ignored, as in a SIP URI.
        let hostport = hostport.rsplit_once('@').map_or(hostport, |(_, h)| h);
        let (host, port) = split_host_port(hostport)?;

        let mut transport = if secure { Transport::Tls } else { Transport::Udp };
        for param in params.into_iter().flat_map(|p| p.split(';')) {
            let (name, value) = param.split_once('=').unwrap_or((param, ""));
            if name.trim().eq_ignore_ascii_case("transport") {
                transport = Transport::from_name(value.trim())
                    .ok_or_else(|| DestError(format!("unknown transport '{}'", value.trim())))?;
            }
        }
        let default_port = if secure { DEFAULT_TLS_PORT } else { DEFAULT_PORT };
        Ok(DestUri { host, port: port.unwrap_or(default_port), transport })
    }

    /// Whether this module can send to the URI's transport: UDP, TCP or TLS.
    pub fn check_supported(&self) -> Result<(), DestError> {
        match self.transport {
            Transport::Udp | Transport::Tcp | Transport::Tls => Ok(()),
            other => err(format!(
                "transport '{}' is not supported for trace destinations; use udp, tcp or tls",
                other.name()
            )),
        }
    }

    /// The host as written, for checking a TLS collector's certificate.
    pub fn host_text(&self) -> String {
        match &self.host {
            Host::Ip(ip) => ip.to_string(),
            Host::Name(name) => name.clone(),
        }
    }

    /// Parses a URI this module can send to.
    pub fn parse_supported(uri: &str) -> Result<DestUri, DestError> {
        let parsed = DestUri::parse(uri)?;
        parsed.check_supported()?;
        Ok(parsed)
    }

    /// The destination without any name lookup: `Some` for IP literals.
    pub fn literal(&self) -> Option<Destination> {
        match self.host {
            Host::Ip(ip) => {
                Some(Destination { addr: SocketAddr::new(ip, self.port), transport: self.transport })
            }
            Host::Name(_) => None,
        }
    }

    /// Resolves the host with the system resolver and takes its first
    /// address. Blocking: call it at startup only.
    pub fn resolve(&self) -> Result<Destination, DestError> {
        if let Some(dest) = self.literal() {
            return Ok(dest);
        }
        let Host::Name(name) = &self.host else { unreachable!() };
        let addr = (name.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| DestError(format!("cannot resolve host '{name}': {e}")))?
            .next()
            .ok_or_else(|| DestError(format!("host '{name}' has no address")))?;
        Ok(Destination { addr, transport: self.transport })
    }
}

fn split_host_port(hostport: &str) -> Result<(Host, Option<u16>), DestError> {
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or_else(|| DestError("unclosed '[' in host".into()))?;
        let ip = addr
            .parse::<std::net::Ipv6Addr>()
            .map_err(|_| DestError(format!("bad IPv6 address '{addr}'")))?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| DestError(format!("unexpected '{p}' after host")))?),
        };
        (Host::Ip(IpAddr::V6(ip)), port)
    } else {
        let (host, port) = match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        };
        (parse_host(host)?, port)
    };
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => return err(format!("bad port '{p}'")),
        },
    };
    Ok((host, port))
}

fn parse_host(host: &str) -> Result<Host, DestError> {
    if host.is_empty() {
        return err("missing host");
    }
    if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
        return Ok(Host::Ip(IpAddr::V4(ip)));
    }
    let valid_name = host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
        // A name of digits and dots only is a malformed IPv4 address.
        && !host.bytes().all(|c| c.is_ascii_digit() || c == b'.');
    if !valid_name {
        return err(format!("bad host '{host}'"));
    }
    Ok(Host::Name(host.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_literals() {
        let d = DestUri::parse("sip:10.0.0.1:9060").unwrap();
        assert_eq!(d.literal().unwrap().addr, "10.0.0.1:9060".parse().unwrap());
        assert_eq!(d.transport, Transport::Udp);
        let d = DestUri::parse("sip:[2001:db8::5]:9061;transport=UDP").unwrap();
        assert_eq!(d.literal().unwrap().addr, "[2001:db8::5]:9061".parse().unwrap());
        let d = DestUri::parse(" SIP:127.0.0.1 ").unwrap();
        assert_eq!(d.port, DEFAULT_PORT);
        let d = DestUri::parse("sip:capture@[::1];lr;transport=tcp?subject=x").unwrap();
        assert_eq!(d.literal().unwrap().addr, "[::1]:5060".parse().unwrap());
        assert_eq!(d.transport, Transport::Tcp);
    }

    #[test]
    fn udp_tcp_and_tls_are_supported() {
        assert_eq!(DestUri::parse_supported("sip:10.0.0.1;transport=udp").unwrap().transport, Transport::Udp);
        assert_eq!(
            DestUri::parse_supported("sip:10.0.0.1:9061;transport=TCP").unwrap().transport,
            Transport::Tcp
        );
        let tls = DestUri::parse_supported("sip:homer.example.com:9062;transport=tls").unwrap();
        assert_eq!(
            (tls.transport, tls.port, tls.host_text().as_str()),
            (Transport::Tls, 9062, "homer.example.com")
        );
        let sips = DestUri::parse_supported("sips:10.0.0.1").unwrap();
        assert_eq!((sips.transport, sips.port), (Transport::Tls, DEFAULT_TLS_PORT));
        let e = DestUri::parse_supported("sip:10.0.0.1;transport=ws").unwrap_err();
        assert!(e.0.contains("transport 'ws' is not supported"), "{e}");
    }

    #[test]
    fn names_are_kept_for_startup_resolution() {
        let d = DestUri::parse("sip:Homer.Example.com:9060").unwrap();
        assert_eq!(d.host, Host::Name("homer.example.com".into()));
        assert_eq!(d.literal(), None);
        assert_eq!(DestUri::parse("sip:localhost:9").unwrap().resolve().unwrap().addr.port(), 9);
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        for (uri, reason) in [
            ("", "expected a sip: URI"),
            ("10.0.0.1:9060", "expected a sip: URI"),
            ("udp:10.0.0.1:9060", "expected a sip: URI"),
            ("http://x", "expected a sip: URI"),
            ("sip:", "missing host"),
            ("sip::9060", "missing host"),
            ("sip:10.0.0.1:0", "bad port"),
            ("sip:10.0.0.1:70000", "bad port"),
            ("sip:10.0.0.1:90a", "bad port"),
            ("sip:300.1.1.1", "bad host"),
            ("sip:ho st", "bad host"),
            ("sip:-x.com", "bad host"),
            ("sip:[::1", "unclosed"),
            ("sip:[zz::1]:5", "bad IPv6"),
            ("sip:[::1]x", "unexpected"),
            ("sip:1.2.3.4;transport=carrier-pigeon", "unknown transport"),
            ("sip:!!garbage!!", "bad host"),
        ] {
            let e = DestUri::parse(uri).unwrap_err();
            assert!(e.0.contains(reason), "{uri}: {e}");
        }
    }
}
