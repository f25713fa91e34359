//! Records of what is not a SIP message: script log lines, REST queries,
//! RPC commands and connection events. Their payloads and correlations are
//! JSON objects with the field names OpenSIPS's proto_hep uses, so that
//! Homer shows and links them the same way.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};

/// What a traced call sends: its SIP messages, the log lines and the REST
/// queries made while it is processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TraceTypes(u8);

impl TraceTypes {
    pub const SIP: TraceTypes = TraceTypes(1);
    pub const XLOG: TraceTypes = TraceTypes(2);
    pub const REST: TraceTypes = TraceTypes(4);
    const NAMES: [(&'static str, TraceTypes); 3] =
        [("sip", TraceTypes::SIP), ("xlog", TraceTypes::XLOG), ("rest", TraceTypes::REST)];

    /// Reads a list such as `sip|xlog|rest`, case-insensitive.
    pub fn parse(text: &str) -> Result<TraceTypes, String> {
        let mut types = TraceTypes(0);
        for name in text.split('|').map(str::trim) {
            match Self::NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
                Some((_, t)) => types.0 |= t.0,
                None => return Err(format!("unknown trace type '{name}'; the types are sip, xlog and rest")),
            }
        }
        Ok(types)
    }

    pub fn from_bits(bits: u8) -> TraceTypes {
        TraceTypes(bits & 7)
    }

    pub fn bits(self) -> u8 {
        self.0
    }

    pub fn contains(self, other: TraceTypes) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether anything beside SIP messages is traced.
    pub fn beyond_sip(self) -> bool {
        self.0 & !TraceTypes::SIP.0 != 0
    }
}

/// A flat JSON object of string (and number) fields, written as it grows.
#[derive(Debug, Clone, Default)]
pub struct JsonObject {
    text: String,
}

impl JsonObject {
    pub fn new() -> JsonObject {
        JsonObject { text: String::with_capacity(128) }
    }

    /// Adds a string field; bytes that are not UTF-8 become U+FFFD.
    pub fn string(&mut self, name: &str, value: &[u8]) -> &mut JsonObject {
        self.key(name);
        escape_into(&mut self.text, &String::from_utf8_lossy(value));
        self
    }

    pub fn number(&mut self, name: &str, value: i64) -> &mut JsonObject {
        self.key(name);
        let _ = write!(self.text, "{value}");
        self
    }

    fn key(&mut self, name: &str) {
        self.text.push(if self.text.is_empty() { '{' } else { ',' });
        escape_into(&mut self.text, name);
        self.text.push(':');
    }

    /// The object's text; `{}` when it has no field.
    pub fn finish(mut self) -> String {
        if self.text.is_empty() {
            self.text.push('{');
        }
        self.text.push('}');
        self.text
    }
}

fn escape_into(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The extra correlation of a record that belongs to a call:
/// `{"sip":"<call-id>"}`.
pub fn sip_correlation(call_id: &[u8]) -> String {
    let mut o = JsonObject::new();
    o.string("sip", call_id);
    o.finish()
}

/// The extra correlation of a SIP message carried by a connection:
/// `{"net":"<connection id>"}`.
pub fn net_correlation(connection_id: impl std::fmt::Display) -> String {
    let mut o = JsonObject::new();
    o.string("net", connection_id.to_string().as_bytes());
    o.finish()
}

/// Cuts `text` to at most `max` bytes, on a character boundary when it is
/// UTF-8, so that a bounded excerpt stays readable.
pub fn excerpt(text: &[u8], max: usize) -> &[u8] {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while end > 0 && (text[end] & 0xc0) == 0x80 {
        end -= 1;
    }
    &text[..end]
}

/// The server's address when the URL names it by IP; otherwise the
/// unspecified address with the URL's port (no name is resolved here).
pub fn server_address(url: &[u8]) -> SocketAddr {
    let text = String::from_utf8_lossy(url);
    let (default_port, rest) = match text.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => (443, rest),
        Some((_, rest)) => (80, rest),
        None => (80, &text[..]),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':')),
            None => (v6, None),
        },
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let port = port.and_then(|p| p.parse().ok()).unwrap_or(default_port);
    let ip = host.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    SocketAddr::new(ip, port)
}

