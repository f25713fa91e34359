//! Trace sessions: tracing on demand, started and stopped at run time
//! (`siptrace.trace_start`, `trace_stop`, `trace_list` on Kamailio), with a
//! filter, a destination, a scope and an end.
//!
//! - [`filter`]: the filter grammar, its parser and the matcher;
//! - [`table`]: the sessions in shared memory, and each worker's copy;
//! - here: the arguments of `trace_start`, checked into a [`Spec`].
//!
//! Host names in a session's URI are resolved once, by the process that
//! runs the command, never per message; the binding passes the resolver.

pub mod filter;
pub mod table;

use crate::core::dest::{DestUri, Destination};
use crate::core::endpoint::Transport;
use crate::core::record::Scope;
use filter::Filter;
use std::fmt;

/// Longest session name.
pub const MAX_NAME_LEN: usize = 64;
/// Longest destination URI.
pub const MAX_URI_LEN: usize = 256;
/// The default and the largest `trace_session_max_seconds`.
pub const DEFAULT_MAX_SECONDS: u32 = 3600;
pub const LIMIT_MAX_SECONDS: u32 = 7 * 24 * 3600;
/// The default and the largest `trace_sessions_max`.
pub const DEFAULT_MAX_SESSIONS: u32 = 16;
pub const LIMIT_MAX_SESSIONS: u32 = 256;

/// A session, as `trace_start` defined it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub name: String,
    pub filter: Filter,
    /// How long it lasts.
    pub seconds: u32,
    /// The destination URI as given; `None`: the configured destinations.
    pub uri: Option<String>,
    /// Where `uri` resolved to.
    pub dest: Option<Destination>,
    /// For a TLS destination, the name its certificate must carry.
    pub tls_name: Option<String>,
    pub scope: Scope,
}

impl Spec {
    /// The URI as listed: the one given, or "default".
    pub fn uri_text(&self) -> &str {
        self.uri.as_deref().unwrap_or("default")
    }

    /// The scope's letter, as `trace_start` takes it.
    pub fn scope_letter(&self) -> &'static str {
        match self.scope {
            Scope::Message => "m",
            Scope::Transaction => "t",
            Scope::Dialog => "d",
        }
    }
}

/// The arguments of `trace_start name filter seconds [uri [scope]]` as
/// text, as every RPC transport can give them.
#[derive(Debug, Clone, Copy, Default)]
pub struct StartArgs<'a> {
    pub name: Option<&'a str>,
    pub filter: Option<&'a str>,
    pub seconds: Option<&'a str>,
    pub uri: Option<&'a str>,
    pub scope: Option<&'a str>,
}

/// What the configuration sets for sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `trace_session_max_seconds`.
    pub max_seconds: u32,
    /// `d` where the dialog module is loaded, else `t`.
    pub default_scope: Scope,
    /// Whether records can go over TCP and TLS: HEP below version 3 has
    /// no length to frame a stream with.
    pub streams: bool,
}

/// Why `trace_start` was refused: the argument, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgError {
    pub arg: &'static str,
    pub reason: String,
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad {}: {}", self.arg, self.reason)
    }
}

fn arg_error<T>(arg: &'static str, reason: impl Into<String>) -> Result<T, ArgError> {
    Err(ArgError { arg, reason: reason.into() })
}

/// A destination as the resolver gives it: the address, and for TLS the
/// name the collector's certificate must carry.
pub type Resolved = (Destination, Option<String>);

