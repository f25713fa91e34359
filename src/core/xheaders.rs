//! The `X-Siptrace-*` headers: how one proxy hands the ends, time, method
//! and direction of a traced message to a second one that stores it
//! (`xheaders_write` on the first, `xheaders_read` on the second).
//!
//! Writing adds five headers at the end of the message's header block.
//! Reading takes them out again and gives their values. Both work on
//! bounded slices, with no fixed-size buffers. A value is one header line,
//! so no CR or LF can be smuggled into it. Reading accepts the headers
//! anywhere in the header block, in any order and letter case.

use crate::core::endpoint::Endpoint;
use crate::core::record::{Direction, Timestamp};
use memchr::memmem;

const FROM: &str = "X-Siptrace-Fromip";
const TO: &str = "X-Siptrace-Toip";
const TIME: &str = "X-Siptrace-Time";
const METHOD: &str = "X-Siptrace-Method";
const DIR: &str = "X-Siptrace-Dir";

/// What the headers carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XHeaders<'a> {
    pub from: Endpoint,
    pub to: Endpoint,
    pub time: Timestamp,
    pub method: &'a [u8],
    pub direction: Direction,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XHeaderError(pub String);

impl std::fmt::Display for XHeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn error(text: impl Into<String>) -> XHeaderError {
    XHeaderError(text.into())
}

/// Where the header block ends: the offset of the CRLF that ends its last
/// line, before the empty line.
fn end_of_headers(msg: &[u8]) -> Option<usize> {
    memmem::find(msg, b"\r\n\r\n")
}

/// Writes `msg` with the headers added into `out`.
pub fn write(msg: &[u8], x: &XHeaders<'_>, out: &mut Vec<u8>) -> Result<(), XHeaderError> {
    let end = end_of_headers(msg).ok_or_else(|| error("the message has no end of headers"))? + 2;
    // What read() would refuse is not written.
    if x.method.is_empty() || x.method.iter().any(|b| !b.is_ascii_graphic()) {
        return Err(error("the method is not a token"));
    }
    if x.time.usecs >= 1_000_000 {
        return Err(error("the time has a million microseconds or more"));
    }
    out.reserve(msg.len() + 200);
    out.extend_from_slice(&msg[..end]);
    let mut line = |name: &str, value: &[u8]| {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    };
    line(FROM, x.from.text().as_bytes());
    line(TO, x.to.text().as_bytes());
    line(TIME, format!("{} {}", x.time.secs, x.time.usecs).as_bytes());
    line(METHOD, x.method);
    line(DIR, x.direction.as_str().as_bytes());
    out.extend_from_slice(&msg[end..]);
    Ok(())
}

/// Reads the headers of `msg`; returns their values and the message
/// without them.
pub fn read(msg: &[u8]) -> Result<(XHeaders<'_>, Vec<u8>), XHeaderError> {
    let end = end_of_headers(msg).ok_or_else(|| error("the message has no end of headers"))? + 2;
    let mut values: [Option<&[u8]>; 5] = [None; 5];
    let mut kept = Vec::with_capacity(msg.len());
    let mut at = 0;
    while at < end {
        let line_end = memmem::find(&msg[at..end], b"\r\n").map_or(end, |i| at + i + 2);
        let line = &msg[at..line_end];
        match which(line) {
            Some((slot, value)) => {
                if values[slot].replace(value).is_some() {
                    return Err(error(format!("{} appears twice", [FROM, TO, TIME, METHOD, DIR][slot])));
                }
            }
            None => kept.extend_from_slice(line),
        }
        at = line_end;
    }
    kept.extend_from_slice(&msg[end..]);
    let [Some(from), Some(to), Some(time), Some(method), Some(dir)] = values else {
        return Err(error("the message lacks X-Siptrace headers"));
    };
    let endpoint = |name: &str, v: &[u8]| {
        std::str::from_utf8(v)
            .ok()
            .and_then(parse_endpoint)
            .ok_or_else(|| error(format!("{name} is not proto:ip:port: '{}'", String::from_utf8_lossy(v))))
    };
    let time = parse_time(time).ok_or_else(|| error(format!("{TIME} is not 'seconds microseconds'")))?;
    let direction = match dir {
        b"in" => Direction::In,
        b"out" => Direction::Out,
        _ => return Err(error(format!("{DIR} is neither 'in' nor 'out'"))),
    };
    if method.is_empty() {
        return Err(error(format!("{METHOD} is empty")));
    }
    // A method is a token, as write() requires: a bare CR or LF inside the
    // line, which ends a header for other parsers, must not end up in it.
    if !method.iter().all(u8::is_ascii_graphic) {
        return Err(error(format!("{METHOD} is not a token")));
    }
    let x = XHeaders { from: endpoint(FROM, from)?, to: endpoint(TO, to)?, time, method, direction };
    Ok((x, kept))
}