/// A correlation id of its own for one REST query or RPC command,
/// `<kind>-<pid>-<secs>.<usecs>-<n>`: unique across the server's
/// processes and restarts.
pub fn new_correlation_id(kind: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let now = crate::core::record::Timestamp::now();
    correlation_id(kind, std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed), now.secs, now.usecs)
}

fn correlation_id(kind: &str, pid: u32, counter: u64, secs: u64, usecs: u32) -> String {
    format!("{kind}-{pid}-{secs}.{usecs:06}-{counter}")
}

/// A connection event, with OpenSIPS's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetEvent {
    Accepted,
    Connected,
    Closed,
}

impl NetEvent {
    pub fn name(self) -> &'static str {
        match self {
            NetEvent::Accepted => "ACCEPTED",
            NetEvent::Connected => "CONNECTED",
            NetEvent::Closed => "CLOSED",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types() {
        let t = TraceTypes::parse("sip|XLOG").unwrap();
        assert!(t.contains(TraceTypes::SIP) && t.contains(TraceTypes::XLOG));
        assert!(!t.contains(TraceTypes::REST));
        assert!(t.beyond_sip());
        assert!(!TraceTypes::parse("sip").unwrap().beyond_sip());
        assert_eq!(TraceTypes::parse(" rest | sip ").unwrap(), TraceTypes::from_bits(5));
        assert!(TraceTypes::parse("sip|mi").unwrap_err().contains("'mi'"));
        assert!(TraceTypes::parse("").is_err());
        assert_eq!(TraceTypes::from_bits(0xff).bits(), 7);
    }

    #[test]
    fn json_objects() {
        let mut o = JsonObject::new();
        o.string("Event", b"ERROR").string("text", b"a \"quoted\"\\ line\n\x01").number("code", -5);
        assert_eq!(o.finish(), r#"{"Event":"ERROR","text":"a \"quoted\"\\ line\n\u0001","code":-5}"#);
        assert_eq!(JsonObject::new().finish(), "{}");
        assert_eq!(sip_correlation(b"abc@h"), r#"{"sip":"abc@h"}"#);
        assert_eq!(net_correlation(42), r#"{"net":"42"}"#);
        let mut bad = JsonObject::new();
        bad.string("x", b"\xff");
        assert_eq!(bad.finish(), "{\"x\":\"\u{fffd}\"}");
    }

    #[test]
    fn correlation_ids_differ_per_execution() {
        let a = correlation_id("rpc", 10, 1, 1_700_000_000, 5);
        let b = correlation_id("rpc", 10, 2, 1_700_000_000, 5);
        assert_ne!(a, b);
        assert_eq!(a, "rpc-10-1700000000.000005-1");
        assert_ne!(new_correlation_id("rest"), new_correlation_id("rest"));
        assert!(new_correlation_id("rest").starts_with(&format!("rest-{}-", std::process::id())));
    }

    #[test]
    fn excerpts_end_on_a_character() {
        assert_eq!(excerpt(b"hello", 10), b"hello");
        assert_eq!(excerpt(b"hello", 3), b"hel");
        assert_eq!(excerpt("aé".as_bytes(), 2), b"a");
        assert_eq!(excerpt("aé".as_bytes(), 3), "aé".as_bytes());
    }

    #[test]
    fn server_addresses_from_urls() {
        assert_eq!(server_address(b"http://127.0.0.1:8080/x?y").to_string(), "127.0.0.1:8080");
        assert_eq!(server_address(b"https://[::1]/a").to_string(), "[::1]:443");
        assert_eq!(server_address(b"http://user:pw@10.0.0.1/").to_string(), "10.0.0.1:80");
        assert_eq!(server_address(b"http://example.com:81/").to_string(), "0.0.0.0:81");
        assert_eq!(server_address(b"10.1.1.1:99").to_string(), "10.1.1.1:99");
    }
}
