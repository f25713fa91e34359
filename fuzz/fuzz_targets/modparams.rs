//! The parsers of module parameters and script arguments: `Config::set`
//! for every exported parameter (and unknown names), then `validate`;
//! `CommandFilter::parse`, `DestUri::parse`/`parse_supported`/`literal`,
//! `Endpoint::parse`, `redact_url`, `Scope::parse`, `TraceTypes::parse`,
//! and OpenSIPS's `trace_id`, `trace_local_ip` and syslog uris
//! (`trace_id::parse`, `trace_id::parse_local_ip`, `trace_text::parse_syslog`).
//! None may panic, and what they accept must be self-consistent.
//! (`DestUri::resolve` is left out: it may ask DNS.)

#![no_main]

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use siptrace::core::rpc_command::CommandFilter;
use siptrace::core::sql::redact_url;
use siptrace::kamailio::config::{Config, ParamType, ParamValue, PARAMS};
use siptrace::core::dest::{DestUri, Host};
use siptrace::core::endpoint::{Endpoint, Transport};
use siptrace::core::event::TraceTypes;
use siptrace::core::record::Scope;

/// Values near the limits the parameters check.
const INTS: &[i32] =
    &[-1, 0, 1, 2, 3, 4, 7, 8, 16, 17, 31, 32, 63, 64, 1000, 1024, 1025, 10_000, 100_000, 1 << 20];

fn int(u: &mut Unstructured<'_>) -> Result<i32> {
    if u.ratio(1, 2)? {
        u.choose(INTS).copied()
    } else {
        u.arbitrary()
    }
}

fn name<'a>(u: &mut Unstructured<'a>) -> Result<(&'a str, Option<ParamType>)> {
    if u.ratio(7, 8)? {
        let (name, ty) = u.choose(PARAMS)?;
        Ok((name.to_str().expect("parameter names are ASCII"), Some(*ty)))
    } else {
        Ok((u.arbitrary()?, None))
    }
}

fn check_config(u: &mut Unstructured<'_>) -> Result<()> {
    let mut c = Config::default();
    let steps = u.int_in_range(0..=8)?;
    for _ in 0..steps {
        let (name, ty) = name(u)?;
        // Mostly of the parameter's own type, sometimes of the other.
        let as_int = match ty {
            Some(ty) if u.ratio(7, 8)? => ty == ParamType::Int,
            _ => u.arbitrary()?,
        };
        let text: &str;
        let value = if as_int {
            ParamValue::Int(int(u)?)
        } else {
            text = u.arbitrary()?;
            ParamValue::Str(text)
        };
        if let Err(e) = c.set(name, value) {
            // A refusal names the parameter and the value, except a secret:
            // the auth key is masked, a database URL's password too.
            assert_eq!(e.param, name);
            let shown = match name {
                "auth_key" => "***".to_string(),
                "db_url" => redact_url(&value.to_string()),
                _ => value.to_string(),
            };
            assert_eq!(e.value, shown);
            // An exported parameter given a value of its type is handled:
            // it never gets the refusal of an unknown one.
            let typed = ty.is_some_and(|ty| (ty == ParamType::Int) == as_int);
            let unknown = Config::default().set("?", value).expect_err("'?' is not a parameter").reason;
            assert!(!(typed && e.reason == unknown), "{name} is not handled: {e}");
            let _ = e.to_string();
        }
    }
    let _ = c.validate().map_err(|e| e.to_string());
    let _ = c.uses_database();
    for p in &c.duplicate_uri {
        p.uri.check_supported().expect("duplicate_uri takes only supported transports");
    }
    if let Some(p) = &c.send_socket_addr {
        assert!(p.uri.literal().is_some(), "the send socket has an IP address");
    }
    assert!((1..=3).contains(&c.settings.hep.version));
    assert!(c.settings.hep.auth_key.as_ref().is_none_or(|k| !k.is_empty()));
    Ok(())
}

