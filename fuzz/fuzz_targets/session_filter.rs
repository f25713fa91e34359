//! Trace session filters (`core::session::filter`), the arguments of
//! `trace_start` (`core::session::parse_start`) and method lists
//! (`core::noise::MethodSet`, for `method=` and `trace_skip_methods`).
//!
//! - The first byte picks what the rest is: a filter's text, the five
//!   arguments of `trace_start`, a method list, or a SIP message and the
//!   source IP it came from.
//! - A filter that parses has a canonical text that parses back to the
//!   same filter, is no longer than the limit, and prints each key once,
//!   in the grammar's order; a refusal about a key names a key of the
//!   grammar (or the unknown one given) and starts with it.
//! - A message is matched against filters the input gives, without
//!   panicking; and a filter made of the message's own From, To, request
//!   URI, method, Call-ID and source, where those are valid filter
//!   values, matches the message.
//! - `parse_start` never panics; what it accepts respects the limits.
//!   Host names are never looked up: the resolver takes IP literals only.

#![no_main]

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use siptrace::core::dest::DestUri;
use siptrace::core::noise::MethodSet;
use siptrace::core::record::Scope;
use siptrace::core::session::filter::{Cidr, Filter, Request, KEYS, MAX_FILTER_LEN};
use siptrace::core::session::{self, Limits, StartArgs};
use siptrace::core::sip;
use std::net::IpAddr;

fn check_filter(text: &str) {
    match Filter::parse(text) {
        Ok(f) => {
            let canonical = f.to_string();
            assert!(canonical.len() <= MAX_FILTER_LEN + 64, "{canonical}");
            let again = Filter::parse(&canonical).unwrap_or_else(|e| panic!("{canonical:?}: {e}"));
            assert_eq!(again, f, "{text:?} -> {canonical:?}");
            assert_eq!(again.to_string(), canonical);
            let keys: Vec<&str> =
                canonical.split(';').map(|c| c.split_once('=').expect("key=value").0).collect();
            let mut order: Vec<usize> =
                keys.iter().map(|k| KEYS.iter().position(|known| known == k).expect("a known key")).collect();
            let before = order.clone();
            order.sort();
            order.dedup();
            assert_eq!(order, before, "each key once, in order: {canonical}");
        }
        Err(e) => {
            let shown = e.to_string();
            if let Some(key) = &e.key {
                assert!(shown.starts_with(&format!("key '{key}': ")), "{shown}");
                let lower = key.to_ascii_lowercase();
                assert!(KEYS.contains(&key.as_str()) || e.reason.starts_with("unknown key"), "{shown}");
                assert_eq!(&lower, key, "keys are reported in lower case");
            }
        }
    }
}

fn check_methods(text: &str) {
    if let Ok(set) = MethodSet::parse(text) {
        assert!(!set.is_empty());
        let shown = set.to_string();
        assert_eq!(MethodSet::parse(&shown).as_ref(), Ok(&set), "{shown}");
        for m in set.iter() {
            assert!(set.contains(m) && set.contains(&m.to_ascii_lowercase()));
        }
    }
}

fn check_start(u: &mut Unstructured<'_>) -> Result<()> {
    let opt = |u: &mut Unstructured<'_>| -> Result<Option<String>> {
        Ok(if u.ratio(7, 8)? { Some(u.arbitrary()?) } else { None })
    };
    let (name, filter, seconds, uri, scope) = (opt(u)?, opt(u)?, opt(u)?, opt(u)?, opt(u)?);
    let limits = Limits {
        max_seconds: u.int_in_range(1..=session::LIMIT_MAX_SECONDS)?,
        default_scope: *u.choose(&[Scope::Message, Scope::Transaction, Scope::Dialog])?,
        streams: u.arbitrary()?,
    };
    let args = StartArgs {
        name: name.as_deref(),
        filter: filter.as_deref(),
        seconds: seconds.as_deref(),
        uri: uri.as_deref(),
        scope: scope.as_deref(),
    };
    let literal = |d: &DestUri| d.literal().map(|d| (d, None)).ok_or_else(|| "no lookups here".to_string());
    match session::parse_start(&args, &limits, literal) {
        Ok(spec) => {
            assert!((1..=limits.max_seconds).contains(&spec.seconds));
            assert!(!spec.name.is_empty() && spec.name.len() <= session::MAX_NAME_LEN);
            assert_eq!(spec.uri.is_some(), spec.dest.is_some());
            assert!(spec.uri.as_ref().map_or(0, String::len) <= session::MAX_URI_LEN);
            assert_eq!(Filter::parse(&spec.filter.to_string()).as_ref(), Ok(&spec.filter));
        }
        Err(e) => assert!(e.to_string().starts_with(&format!("bad {}: ", e.arg))),
    }
    Ok(())
}