/// `proto:ip:port`, with an IPv6 address in brackets as this module
/// writes it, or bare as the C module does.
fn parse_endpoint(text: &str) -> Option<Endpoint> {
    Endpoint::parse(text).or_else(|| {
        let (proto, rest) = text.split_once(':')?;
        let (ip, port) = rest.rsplit_once(':')?;
        let transport = crate::core::endpoint::Transport::from_name(proto)?;
        Some(Endpoint::new(transport, ip.parse::<std::net::Ipv6Addr>().ok()?.into(), port.parse().ok()?))
    })
}

/// Which of the five headers a line is, and its value.
fn which(line: &[u8]) -> Option<(usize, &[u8])> {
    let colon = memchr::memchr(b':', line)?;
    let name = line[..colon].trim_ascii();
    let slot = [FROM, TO, TIME, METHOD, DIR].iter().position(|n| name.eq_ignore_ascii_case(n.as_bytes()))?;
    Some((slot, line[colon + 1..].trim_ascii()))
}

fn parse_time(v: &[u8]) -> Option<Timestamp> {
    let text = std::str::from_utf8(v).ok()?;
    let (secs, usecs) = text.split_once(' ')?;
    let usecs: u32 = usecs.trim().parse().ok()?;
    (usecs < 1_000_000).then_some(Timestamp { secs: secs.trim().parse().ok()?, usecs })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"INVITE sip:b@example.com SIP/2.0\r\nCall-ID: abc\r\nContent-Length: 4\r\n\r\nbody";

    fn sample() -> XHeaders<'static> {
        XHeaders {
            from: Endpoint::parse("udp:10.0.0.1:5060").unwrap(),
            to: Endpoint::parse("tcp:[2001:db8::2]:5070").unwrap(),
            time: Timestamp { secs: 1_700_000_000, usecs: 123_456 },
            method: b"INVITE",
            direction: Direction::Out,
        }
    }

    #[test]
    fn written_headers_read_back_and_leave_the_message_as_it_was() {
        let mut out = Vec::new();
        write(MSG, &sample(), &mut out).unwrap();
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.contains("\r\nX-Siptrace-Fromip: udp:10.0.0.1:5060\r\n"), "{text}");
        assert!(text.contains("\r\nX-Siptrace-Time: 1700000000 123456\r\n"), "{text}");
        assert!(text.contains("X-Siptrace-Dir: out\r\n\r\nbody"), "{text}");
        let (x, rest) = read(&out).unwrap();
        assert_eq!(x, sample());
        assert_eq!(rest, MSG);
    }

    #[test]
    fn headers_are_found_in_any_order_and_case() {
        let msg =
            b"SIP/2.0 200 OK\r\nx-siptrace-dir: in\r\nCall-ID: abc\r\nX-SIPTRACE-TOIP: udp:10.0.0.2:5060\r\n\
X-Siptrace-Method: BYE\r\nX-Siptrace-Time: 5 6\r\nX-Siptrace-Fromip:udp:10.0.0.1:5060\r\n\r\n";
        let (x, rest) = read(msg).unwrap();
        assert_eq!(x.direction, Direction::In);
        assert_eq!(x.method, b"BYE");
        assert_eq!(x.time, Timestamp { secs: 5, usecs: 6 });
        assert_eq!(rest, b"SIP/2.0 200 OK\r\nCall-ID: abc\r\n\r\n");
    }

    #[test]
    fn missing_or_bad_headers_are_errors() {
        assert!(read(MSG).unwrap_err().0.contains("lacks"));
        let mut out = Vec::new();
        write(MSG, &sample(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        for (from, to, what) in [
            ("udp:10.0.0.1:5060", "udp:10.0.0.1:99999", "Fromip"),
            ("Dir: out", "Dir: sideways", "Dir"),
            ("123456", "1234567", "Time"),
            (
                "X-Siptrace-Method: INVITE\r\n",
                "X-Siptrace-Method: INVITE\r\nX-Siptrace-Method: BYE\r\n",
                "twice",
            ),
        ] {
            let bad = text.replace(from, to);
            let e = read(bad.as_bytes()).unwrap_err();
            assert!(e.0.contains(what), "{what}: {e}");
        }
        assert!(read(b"INVITE sip:x SIP/2.0\r\nX-Siptrace-Dir: in").is_err());
    }

    #[test]
    fn a_method_read_is_one_token_on_one_line() {
        // Found by the xheaders fuzz target: a bare LF (or CR, or a NUL)
        // inside the method's CRLF-ended line was returned as part of it.
        let mut out = Vec::new();
        write(MSG, &sample(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        for method in ["IN\nVITE", "IN\rVITE", "IN\n VITE", "IN\0VITE", "IN VITE", "INVITÉ"] {
            let bad = text.replace("X-Siptrace-Method: INVITE", &format!("X-Siptrace-Method: {method}"));
            let e = read(bad.as_bytes()).unwrap_err();
            assert!(e.0.contains("not a token"), "{method:?}: {e}");
        }
    }

    #[test]
    fn bare_ipv6_addresses_as_the_c_module_writes_them_are_read() {
        assert_eq!(parse_endpoint("udp:2001:db8::2:5070"), Endpoint::parse("udp:[2001:db8::2]:5070"));
        assert_eq!(parse_endpoint("tcp:[::1]:5060"), Endpoint::parse("tcp:[::1]:5060"));
        assert_eq!(parse_endpoint("udp:10.0.0.1"), None);
    }

    #[test]
    fn headers_after_the_end_of_headers_are_body() {
        let msg = b"MESSAGE sip:a SIP/2.0\r\nCall-ID: x\r\n\r\nX-Siptrace-Dir: in\r\n";
        assert!(read(msg).unwrap_err().0.contains("lacks"));
    }

    #[test]
    fn a_message_without_an_end_of_headers_is_not_written() {
        assert!(write(b"INVITE sip:a SIP/2.0\r\nCall-ID: x", &sample(), &mut Vec::new()).is_err());
        let bad_method = XHeaders { method: b"IN VITE", ..sample() };
        assert!(write(MSG, &bad_method, &mut Vec::new()).is_err());
    }

    #[test]
    fn what_read_refuses_is_not_written() {
        // Found by the xheaders fuzz target: write() took an empty method
        // and microseconds of a million or more, and its headers then did
        // not read back.
        let mut out = Vec::new();
        let empty_method = XHeaders { method: b"", ..sample() };
        assert!(write(MSG, &empty_method, &mut out).unwrap_err().0.contains("token"));
        let time = Timestamp { secs: 1, usecs: 1_000_000 };
        assert!(write(MSG, &XHeaders { time, ..sample() }, &mut out).unwrap_err().0.contains("microseconds"));
        assert!(out.is_empty());
        let last = XHeaders { time: Timestamp { secs: u64::MAX, usecs: 999_999 }, method: b"X", ..sample() };
        write(MSG, &last, &mut out).unwrap();
        assert_eq!(read(&out).unwrap(), (last, MSG.to_vec()));
    }
}
