//! The plain-text form OpenSIPS's tracer gives a traced SIP message in a
//! `file:` or `syslog` destination: one line with the direction, the
//! protocol and the two ends, then the message as it was.
//!
//! File: `in udp 2026-12-01 21:06:19 10.0.0.1:5060 -> 10.0.0.2:5060\n`, the
//! message, then an empty line. The time is local, to the second. Syslog: the
//! same line without the time, the message, and a newline.

use crate::core::record::Row;
use std::io::Write;

/// Writes the text of `row` to `out`; with `time` (a file's form) the
/// local date and time go into the first line. None when the row's ends
/// are not `proto:ip:port` texts.
pub fn write(row: &Row<'_>, time: bool, out: &mut Vec<u8>) -> Option<()> {
    let (from, to) = row.ends()?;
    // Cannot fail: writing to a Vec.
    let _ = write!(out, "{} {}", row.direction.as_str(), from.transport.name());
    if time {
        out.push(b' ');
        out.extend_from_slice(crate::core::sql::local_time_text(row.time.secs as i64).as_bytes());
    }
    let _ = writeln!(out, " {}:{} -> {}:{}", from.addr.ip(), from.addr.port(), to.addr.ip(), to.addr.port());
    out.extend_from_slice(row.msg);
    out.extend_from_slice(if time { b"\n\n" } else { b"\n" });
    Some(())
}

/// The syslog facilities, by name (`LOG_LOCAL0`, or `local0`).
const FACILITIES: [(&str, libc::c_int); 19] = [
    ("AUTH", libc::LOG_AUTH),
    ("AUTHPRIV", libc::LOG_AUTHPRIV),
    ("CRON", libc::LOG_CRON),
    ("DAEMON", libc::LOG_DAEMON),
    ("FTP", libc::LOG_FTP),
    ("KERN", libc::LOG_KERN),
    ("LOCAL0", libc::LOG_LOCAL0),
    ("LOCAL1", libc::LOG_LOCAL1),
    ("LOCAL2", libc::LOG_LOCAL2),
    ("LOCAL3", libc::LOG_LOCAL3),
    ("LOCAL4", libc::LOG_LOCAL4),
    ("LOCAL5", libc::LOG_LOCAL5),
    ("LOCAL6", libc::LOG_LOCAL6),
    ("LOCAL7", libc::LOG_LOCAL7),
    ("LPR", libc::LOG_LPR),
    ("MAIL", libc::LOG_MAIL),
    ("NEWS", libc::LOG_NEWS),
    ("SYSLOG", libc::LOG_SYSLOG),
    ("USER", libc::LOG_USER),
];

/// A syslog facility by name, with or without `LOG_`, in any case.
pub fn facility(name: &str) -> Option<libc::c_int> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("LOG_").unwrap_or(&upper);
    FACILITIES.iter().find(|(n, _)| *n == bare).map(|(_, f)| *f)
}

/// OpenSIPS's log levels: from -3 (alert) to 4 (debug); 0 is none.
pub const LEVELS: std::ops::RangeInclusive<i32> = -3..=4;

/// Where a `syslog` destination logs: a facility and an OpenSIPS log level;
/// None for each part the destination leaves to the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyslogSpec {
    pub facility: Option<libc::c_int>,
    pub level: Option<i32>,
}

/// Reads a `syslog` trace_id uri: `syslog`, `syslog:FACILITY` or
/// `syslog:FACILITY:LEVEL`, as OpenSIPS's documentation writes it. The form
/// OpenSIPS 3.6's tracer actually accepts, without the first colon
/// (`syslogLOG_LOCAL0:2`), is read too.
pub fn parse_syslog(uri: &str) -> Result<SyslogSpec, String> {
    let rest = uri.get(6..).filter(|_| uri[..6].eq_ignore_ascii_case("syslog")).ok_or("it is not syslog")?;
    let rest = rest.strip_prefix(':').unwrap_or(rest).trim();
    if rest.is_empty() {
        return Ok(SyslogSpec { facility: None, level: None });
    }
    let (name, level) = match rest.split_once(':') {
        Some((name, level)) => (name, Some(level.trim())),
        None => (rest, None),
    };
    let facility = Some(facility(name).ok_or_else(|| format!("'{name}' is not a syslog facility"))?);
    let level = match level {
        None => None,
        Some(l) => Some(parse_level(l)?),
    };
    Ok(SyslogSpec { facility, level })
}

/// An OpenSIPS log level other than 0 (which logs nothing).
pub fn parse_level(text: &str) -> Result<i32, String> {
    match text.trim().parse::<i32>() {
        Ok(l) if l != 0 && LEVELS.contains(&l) => Ok(l),
        _ => Err(format!("'{text}' is not a log level (-3 to 4, not 0)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::record::{Direction, Timestamp};

    fn row<'a>(msg: &'a [u8], from: &'a [u8], to: &'a [u8]) -> Row<'a> {
        Row {
            table: b"",
            msg,
            callid: b"c",
            method: b"OPTIONS",
            status: b"",
            fromip: from,
            toip: to,
            time: Timestamp { secs: 1_764_623_179, usecs: 0 },
            direction: Direction::In,
            fromtag: b"",
            traced_user: b"",
            totag: b"",
        }
    }

    #[test]
    fn file_and_syslog_forms() {
        let msg = b"OPTIONS sip:x SIP/2.0\r\n\r\n";
        let r = row(msg, b"udp:127.0.0.1:5098", b"udp:[::1]:5099");
        let mut out = Vec::new();
        write(&r, true, &mut out).unwrap();
        // The date is local, so only its shape is checked.
        let (head, date_and_rest) = out.split_at(7);
        assert_eq!(head, b"in udp ");
        let (date, rest) = date_and_rest.split_at(19);
        let shape: String = date.iter().map(|&b| if b.is_ascii_digit() { 'd' } else { b as char }).collect();
        assert_eq!(shape, "dddd-dd-dd dd:dd:dd");
        assert_eq!(rest, b" 127.0.0.1:5098 -> ::1:5099\nOPTIONS sip:x SIP/2.0\r\n\r\n\n\n");
        out.clear();
        write(&Row { direction: Direction::Out, ..r }, false, &mut out).unwrap();
        assert_eq!(out, b"out udp 127.0.0.1:5098 -> ::1:5099\nOPTIONS sip:x SIP/2.0\r\n\r\n\n");
        assert!(write(&row(msg, b"bad", b"udp:1.2.3.4:5"), true, &mut out).is_none());
    }

    #[test]
    fn syslog_uris() {
        let spec = |f, l| SyslogSpec { facility: f, level: l };
        assert_eq!(parse_syslog("syslog"), Ok(spec(None, None)));
        assert_eq!(parse_syslog("syslog:local0"), Ok(spec(Some(libc::LOG_LOCAL0), None)));
        assert_eq!(parse_syslog("SYSLOG:LOG_LOCAL3:-1"), Ok(spec(Some(libc::LOG_LOCAL3), Some(-1))));
        assert_eq!(parse_syslog("syslogLOG_DAEMON:2"), Ok(spec(Some(libc::LOG_DAEMON), Some(2))));
        for bad in ["syslog:nope", "syslog:local0:0", "syslog:local0:9", "syslog:local0:x", "sys"] {
            assert!(parse_syslog(bad).is_err(), "{bad}");
        }
    }
}
