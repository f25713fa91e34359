//! The filter of a trace session: which initial requests it matches.
//!
//! ```text
//! filter = clause *( ";" clause )
//! clause = key "=" value
//! key    = "from" / "to" / "ruri" / "src" / "method" / "callid"
//! ```
//!
//! - `from`, `to`, `ruri`: `user` or `user@host`, compared with the user
//!   (exactly) and host (without regard to case) of the From URI, the To
//!   URI or the request URI. For a `tel:` URI the user is the number.
//! - `src`: the source IP of the request, an address or a CIDR block,
//!   IPv4 or IPv6 (`192.0.2.7`, `10.0.0.0/8`, `2001:db8::/32`).
//! - `method`: a `|` list of methods (`INVITE|MESSAGE`), without regard to
//!   case.
//! - `callid`: the Call-ID, exactly.
//!
//! Every key given must match; a key may be given once. Blanks around
//! keys, values and clauses are ignored, and so are empty clauses, but a
//! filter needs at least one clause.

use crate::core::noise::MethodSet;
use crate::core::sip::Summary;
use std::cell::OnceCell;
use std::fmt;
use std::net::IpAddr;

/// Longest filter text accepted.
pub const MAX_FILTER_LEN: usize = 1024;
/// Longest `from`, `to` or `ruri` value.
pub const MAX_USER_HOST_LEN: usize = 128;
/// Longest `callid` value.
pub const MAX_CALL_ID_LEN: usize = 255;

/// The keys, in the order of the canonical text.
pub const KEYS: [&str; 6] = ["from", "to", "ruri", "src", "method", "callid"];

/// Why a filter was refused: the key it is about, when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    pub key: Option<String>,
    pub reason: String,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(f, "key '{key}': {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

fn key_error(key: &str, reason: impl Into<String>) -> FilterError {
    FilterError { key: Some(key.to_string()), reason: reason.into() }
}

/// `user` or `user@host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserHost {
    pub user: Box<[u8]>,
    pub host: Option<Box<[u8]>>,
}

impl UserHost {
    fn parse(key: &str, value: &str) -> Result<UserHost, FilterError> {
        if value.len() > MAX_USER_HOST_LEN {
            return Err(key_error(key, format!("longer than {MAX_USER_HOST_LEN} bytes")));
        }
        if let Some(c) =
            value.chars().find(|c| c.is_whitespace() || c.is_control() || matches!(c, ';' | '<' | '>'))
        {
            return Err(key_error(key, format!("'{value}' holds {c:?}; expected user or user@host")));
        }
        let (user, host) = match value.split_once('@') {
            Some((user, host)) => (user, Some(host)),
            None => (value, None),
        };
        if user.is_empty() {
            return Err(key_error(key, format!("'{value}' has no user; expected user or user@host")));
        }
        if let Some(host) = host {
            if host.is_empty() || host.contains('@') {
                return Err(key_error(key, format!("'{value}' has a bad host; expected user or user@host")));
            }
        }
        Ok(UserHost {
            user: user.as_bytes().into(),
            host: host.map(|h| h.to_ascii_lowercase().into_bytes().into_boxed_slice()),
        })
    }

    /// Whether a URI (`sip:user@host:port;params`, `tel:+123;params`) has
    /// this user and, when given, this host.
    pub fn matches(&self, uri: &[u8]) -> bool {
        self.matches_parts(uri_user_host(uri))
    }

    /// The same, for a URI's user and host.
    fn matches_parts(&self, (user, host): (&[u8], &[u8])) -> bool {
        user == &self.user[..] && self.host.as_deref().map_or(true, |h| h.eq_ignore_ascii_case(host))
    }
}

impl fmt::Display for UserHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.user))?;
        if let Some(host) = &self.host {
            write!(f, "@{}", String::from_utf8_lossy(host))?;
        }
        Ok(())
    }
}