/// A value a filter key takes, if `bytes` is one.
fn value(bytes: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(bytes).ok()?;
    let plain = !text.is_empty()
        && text.len() <= 128
        && !text.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, ';' | '<' | '>' | '@' | '='));
    plain.then_some(text)
}

/// `user@host` of a SIP URI, as a filter would name it.
fn user_host(uri: &[u8]) -> Option<String> {
    let (user, host) = sip::uri_user_host(uri);
    let scheme = uri.iter().position(|&c| c == b':').map(|i| &uri[..i]);
    if !scheme.is_some_and(|s| s.eq_ignore_ascii_case(b"sip") || s.eq_ignore_ascii_case(b"sips")) {
        return None;
    }
    Some(format!("{}@{}", value(user)?, value(host)?)).filter(|v| v.len() <= 128)
}

fn check_match(mut u: Unstructured<'_>) -> Result<()> {
    let u = &mut u;
    let v6: bool = u.arbitrary()?;
    let src: IpAddr = if v6 {
        std::net::Ipv6Addr::from(u.arbitrary::<[u8; 16]>()?).into()
    } else {
        std::net::Ipv4Addr::from(u.arbitrary::<[u8; 4]>()?).into()
    };
    let prefix = u.int_in_range(0..=if v6 { 128u8 } else { 32 })?;
    // The filter's length first, so that the message is the input's tail
    // as it is (arbitrary's own lengths are read from the end).
    let filter_len = u.arbitrary::<u8>()? as usize;
    let filter_text = String::from_utf8_lossy(u.bytes(filter_len.min(u.len()))?).into_owned();
    let msg = std::mem::replace(u, Unstructured::new(&[])).take_rest();
    let Some(summary) = sip::summary(msg) else { return Ok(()) };
    let req = Request::new(&summary, src);
    if let Ok(f) = Filter::parse(&filter_text) {
        let _ = f.matches(&req);
    }
    // A filter of the request's own parts matches it.
    let mut clauses = Vec::new();
    let network = Cidr::parse(&format!("{}/{prefix}", mask(src, prefix))).expect("a masked network parses");
    assert!(network.contains(src));
    clauses.push(format!("src={network}"));
    if let Some(uri) = summary.from_uri.and_then(user_host) {
        clauses.push(format!("from={uri}"));
    }
    if let Some(uri) = summary.to_uri.and_then(user_host) {
        clauses.push(format!("to={uri}"));
    }
    if let Some(uri) = summary.ruri.and_then(user_host) {
        clauses.push(format!("ruri={uri}"));
    }
    if let Some(m) = summary.method().and_then(value).filter(|m| MethodSet::parse(m).is_ok()) {
        if !m.eq_ignore_ascii_case("ACK") && !m.eq_ignore_ascii_case("CANCEL") {
            clauses.push(format!("method={m}"));
        }
    }
    let call_id = summary.call_id.and_then(|id| std::str::from_utf8(id).ok()).filter(|id| {
        id.len() <= 255 && !id.contains(';') && !id.bytes().any(|c| c.is_ascii_whitespace() || c.is_ascii_control())
    });
    if let Some(id) = call_id {
        clauses.push(format!("callid={id}"));
    }
    let own = clauses.join(";");
    if own.len() <= MAX_FILTER_LEN {
        let f = Filter::parse(&own).unwrap_or_else(|e| panic!("{own:?}: {e}"));
        assert!(f.matches(&req), "{own} does not match {:?}", String::from_utf8_lossy(msg));
    }
    Ok(())
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - prefix as u32).unwrap_or(0);
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - prefix as u32).unwrap_or(0);
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    match which % 4 {
        0 => check_filter(&String::from_utf8_lossy(rest)),
        1 => check_methods(&String::from_utf8_lossy(rest)),
        2 => {
            let _ = check_start(&mut Unstructured::new(rest));
        }
        _ => {
            let _ = check_match(Unstructured::new(rest));
        }
    }
});
