//! `sip::extract` and `sip::call_id` on arbitrary bytes: no panic, and what
//! they return is consistent with the message they read.

#![no_main]

use libfuzzer_sys::fuzz_target;
use siptrace::core::sip::{self, StartLine};
use siptrace_rs_fuzz::is_within;

/// The blanks the parser trims.
fn is_blank(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&c| c.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&c))
}

/// A header value: trimmed, and spanning several lines only by folding
/// (a line break followed by a space or tab).
fn check_header_value(data: &[u8], value: &[u8], what: &str) {
    assert!(is_within(data, value), "{what} is not a slice of the message");
    if let (Some(first), Some(last)) = (value.first(), value.last()) {
        assert!(!is_blank(*first) && !is_blank(*last), "{what} is not trimmed: {value:?}");
    }
    for (i, &c) in value.iter().enumerate() {
        if c == b'\n' {
            assert!(
                matches!(value.get(i + 1), Some(b' ' | b'\t')),
                "{what} spans an unfolded line: {value:?}"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let id = sip::call_id(data);
    if let Some(id) = id {
        assert!(!id.is_empty());
        check_header_value(data, id, "call_id()");
    }

    let Ok(f) = sip::extract(data) else { return };

    // The Call-ID both functions find is the same header's value.
    assert_eq!(id, Some(f.call_id), "extract and call_id disagree");
    check_header_value(data, f.call_id, "Call-ID");
    check_header_value(data, f.from_tag, "From tag");
    check_header_value(data, f.to_tag, "To tag");
    assert!(is_token(f.cseq_method), "CSeq method {:?} is not a token", f.cseq_method);
    assert!(is_within(data, f.cseq_method));

    // Reply or request: as the first line says.
    let first_line = data.split(|&c| c == b'\n').next().unwrap_or_default();
    let start = first_line.iter().position(|&c| !is_blank(c)).map_or(&[][..], |i| &first_line[i..]);
    let says_reply = start.len() >= 4 && start[..4].eq_ignore_ascii_case(b"SIP/");
    assert_eq!(f.is_reply(), says_reply, "is_reply disagrees with the start line {first_line:?}");
    match f.start {
        StartLine::Reply { status } => {
            assert!(is_within(first_line, status));
            assert!(status.len() == 3 && status.iter().all(u8::is_ascii_digit), "status {status:?}");
            assert!((b'1'..=b'6').contains(&status[0]));
            assert_eq!(f.status(), status);
            assert_eq!(f.method(), f.cseq_method);
        }
        StartLine::Request { method } => {
            assert!(is_token(method), "method {method:?} is not a token");
            assert!(start.starts_with(method) && start.get(method.len()) == Some(&b' '));
            assert_eq!(f.method(), method);
            assert!(f.status().is_empty());
        }
    }
});