/// Checks the arguments of `trace_start` into a session. `resolve` turns
/// a destination URI into an address (a name lookup: the caller is the
/// RPC process, never a SIP worker) and checks that a TLS destination can
/// be used.
pub fn parse_start(
    args: &StartArgs<'_>,
    limits: &Limits,
    resolve: impl FnOnce(&DestUri) -> Result<Resolved, String>,
) -> Result<Spec, ArgError> {
    let name = parse_name(args.name)?;
    let Some(filter_text) = args.filter else {
        return arg_error("filter", "missing; give key=value pairs joined by ';', such as from=alice");
    };
    let filter = Filter::parse(filter_text).map_err(|e| ArgError { arg: "filter", reason: e.to_string() })?;
    let seconds = parse_seconds(args.seconds, limits.max_seconds)?;
    let scope = match args.scope.map(str::trim_ascii) {
        None | Some("") => limits.default_scope,
        Some(text) => match Scope::parse(text) {
            Ok(scope) => scope,
            Err(e) => return arg_error("scope", format!("'{text}': {e}")),
        },
    };
    let (uri, dest, tls_name) = match args.uri.map(str::trim_ascii) {
        None | Some("") => (None, None, None),
        Some(text) if text.eq_ignore_ascii_case("default") => (None, None, None),
        Some(text) => {
            if text.len() > MAX_URI_LEN {
                return arg_error("uri", format!("longer than {MAX_URI_LEN} bytes"));
            }
            let parsed = DestUri::parse_supported(text)
                .map_err(|e| ArgError { arg: "uri", reason: format!("'{text}': {e}") })?;
            if parsed.transport != Transport::Udp && !limits.streams {
                return arg_error(
                    "uri",
                    format!(
                        "'{text}': HEP below version 3 has no length field to frame it on a stream; use UDP"
                    ),
                );
            }
            let (dest, tls_name) =
                resolve(&parsed).map_err(|e| ArgError { arg: "uri", reason: format!("'{text}': {e}") })?;
            (Some(text.to_string()), Some(dest), tls_name)
        }
    };
    Ok(Spec { name, filter, seconds, uri, dest, tls_name, scope })
}

/// A session name: 1 to 64 letters, digits and `_-.:@+`.
pub fn parse_name(name: Option<&str>) -> Result<String, ArgError> {
    let Some(name) = name.map(str::trim_ascii) else {
        return arg_error("name", "missing; every session has a name, for trace_list and trace_stop");
    };
    let valid_char = |c: char| c.is_ascii_alphanumeric() || "_-.:@+".contains(c);
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.chars().all(valid_char) {
        return arg_error(
            "name",
            format!("'{name}': 1 to {MAX_NAME_LEN} letters, digits and the characters _-.:@+"),
        );
    }
    Ok(name.to_string())
}