fn check_dest(text: &str) {
    let parsed = DestUri::parse(text);
    let supported = DestUri::parse_supported(text);
    match &parsed {
        Ok(d) => {
            assert_ne!(d.port, 0, "{text:?}");
            assert_eq!(d.literal().is_some(), matches!(d.host, Host::Ip(_)));
            if let Some(dest) = d.literal() {
                assert_eq!((dest.addr.port(), dest.transport), (d.port, d.transport));
                assert_eq!(d.host_text(), dest.addr.ip().to_string());
            }
            if let Host::Name(n) = &d.host {
                assert!(
                    !n.is_empty()
                        && n.bytes()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b".-".contains(&c))
                );
            }
            assert_eq!(supported.is_ok(), d.check_supported().is_ok());
            if let Ok(s) = &supported {
                assert_eq!(s, d);
                assert!(matches!(s.transport, Transport::Udp | Transport::Tcp | Transport::Tls));
            }
        }
        Err(_) => assert!(supported.is_err()),
    }
}

fn check_endpoint(text: &str) {
    let Some(e) = Endpoint::parse(text) else { return };
    let shown = e.to_string();
    assert_eq!(e.text().as_bytes(), shown.as_bytes());
    assert_eq!(Endpoint::parse(&shown), Some(e), "{shown:?} does not parse back");
}

fn check_redact(url: &str) {
    let r = redact_url(url);
    if r != url {
        // Only a password between "user:" and the last '@' is replaced.
        let at = url.rfind('@').expect("a masked URL has user info");
        assert!(r.ends_with(&url[at..]) && r.contains(":***@"), "{url:?} -> {r:?}");
        assert!(r.len() <= url.len() + 3);
    }
}

fn check_trace_id(text: &str) {
    use siptrace::core::trace_id::{self, TraceTarget};
    // A syslog uri: what it accepts names a known facility and a level
    // that logs.
    if let Ok(spec) = siptrace::core::trace_text::parse_syslog(text) {
        assert!(spec.level.is_none_or(|l| l != 0 && siptrace::core::trace_text::LEVELS.contains(&l)));
        assert!(spec.facility.is_none_or(|f| f & 7 == 0));
    }
    // trace_local_ip: what it accepts reads the same from its own text.
    if let Ok(end) = trace_id::parse_local_ip(text) {
        assert_eq!(trace_id::parse_local_ip(&end.to_string()), Ok(end));
    }
    let Ok(id) = trace_id::parse(text) else { return };
    // An accepted id has a name, a destination, and parses the same again.
    assert!(!id.name.is_empty() && text.contains(id.name.as_str()));
    match &id.target {
        TraceTarget::Hep(h) => assert!(!h.is_empty()),
        TraceTarget::Db { url, table } => assert!(url.contains("://") && !table.is_empty()),
        _ => {}
    }
    assert_eq!(trace_id::parse(text), Ok(id));
}

fn check_filter(text: &str, command: &str) {
    let Ok(f) = CommandFilter::parse(text) else { return };
    let _ = f.traces(command);
    assert_eq!(CommandFilter::parse(text), Ok(f));
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the parser; the rest is its text, so that the
    // text grows and shrinks with the input.
    let Some((&which, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    let text = text.as_ref();
    match which % 8 {
        0 => {
            let _ = check_config(&mut Unstructured::new(rest));
        }
        1 => {
            // The filter, then a command name after a newline.
            let (filter, command) = text.split_once('\n').unwrap_or((text, "core.uptime"));
            check_filter(filter, command);
        }
        2 => check_dest(text),
        3 => check_endpoint(text),
        4 => check_redact(text),
        5 => {
            let _ = Scope::parse(text).map(Scope::name);
        }
        6 => check_trace_id(text),
        _ => {
            if let Ok(t) = TraceTypes::parse(text) {
                assert_eq!(t.bits() & !7, 0);
                assert_eq!(TraceTypes::from_bits(t.bits()), t);
            }
        }
    }
});
