//! The `X-Siptrace-*` headers (`core::xheaders`).
//!
//! - Raw fuzz bytes go to `read`, which must not panic; what it accepts
//!   has values that are one header line each, and the message it gives
//!   back is the input without five of its lines.
//! - An input with no end of headers (which `read` refuses) is read as
//!   values and a message instead: `write` either refuses and leaves the
//!   output alone, or adds exactly five header lines, no more, however the
//!   values look, at the end of the header block; `read` then gives back
//!   the values and the original message.

#![no_main]

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use siptrace::core::record::{Direction, Timestamp};
use siptrace::core::xheaders::{self, XHeaders};
use siptrace_rs_fuzz::{contains_ignore_case, endpoint, is_within};

struct Input {
    msg: Vec<u8>,
    from: siptrace::core::endpoint::Endpoint,
    to: siptrace::core::endpoint::Endpoint,
    time: Timestamp,
    method: Vec<u8>,
    direction: Direction,
    prefix: Vec<u8>,
}

/// What could break a header line, or add one.
const EVIL: &[&[u8]] = &[b"\r\n", b"\n", b"\r", b"\r\nX-Siptrace-Dir: in", b" ", b"\0"];

fn input(u: &mut Unstructured<'_>) -> Result<Input> {
    // Methods are mostly tokens, sometimes with anything a header could
    // be broken with.
    let method = match u.int_in_range(0..=3)? {
        0 => u.choose(&[&b"INVITE"[..], b"BYE", b"ACK", b"OPTIONS", b"X"])?.to_vec(),
        1 => {
            let mut m: Vec<u8> = u.arbitrary()?;
            let at = u.int_in_range(0..=m.len())?;
            let evil = u.choose(EVIL)?;
            m.splice(at..at, evil.iter().copied());
            m
        }
        _ => u.arbitrary()?,
    };
    let (from_v6, to_v6) = (u.arbitrary()?, u.arbitrary()?);
    let from = endpoint(u, from_v6)?;
    let to = endpoint(u, to_v6)?;
    let usecs = if u.ratio(7, 8)? { u.int_in_range(0..=999_999)? } else { u.arbitrary()? };
    Ok(Input {
        from,
        to,
        time: Timestamp { secs: u.arbitrary()?, usecs },
        method,
        direction: if u.arbitrary()? { Direction::In } else { Direction::Out },
        prefix: u.arbitrary()?,
        msg: message(u)?,
    })
}

/// Mostly a header block, its end and a body; sometimes any bytes.
fn message(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    let mut msg: Vec<u8> = u.arbitrary()?;
    if u.ratio(7, 8)? {
        msg.extend_from_slice(b"\r\n\r\n");
        let body: Vec<u8> = u.arbitrary()?;
        msg.extend_from_slice(&body);
        if u.ratio(1, 4)? {
            // A body that holds an empty line of its own.
            msg.extend_from_slice(b"\r\n\r\n");
            msg.extend_from_slice(&body);
        }
    }
    Ok(msg)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A value `read` gives is the trimmed rest of one line.
fn one_line(value: &[u8]) -> bool {
    !value.contains(&b'\n') && !value.contains(&b'\r')
}

fn check_read(data: &[u8]) {
    let Ok((x, kept)) = xheaders::read(data) else { return };
    assert!(is_within(data, x.method));
    assert!(!x.method.is_empty());
    assert!(one_line(x.method), "method {:?} spans lines", x.method);
    assert!(x.time.usecs < 1_000_000);
    // Five lines of at least "N:\r\n" went; the rest is kept in order.
    assert!(kept.len() + 5 * 4 <= data.len());
    let end = find(data, b"\r\n\r\n").expect("read needs an end of headers");
    assert!(kept.ends_with(&data[end + 2..]));
}

fuzz_target!(|data: &[u8]| {
    check_read(data);
    // Mutations of a message stay messages rather than being read as
    // values for write().
    if find(data, b"\r\n\r\n").is_some() {
        return;
    }

    let Ok(i) = input(&mut Unstructured::new(data)) else { return };
    let x = XHeaders { from: i.from, to: i.to, time: i.time, method: &i.method, direction: i.direction };
    let mut out = i.prefix.clone();
    if xheaders::write(&i.msg, &x, &mut out).is_err() {
        assert_eq!(out, i.prefix, "a refused write changed the output");
        return;
    }
    assert!(out.starts_with(&i.prefix));
    let out = &out[i.prefix.len()..];

    // The headers go after the last line of the header block.
    let end = find(&i.msg, b"\r\n\r\n").expect("written without an end of headers") + 2;
    assert!(out.starts_with(&i.msg[..end]) && out.ends_with(&i.msg[end..]));
    let added = &out[end..out.len() - (i.msg.len() - end)];

    // Exactly five lines, each ended by CRLF and holding no other CR or LF.
    assert!(added.ends_with(b"\r\n"));
    let lines: Vec<&[u8]> = added[..added.len() - 2].split(|&c| c == b'\n').collect();
    assert_eq!(lines.len(), 5, "write added other than five lines: {:?}", String::from_utf8_lossy(added));
    for (n, line) in lines.iter().enumerate() {
        let line = if n < 4 { line.strip_suffix(b"\r").expect("lines end in CRLF") } else { line };
        assert!(!line.contains(&b'\r'), "a bare CR in {:?}", String::from_utf8_lossy(line));
        assert!(line.starts_with(b"X-Siptrace-"));
    }

    // Reading gives back the values and the message, unless the message
    // already had such headers of its own.
    if contains_ignore_case(&i.msg[..end], b"x-siptrace-") {
        return;
    }
    let (back, kept) = match xheaders::read(out) {
        Ok(r) => r,
        Err(e) => panic!("written headers do not read back: {e}: {:?}", String::from_utf8_lossy(added)),
    };
    assert_eq!(back, x);
    assert!(kept == i.msg, "read did not give back the original message");
});