fn parse_seconds(text: Option<&str>, max: u32) -> Result<u32, ArgError> {
    let Some(text) = text.map(str::trim_ascii) else {
        return arg_error(
            "seconds",
            format!("missing; give how long the session lasts, 1 to {max} (trace_session_max_seconds)"),
        );
    };
    match text.parse::<u64>() {
        Ok(n) if n >= 1 && n <= u64::from(max) => Ok(n as u32),
        Ok(n) if n > u64::from(max) => {
            arg_error("seconds", format!("{n} is over {max}, the most trace_session_max_seconds allows"))
        }
        _ => arg_error("seconds", format!("'{text}': a whole number of seconds, 1 to {max}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { max_seconds: 3600, default_scope: Scope::Dialog, streams: true };

    fn args<'a>(name: &'a str, filter: &'a str, seconds: &'a str) -> StartArgs<'a> {
        StartArgs { name: Some(name), filter: Some(filter), seconds: Some(seconds), uri: None, scope: None }
    }

    fn no_lookup(_: &DestUri) -> Result<Resolved, String> {
        panic!("no lookup expected")
    }

    fn literal(uri: &DestUri) -> Result<Resolved, String> {
        uri.literal().map(|d| (d, None)).ok_or_else(|| "cannot resolve".to_string())
    }

    #[test]
    fn a_session_with_defaults() {
        let spec = parse_start(&args("alice", "from=alice", "600"), &LIMITS, no_lookup).unwrap();
        assert_eq!(spec.name, "alice");
        assert_eq!(spec.filter.to_string(), "from=alice");
        assert_eq!(
            (spec.seconds, spec.scope, spec.uri_text(), spec.dest),
            (600, Scope::Dialog, "default", None)
        );
        let t = Limits { default_scope: Scope::Transaction, ..LIMITS };
        assert_eq!(parse_start(&args("a", "from=a", "1"), &t, no_lookup).unwrap().scope, Scope::Transaction);
        let mut a = args("a", "from=a", " 3600 ");
        a.uri = Some("default");
        a.scope = Some("m");
        let spec = parse_start(&a, &LIMITS, no_lookup).unwrap();
        assert_eq!((spec.seconds, spec.scope, spec.uri.as_deref()), (3600, Scope::Message, None));
        assert_eq!(spec.scope_letter(), "m");
    }

    #[test]
    fn a_session_with_its_own_destination() {
        let mut a = args("trunk", "src=10.0.0.0/8", "900");
        a.uri = Some("sip:127.0.0.1:9061;transport=tcp");
        a.scope = Some("t");
        let spec = parse_start(&a, &LIMITS, literal).unwrap();
        assert_eq!(spec.uri.as_deref(), Some("sip:127.0.0.1:9061;transport=tcp"));
        let dest = spec.dest.unwrap();
        assert_eq!((dest.addr, dest.transport), ("127.0.0.1:9061".parse().unwrap(), Transport::Tcp));
        let named = |uri: &DestUri| -> Result<Resolved, String> {
            assert_eq!(uri.host_text(), "homer.example.com");
            Ok((
                Destination { addr: "192.0.2.5:9061".parse().unwrap(), transport: uri.transport },
                Some(uri.host_text()),
            ))
        };
        a.uri = Some("sips:homer.example.com:9061");
        let spec = parse_start(&a, &LIMITS, named).unwrap();
        assert_eq!(spec.tls_name.as_deref(), Some("homer.example.com"));
        assert_eq!(spec.dest.unwrap().transport, Transport::Tls);
    }

    #[test]
    fn bad_arguments_are_named() {
        let long_name = "n".repeat(65);
        let cases: Vec<(StartArgs<'_>, &str, &str)> = vec![
            (StartArgs::default(), "name", "missing"),
            (args("", "from=a", "1"), "name", "1 to 64"),
            (args("two words", "from=a", "1"), "name", "letters, digits"),
            (args(&long_name, "from=a", "1"), "name", "1 to 64"),
            (StartArgs { name: Some("a"), ..Default::default() }, "filter", "missing"),
            (args("a", "frm=alice", "1"), "filter", "key 'frm': unknown key"),
            (args("a", "src=10.0.0.0/33", "1"), "filter", "key 'src'"),
            (
                StartArgs { name: Some("a"), filter: Some("from=a"), ..Default::default() },
                "seconds",
                "missing",
            ),
            (args("a", "from=a", "3601"), "seconds", "3601 is over 3600"),
            (args("a", "from=a", "0"), "seconds", "1 to 3600"),
            (args("a", "from=a", "-5"), "seconds", "a whole number"),
            (args("a", "from=a", "ten"), "seconds", "a whole number"),
            (
                StartArgs { uri: Some("!!garbage!!"), ..args("a", "from=a", "5") },
                "uri",
                "expected a sip: URI",
            ),
            (
                StartArgs { uri: Some("sip:10.0.0.1;transport=ws"), ..args("a", "from=a", "5") },
                "uri",
                "not supported",
            ),
            (
                StartArgs { uri: Some("sip:unknown.invalid"), ..args("a", "from=a", "5") },
                "uri",
                "cannot resolve",
            ),
            (StartArgs { scope: Some("x"), ..args("a", "from=a", "5") }, "scope", "expected m"),
        ];
        for (a, arg, why) in cases {
            let e = parse_start(&a, &LIMITS, literal).unwrap_err();
            assert_eq!(e.arg, arg, "{a:?}: {e}");
            assert!(e.to_string().starts_with(&format!("bad {arg}: ")), "{e}");
            assert!(e.reason.contains(why), "{a:?}: {e}");
        }
        let udp_only = Limits { streams: false, ..LIMITS };
        let tcp = StartArgs { uri: Some("sip:127.0.0.1:9;transport=tcp"), ..args("a", "from=a", "5") };
        assert!(parse_start(&tcp, &udp_only, literal).unwrap_err().reason.contains("use UDP"));
    }
}