/// The user and host of a SIP or tel URI; empty where there is none.
fn uri_user_host(uri: &[u8]) -> (&[u8], &[u8]) {
    let scheme_end = uri.iter().position(|&c| c == b':');
    if let Some(i) = scheme_end {
        if uri[..i].eq_ignore_ascii_case(b"tel") {
            let number = &uri[i + 1..];
            let end = number.iter().position(|&c| c == b';').unwrap_or(number.len());
            return (&number[..end], b"");
        }
    }
    crate::core::sip::uri_user_host(uri)
}

/// An IP network: an address and how many leading bits count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(value: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match value.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (value, None),
        };
        let addr = addr.strip_prefix('[').and_then(|a| a.strip_suffix(']')).unwrap_or(addr);
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("'{value}' is not an IP address or CIDR block such as 10.0.0.0/8"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && !p.starts_with('+') => n,
                _ => {
                    return Err(format!("'{value}' has a bad prefix length; {} is 0 to {max}", family(addr)))
                }
            },
        };
        let cidr = Cidr { addr, prefix };
        if cidr.network() != addr {
            return Err(format!(
                "'{value}' has bits set past the prefix; the block is {}/{prefix}",
                cidr.network()
            ));
        }
        Ok(cidr)
    }

    fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => IpAddr::V4((u32::from(a) & mask32(self.prefix)).into()),
            IpAddr::V6(a) => IpAddr::V6((u128::from(a) & mask128(self.prefix)).into()),
        }
    }

    /// Whether `ip` is in the block. An IPv4 address mapped into IPv6
    /// (`::ffff:192.0.2.1`) counts as the IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let in_v4 = |net: std::net::Ipv4Addr, ip: std::net::Ipv4Addr| {
            u32::from(ip) & mask32(self.prefix) == u32::from(net)
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => in_v4(net, ip),
            (IpAddr::V4(net), IpAddr::V6(ip)) => ip.to_ipv4_mapped().is_some_and(|ip| in_v4(net, ip)),
            (IpAddr::V6(net), IpAddr::V6(ip)) => u128::from(ip) & mask128(self.prefix) == u128::from(net),
            (IpAddr::V6(_), IpAddr::V4(_)) => false,
        }
    }
}

fn family(addr: IpAddr) -> &'static str {
    if addr.is_ipv4() {
        "IPv4's"
    } else {
        "IPv6's"
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - prefix as u32).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - prefix as u32).unwrap_or(0)
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let full = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.prefix == full {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

/// A parsed filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub from: Option<UserHost>,
    pub to: Option<UserHost>,
    pub ruri: Option<UserHost>,
    pub src: Option<Cidr>,
    pub methods: Option<MethodSet>,
    pub call_id: Option<Box<[u8]>>,
}

/// What a request offers a filter: its summary and where it came from.
/// The users and hosts of its URIs are read once, when a filter first
/// asks, whatever the number of filters.
#[derive(Debug)]
pub struct Request<'a> {
    summary: &'a Summary<'a>,
    src: IpAddr,
    from: OnceCell<Option<(&'a [u8], &'a [u8])>>,
    to: OnceCell<Option<(&'a [u8], &'a [u8])>>,
    ruri: OnceCell<Option<(&'a [u8], &'a [u8])>>,
}

impl<'a> Request<'a> {
    pub fn new(summary: &'a Summary<'a>, src: IpAddr) -> Request<'a> {
        Request { summary, src, from: OnceCell::new(), to: OnceCell::new(), ruri: OnceCell::new() }
    }
}

