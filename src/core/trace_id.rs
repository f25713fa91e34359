//! OpenSIPS's `trace_id` modparam: `[name]uri=<destination>[;table=<table>]`.
//! The destination's scheme says what it is: `hep:<hep_id>` (a destination
//! that proto_hep's `hep_id` defines), `sip:` (a plain SIP copy), `file:`,
//! `syslog`, or else a database URL, whose rows go to `table` (default
//! `sip_trace`). Several entries may share a name; `trace("name")` then
//! traces to all of them.

/// Where one `trace_id` entry sends traces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceTarget {
    /// The name of a proto_hep `hep_id`.
    Hep(String),
    /// A SIP URI the message is copied to.
    Sip(String),
    File(String),
    /// `syslog[:facility[:level]]`, as written.
    Syslog(String),
    Db {
        url: String,
        table: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceId {
    pub name: String,
    pub target: TraceTarget,
}

const DEFAULT_TABLE: &str = "sip_trace";

use crate::core::endpoint::{Endpoint, Transport};

/// OpenSIPS's `trace_local_ip`: `[proto:]ip[:port]`, the address traces
/// show for this server on what it sends (and on replies it receives),
/// udp and port 5060 when not given. An IPv6 address is written in
/// brackets (OpenSIPS's tracer cannot take one at all). The tracer takes
/// any name of up to four letters and a hostname, and then fails on every
/// HEP packet; here they refuse the start.
pub fn parse_local_ip(text: &str) -> Result<Endpoint, String> {
    let text = text.trim();
    let (proto, rest) = match text.split_once(':') {
        // `ip:port` (digits after the first colon, as OpenSIPS reads it),
        // or a bracketed IPv6 address that holds colons.
        Some((head, tail))
            if head.starts_with('[') || (!tail.is_empty() && tail.bytes().all(|b| b.is_ascii_digit())) =>
        {
            ("udp", text)
        }
        Some((head, rest)) => (if head.is_empty() { "udp" } else { head }, rest),
        None => ("udp", text),
    };
    let transport = Transport::from_name(&proto.to_ascii_lowercase())
        .ok_or_else(|| format!("'{proto}' is not a protocol (udp, tcp, tls, sctp, ws or wss)"))?;
    let (host, port) = match rest.strip_prefix('[') {
        Some(bracketed) => {
            let (host, after) = bracketed.split_once(']').ok_or("the IPv6 address has no closing ]")?;
            match after {
                "" => (host, None),
                _ => (host, Some(after.strip_prefix(':').ok_or("the port must follow the ] after a colon")?)),
            }
        }
        None => match rest.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        },
    };
    let ip: std::net::IpAddr =
        host.parse().map_err(|_| format!("'{host}' is not an IP address (a hostname cannot go into HEP)"))?;
    let port = match port {
        None => 5060,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(format!("'{p}' is not a port (1-65535)")),
        },
    };
    Ok(Endpoint::new(transport, ip, port))
}

/// Parses one `trace_id` value. The error says what is wrong with it.
pub fn parse(text: &str) -> Result<TraceId, String> {
    let text = text.trim();
    let rest = text.strip_prefix('[').ok_or("it must start with [name]")?;
    let (name, mut rest) = rest.split_once(']').ok_or("the name has no closing ]")?;
    let name = name.trim();
    if name.is_empty() {
        return Err("the name between [ and ] is empty".into());
    }
    let (mut uri, mut table) = (None, None);
    while !rest.trim().is_empty() {
        let (key, after) = rest.split_once('=').ok_or_else(|| format!("no '=' after '{}'", rest.trim()))?;
        let value_end = match key.trim() {
            // A database password may hold a ';' behind a backslash: the
            // value then ends at the first ; after the escaped character.
            "uri" => {
                let escaped =
                    |i: usize| after[i + 1..].chars().next().map_or(after.len(), |c| i + 1 + c.len_utf8());
                let from = after.rfind('\\').map_or(0, escaped);
                after[from..].find(';').map(|i| from + i)
            }
            "table" => after.find(';'),
            other => return Err(format!("unknown key '{other}' (uri and table are known)")),
        };
        let (value, next) = match value_end {
            Some(i) => (&after[..i], &after[i + 1..]),
            None => (after, ""),
        };
        let slot = if key.trim() == "uri" { &mut uri } else { &mut table };
        if slot.replace(value.trim().to_string()).is_some() {
            return Err(format!("'{}' is given twice", key.trim()));
        }
        rest = next;
    }
    let uri = uri.filter(|u| !u.is_empty()).ok_or("it has no uri=")?;
    let scheme = |s: &str| has_scheme(&uri, s);
    let target = if scheme("hep:") {
        TraceTarget::Hep(uri[4..].trim().to_string())
    } else if scheme("sip:") {
        TraceTarget::Sip(uri.clone())
    } else if scheme("file:") {
        TraceTarget::File(uri[5..].to_string())
    } else if scheme("syslog") {
        TraceTarget::Syslog(uri.clone())
    } else if uri.contains("://") {
        TraceTarget::Db { url: uri.clone(), table: table.clone().unwrap_or_else(|| DEFAULT_TABLE.into()) }
    } else {
        return Err(format!("'{uri}' is neither hep:, sip:, file:, syslog nor a database URL"));
    };
    if table.as_deref() == Some("") {
        return Err("table= is empty".into());
    }
    if table.is_some() && !matches!(target, TraceTarget::Db { .. }) {
        return Err("table= is only for database destinations".into());
    }
    if matches!(&target, TraceTarget::Hep(id) if id.is_empty()) {
        return Err("hep: names no hep_id".into());
    }
    Ok(TraceId { name: name.to_string(), target })
}