impl Filter {
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        let whole = |reason: String| FilterError { key: None, reason };
        if text.len() > MAX_FILTER_LEN {
            return Err(whole(format!("the filter is longer than {MAX_FILTER_LEN} bytes")));
        }
        let mut f = Filter::default();
        let mut any = false;
        for clause in text.split(';').map(str::trim_ascii).filter(|c| !c.is_empty()) {
            let Some((key, value)) = clause.split_once('=') else {
                return Err(whole(format!("'{clause}' is not key=value; the keys are {}", KEYS.join(", "))));
            };
            let key = key.trim_ascii().to_ascii_lowercase();
            let value = value.trim_ascii();
            let Some(&known) = KEYS.iter().find(|k| **k == key) else {
                return Err(key_error(&key, format!("unknown key; the keys are {}", KEYS.join(", "))));
            };
            if value.is_empty() {
                return Err(key_error(known, "empty value"));
            }
            let twice = || key_error(known, "given twice");
            match known {
                "from" | "to" | "ruri" => {
                    let slot = match known {
                        "from" => &mut f.from,
                        "to" => &mut f.to,
                        _ => &mut f.ruri,
                    };
                    if slot.is_some() {
                        return Err(twice());
                    }
                    *slot = Some(UserHost::parse(known, value)?);
                }
                "src" => {
                    if f.src.is_some() {
                        return Err(twice());
                    }
                    f.src = Some(Cidr::parse(value).map_err(|e| key_error(known, e))?);
                }
                "method" => {
                    if f.methods.is_some() {
                        return Err(twice());
                    }
                    let methods = MethodSet::parse(value).map_err(|e| key_error(known, e))?;
                    if let Some(m) = methods.iter().find(|m| *m == b"ACK" || *m == b"CANCEL") {
                        return Err(key_error(
                            known,
                            format!(
                                "{} is never matched: sessions match initial requests, and ACK and CANCEL \
                                 follow the INVITE they belong to",
                                String::from_utf8_lossy(m)
                            ),
                        ));
                    }
                    f.methods = Some(methods);
                }
                _ => {
                    if f.call_id.is_some() {
                        return Err(twice());
                    }
                    if value.len() > MAX_CALL_ID_LEN {
                        return Err(key_error(known, format!("longer than {MAX_CALL_ID_LEN} bytes")));
                    }
                    if value.bytes().any(|c| c.is_ascii_whitespace() || c.is_ascii_control()) {
                        return Err(key_error(
                            known,
                            format!("'{value}' holds a blank or a control character"),
                        ));
                    }
                    f.call_id = Some(value.as_bytes().into());
                }
            }
            any = true;
        }
        if !any {
            return Err(whole(format!(
                "the filter is empty; give at least one key=value (the keys are {})",
                KEYS.join(", ")
            )));
        }
        Ok(f)
    }

    /// Whether an initial request matches every key of the filter. The
    /// cheap keys are looked at first.
    pub fn matches(&self, req: &Request<'_>) -> bool {
        let s = req.summary;
        if let Some(cidr) = &self.src {
            if !cidr.contains(req.src) {
                return false;
            }
        }
        if let Some(methods) = &self.methods {
            if !s.method().is_some_and(|m| methods.contains(m)) {
                return false;
            }
        }
        if let Some(id) = &self.call_id {
            if s.call_id != Some(&id[..]) {
                return false;
            }
        }
        uri_matches(&self.from, &req.from, s.from_uri)
            && uri_matches(&self.to, &req.to, s.to_uri)
            && uri_matches(&self.ruri, &req.ruri, s.ruri)
    }
}

/// Whether `pattern`, when given, names `uri`, whose user and host are
/// read once, into `parts`.
fn uri_matches<'a>(
    pattern: &Option<UserHost>,
    parts: &OnceCell<Option<(&'a [u8], &'a [u8])>>,
    uri: Option<&'a [u8]>,
) -> bool {
    match pattern {
        None => true,
        Some(p) => parts.get_or_init(|| uri.map(uri_user_host)).is_some_and(|parts| p.matches_parts(parts)),
    }
}

/// The canonical text: the keys in the order of [`KEYS`], values as parsed.
impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        let mut clause = |f: &mut fmt::Formatter<'_>, key: &str, value: &dyn fmt::Display| {
            let r = write!(f, "{sep}{key}={value}");
            sep = ";";
            r
        };
        if let Some(v) = &self.from {
            clause(f, "from", v)?;
        }
        if let Some(v) = &self.to {
            clause(f, "to", v)?;
        }
        if let Some(v) = &self.ruri {
            clause(f, "ruri", v)?;
        }
        if let Some(v) = &self.src {
            clause(f, "src", v)?;
        }
        if let Some(v) = &self.methods {
            clause(f, "method", v)?;
        }
        if let Some(v) = &self.call_id {
            clause(f, "callid", &String::from_utf8_lossy(v))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::sip::summary;

    const ALICE: &[u8] = b"INVITE sip:bob@b.example:5060;transport=udp SIP/2.0\r\n\
From: \"Alice\" <sip:alice@A.example>;tag=1\r\n\
To: <sip:bob@b.example>\r\n\
Call-ID: call-1@a.example\r\n\
CSeq: 1 INVITE\r\n\r\n";

    fn matches(filter: &str, msg: &[u8], src: &str) -> bool {
        let s = summary(msg).unwrap();
        Filter::parse(filter).unwrap().matches(&Request::new(&s, src.parse().unwrap()))
    }

    #[test]
    fn each_key_matches_its_part_of_the_request() {
        let ip = "192.0.2.7";
        for (filter, expected) in [
            ("from=alice", true),
            ("from=alice@a.example", true),
            ("from=alice@A.EXAMPLE", true),
            ("from=Alice", false),
            ("from=alic", false),
            ("from=alice@b.example", false),
            ("to=bob", true),
            ("to=bob@b.example", true),
            ("to=alice", false),
            ("ruri=bob@b.example", true),
            ("ruri=carol", false),
            ("src=192.0.2.7", true),
            ("src=192.0.2.0/24", true),
            ("src=0.0.0.0/0", true),
            ("src=192.0.3.0/24", false),
            ("src=2001:db8::/32", false),
            ("method=INVITE", true),
            ("method=message|invite", true),
            ("method=MESSAGE", false),
            ("callid=call-1@a.example", true),
            ("callid=call-1", false),
            ("from=alice;to=bob;ruri=bob;src=192.0.2.0/25;method=INVITE;callid=call-1@a.example", true),
            ("from=alice;to=carol", false),
            (" from = alice ; ; method=INVITE ;", true),
            ("FROM=alice", true),
        ] {
            assert_eq!(matches(filter, ALICE, ip), expected, "{filter}");
        }
    }

    #[test]
    fn ipv6_sources_and_mapped_ipv4() {
        assert!(matches("src=2001:db8::/32", ALICE, "2001:db8::5"));
        assert!(matches("src=[2001:db8::5]", ALICE, "2001:db8::5"));
        assert!(!matches("src=2001:db8::/32", ALICE, "2001:db9::5"));
        assert!(!matches("src=2001:db8::/32", ALICE, "192.0.2.7"));
        assert!(matches("src=192.0.2.0/24", ALICE, "::ffff:192.0.2.9"));
        assert!(matches("src=::/0", ALICE, "::1"));
        assert!(
            matches("src=::ffff:0.0.0.0/96", ALICE, "::ffff:192.0.2.9"),
            "an IPv6 block of mapped addresses"
        );
        assert!(!matches("src=::/0", ALICE, "192.0.2.9"), "families differ");
    }

    #[test]
    fn tel_uris_match_by_number() {
        let msg = b"MESSAGE tel:+15551234;phone-context=x SIP/2.0\r\nFrom: <tel:+15550000>;tag=2\r\n\
To: <sip:+15551234@gw.example;user=phone>\r\nCall-ID: m\r\nCSeq: 1 MESSAGE\r\n\r\n";
        assert!(matches("ruri=+15551234", msg, "10.0.0.1"));
        assert!(matches("from=+15550000", msg, "10.0.0.1"));
        assert!(matches("to=+15551234@gw.example", msg, "10.0.0.1"));
        assert!(!matches("from=+15550000@gw.example", msg, "10.0.0.1"));
    }

    #[test]
    fn a_request_without_the_part_does_not_match() {
        let bare = b"MESSAGE sip:x SIP/2.0\r\nCSeq: 1 MESSAGE\r\n\r\n";
        assert!(!matches("from=alice", bare, "10.0.0.1"));
        assert!(!matches("callid=x", bare, "10.0.0.1"));
        assert!(matches("method=MESSAGE", bare, "10.0.0.1"));
    }

    #[test]
    fn bad_filters_name_their_key() {
        for (text, key, why) in [
            ("frm=alice", Some("frm"), "unknown key; the keys are from, to, ruri, src, method, callid"),
            ("src=10.0.0.0/33", Some("src"), "bad prefix length; IPv4's is 0 to 32"),
            ("src=2001:db8::/129", Some("src"), "IPv6's is 0 to 128"),
            ("src=10.0.0/8", Some("src"), "not an IP address or CIDR"),
            ("src=10.1.2.3/8", Some("src"), "the block is 10.0.0.0/8"),
            ("src=10.0.0.0/+8", Some("src"), "bad prefix"),
            ("src=10.0.0.0/", Some("src"), "bad prefix"),
            ("src=host.example", Some("src"), "not an IP address"),
            ("method=INVITE|", Some("method"), "empty method"),
            ("method=ACK", Some("method"), "never matched"),
            ("method=INVITE|cancel", Some("method"), "CANCEL is never matched"),
            ("from=", Some("from"), "empty value"),
            ("from=@host", Some("from"), "no user"),
            ("from=alice@", Some("from"), "bad host"),
            ("from=a@b@c", Some("from"), "bad host"),
            ("to=al ice", Some("to"), "expected user or user@host"),
            ("ruri=<sip:x>", Some("ruri"), "expected user"),
            ("from=alice;from=bob", Some("from"), "given twice"),
            ("callid=a b", Some("callid"), "blank"),
            ("alice", None, "not key=value"),
            ("", None, "the filter is empty"),
            (" ; ;", None, "the filter is empty"),
        ] {
            let e = Filter::parse(text).unwrap_err();
            assert_eq!(e.key.as_deref(), key, "{text}: {e}");
            assert!(e.to_string().contains(why), "{text}: {e}");
            if let Some(key) = key {
                assert!(e.to_string().starts_with(&format!("key '{key}'")), "{e}");
            }
        }
        assert!(Filter::parse(&format!("callid={}", "x".repeat(256))).unwrap_err().reason.contains("longer"));
        assert!(Filter::parse(&format!("from={}", "x".repeat(129))).unwrap_err().reason.contains("longer"));
        assert!(Filter::parse(&"from=a;".repeat(200)).unwrap_err().reason.contains("longer than 1024"));
    }

    #[test]
    fn the_canonical_text_parses_back_to_the_same_filter() {
        for text in [
            "method=invite|Message ; src=10.0.0.0/8;from=alice@A.example",
            "callid=abc@def;to=+1555;ruri=x@y",
            "src=2001:DB8::/32",
            "src=192.0.2.1/32",
        ] {
            let f = Filter::parse(text).unwrap();
            let canonical = f.to_string();
            assert_eq!(Filter::parse(&canonical).unwrap(), f, "{text} -> {canonical}");
        }
        assert_eq!(
            Filter::parse("method=invite|Message ; src=10.0.0.0/8;from=alice@A.example").unwrap().to_string(),
            "from=alice@a.example;src=10.0.0.0/8;method=INVITE|MESSAGE"
        );
        assert_eq!(Filter::parse("src=192.0.2.1/32").unwrap().to_string(), "src=192.0.2.1");
    }
}