/// Whether `uri` starts with `scheme`, in any letter case; byte-wise, so
/// that a multibyte character at the cut is no problem.
pub fn has_scheme(uri: &str, scheme: &str) -> bool {
    uri.as_bytes().get(..scheme.len()).is_some_and(|p| p.eq_ignore_ascii_case(scheme.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(text: &str) -> TraceTarget {
        parse(text).unwrap().target
    }

    #[test]
    fn the_documented_forms() {
        assert_eq!(
            parse("[tid]uri=hep:hid").unwrap(),
            TraceId { name: "tid".into(), target: TraceTarget::Hep("hid".into()) }
        );
        assert_eq!(target("[tid]uri=sip:10.10.10.11:5060"), TraceTarget::Sip("sip:10.10.10.11:5060".into()));
        assert_eq!(target("[tid]uri=file:/path/to/file"), TraceTarget::File("/path/to/file".into()));
        assert_eq!(target("[tid]uri=syslog:local0:-1"), TraceTarget::Syslog("syslog:local0:-1".into()));
        assert_eq!(
            target("[tid]uri=mysql://xxxx:xxxx@10.10.10.10/opensips;table=new_sip_trace;"),
            TraceTarget::Db {
                url: "mysql://xxxx:xxxx@10.10.10.10/opensips".into(),
                table: "new_sip_trace".into()
            }
        );
        assert_eq!(
            target("[ t ] uri = postgres://u@h/db "),
            TraceTarget::Db { url: "postgres://u@h/db".into(), table: "sip_trace".into() }
        );
        assert_eq!(parse(" [t]uri=HEP:h").unwrap().name, "t");
    }

    #[test]
    fn a_password_may_hide_a_semicolon_behind_a_backslash() {
        assert_eq!(
            target(r"[tid]uri=mysql://u:p\;w@h/db;table=t"),
            TraceTarget::Db { url: r"mysql://u:p\;w@h/db".into(), table: "t".into() }
        );
        // Whatever follows the backslash, even at the end or beyond ASCII.
        assert!(parse(r"[tid]uri=mysql://u:p\é@h/db").is_ok());
        assert!(parse("[tid]uri=mysql://u:p@h/db\\").is_ok());
    }

    #[test]
    fn local_ip_forms() {
        let e = |t: &str| parse_local_ip(t).map(|e| e.to_string());
        assert_eq!(e("10.1.1.1").unwrap(), "udp:10.1.1.1:5060");
        assert_eq!(e("10.1.1.1:5064").unwrap(), "udp:10.1.1.1:5064");
        assert_eq!(e("tcp:10.1.1.1").unwrap(), "tcp:10.1.1.1:5060");
        assert_eq!(e("TLS:10.1.1.1:5061").unwrap(), "tls:10.1.1.1:5061");
        assert_eq!(e(":10.1.1.1:7").unwrap(), "udp:10.1.1.1:7");
        assert_eq!(e("[2001:db8::1]").unwrap(), "udp:[2001:db8::1]:5060");
        assert_eq!(e("tcp:[2001:db8::1]:5070").unwrap(), "tcp:[2001:db8::1]:5070");
        assert_eq!(e("[::1]:5070").unwrap(), "udp:[::1]:5070");
        assert!(parse_local_ip("proxy.example:5060").unwrap_err().contains("not an IP address"));
        for bad in ["", "abcd:10.1.1.1", "host.example", "10.1.1.1:0", "10.1.1.1:x", "10.1.1.1:70000", "[::1"]
        {
            assert!(parse_local_ip(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_values_say_what_is_wrong() {
        for (text, says) in [
            ("tid]uri=hep:h", "[name]"),
            ("[tid uri=hep:h", "closing ]"),
            ("[]uri=hep:h", "empty"),
            ("[tid]", "no uri="),
            ("[tid]uri", "no '='"),
            ("[tid]url=hep:h", "unknown key 'url'"),
            ("[tid]uri=hep:h;uri=hep:g", "twice"),
            ("[tid]uri=hep:", "names no hep_id"),
            ("[tid]uri=10.0.0.1:9060", "neither"),
            ("[tid]uri=hep:h;table=x", "only for database"),
            ("[tid]uri=mysql://h/db;table=", "table= is empty"),
            // Found by the modparams fuzz target: a multibyte character
            // across the scheme's length.
            ("[tid]uri=h\u{fffd}\u{fffd}", "neither"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
