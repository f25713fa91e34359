//! Extraction of the fields a trace record needs from a raw SIP message:
//! the start line, Call-ID, CSeq method and the From/To tags.
//!
//! It reads the buffer as sent or received, without the host's parser, so
//! the same code serves every host and every event (including messages the
//! host never parsed). Anything it cannot read is an error the caller counts.

use memchr::memchr;

/// What the first line of a message says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine<'a> {
    Request { method: &'a [u8] },
    Reply { status: &'a [u8] },
}

/// The fields of one message that go into a `sip_trace` row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipFields<'a> {
    pub start: StartLine<'a>,
    pub call_id: &'a [u8],
    pub cseq_method: &'a [u8],
    pub from_tag: &'a [u8],
    pub to_tag: &'a [u8],
}

impl<'a> SipFields<'a> {
    /// The request method, or for a reply the method of its CSeq.
    pub fn method(&self) -> &'a [u8] {
        match self.start {
            StartLine::Request { method } => method,
            StartLine::Reply { .. } => self.cseq_method,
        }
    }

    /// The three-digit status of a reply; empty for a request.
    pub fn status(&self) -> &'a [u8] {
        match self.start {
            StartLine::Reply { status } => status,
            StartLine::Request { .. } => b"",
        }
    }

    pub fn is_reply(&self) -> bool {
        matches!(self.start, StartLine::Reply { .. })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SipError {
    /// The first line is neither a SIP request line nor a status line.
    BadStartLine,
    /// A mandatory header is absent or empty.
    MissingHeader(&'static str),
    /// A header is present but its value cannot be read.
    BadHeader(&'static str),
}

impl std::fmt::Display for SipError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SipError::BadStartLine => f.write_str("not a SIP request or status line"),
            SipError::MissingHeader(h) => write!(f, "no {h} header"),
            SipError::BadHeader(h) => write!(f, "unreadable {h} header"),
        }
    }
}

const SIP_VERSION: &[u8] = b"SIP/2.0";

/// Reads the fields of `buf`. The message needs a valid start line and the
/// Call-ID, CSeq, From and To headers, as a traced message does in the
/// host's own parser.
pub fn extract(buf: &[u8]) -> Result<SipFields<'_>, SipError> {
    let (first_line, mut rest) = split_line(buf);
    let start = parse_start_line(first_line)?;

    let mut call_id = None;
    let mut cseq = None;
    let mut from = None;
    let mut to = None;
    while let Some((name, value, next)) = next_header(rest) {
        rest = next;
        let slot = match header_kind(name) {
            Some(Header::CallId) => &mut call_id,
            Some(Header::CSeq) => &mut cseq,
            Some(Header::From) => &mut from,
            Some(Header::To) => &mut to,
            None => continue,
        };
        // The first occurrence counts, as in the host parsers.
        slot.get_or_insert(value);
        if call_id.is_some() && cseq.is_some() && from.is_some() && to.is_some() {
            break;
        }
    }

    let call_id = non_empty(call_id, "Call-ID")?;
    let cseq_method = cseq_method(non_empty(cseq, "CSeq")?)?;
    let from_tag = tag_param(non_empty(from, "From")?).ok_or(SipError::BadHeader("From"))?;
    let to_tag = tag_param(non_empty(to, "To")?).ok_or(SipError::BadHeader("To"))?;
    Ok(SipFields { start, call_id, cseq_method, from_tag, to_tag })
}

/// The Call-ID alone, for records that need nothing else.
pub fn call_id(buf: &[u8]) -> Option<&[u8]> {
    let (_, mut rest) = split_line(buf);
    while let Some((name, value, next)) = next_header(rest) {
        if header_kind(name) == Some(Header::CallId) {
            return (!value.is_empty()).then_some(value);
        }
        rest = next;
    }
    None
}

fn non_empty<'a>(value: Option<&'a [u8]>, name: &'static str) -> Result<&'a [u8], SipError> {
    match value {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(SipError::MissingHeader(name)),
    }
}

fn parse_start_line(line: &[u8]) -> Result<StartLine<'_>, SipError> {
    let line = trim(line);
    if starts_with_ignore_case(line, SIP_VERSION) {
        // SIP/2.0 SP 3DIGIT SP reason
        let rest = &line[SIP_VERSION.len()..];
        let rest = rest.strip_prefix(b" ").ok_or(SipError::BadStartLine)?;
        let status = rest.get(..3).ok_or(SipError::BadStartLine)?;
        let valid_code = status.iter().all(u8::is_ascii_digit) && (b'1'..=b'6').contains(&status[0]);
        let separated = matches!(rest.get(3), None | Some(b' '));
        if !valid_code || !separated {
            return Err(SipError::BadStartLine);
        }
        return Ok(StartLine::Reply { status });
    }
    // METHOD SP Request-URI SP SIP/2.0
    let mut parts = line.split(|&c| c == b' ');
    let method = parts.next().unwrap_or_default();
    let uri = parts.next().unwrap_or_default();
    let version = parts.next().unwrap_or_default();
    let valid = !method.is_empty()
        && method.iter().all(|&c| is_token_char(c))
        && !uri.is_empty()
        && version.eq_ignore_ascii_case(SIP_VERSION)
        && parts.next().is_none();
    if !valid {
        return Err(SipError::BadStartLine);
    }
    Ok(StartLine::Request { method })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Header {
    CallId,
    CSeq,
    From,
    To,
}

fn header_kind(name: &[u8]) -> Option<Header> {
    let is = |full: &[u8], compact: Option<u8>| {
        name.eq_ignore_ascii_case(full) || (name.len() == 1 && Some(name[0].to_ascii_lowercase()) == compact)
    };
    if is(b"call-id", Some(b'i')) {
        Some(Header::CallId)
    } else if is(b"cseq", None) {
        Some(Header::CSeq)
    } else if is(b"from", Some(b'f')) {
        Some(Header::From)
    } else if is(b"to", Some(b't')) {
        Some(Header::To)
    } else {
        None
    }
}

/// What trace decisions read of a message, found in one pass over its
/// headers: the start line and request URI, the Call-ID, the CSeq method,
/// the From and To URIs, and whether To has a tag. Unlike [`extract`] it
/// refuses nothing but a bad start line: a missing header is `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary<'a> {
    pub start: StartLine<'a>,
    /// The request URI of a request.
    pub ruri: Option<&'a [u8]>,
    pub call_id: Option<&'a [u8]>,
    pub cseq_method: Option<&'a [u8]>,
    pub from_uri: Option<&'a [u8]>,
    pub to_uri: Option<&'a [u8]>,
    /// Whether the To header carries a tag: the request is within a dialog.
    pub to_tagged: bool,
}

impl<'a> Summary<'a> {
    /// The request method, or for a reply the method of its CSeq.
    pub fn method(&self) -> Option<&'a [u8]> {
        match self.start {
            StartLine::Request { method } => Some(method),
            StartLine::Reply { .. } => self.cseq_method,
        }
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }
}

/// Reads the [`Summary`] of `buf`; `None` when its first line is neither a
/// request line nor a status line.
pub fn summary(buf: &[u8]) -> Option<Summary<'_>> {
    let (first_line, mut rest) = split_line(buf);
    let start = parse_start_line(first_line).ok()?;
    let ruri = match start {
        StartLine::Request { .. } => request_uri(first_line),
        StartLine::Reply { .. } => None,
    };
    let mut s = Summary {
        start,
        ruri,
        call_id: None,
        cseq_method: None,
        from_uri: None,
        to_uri: None,
        to_tagged: false,
    };
    let (mut from, mut to, mut cseq) = (false, false, false);
    while let Some((name, value, next)) = next_header(rest) {
        rest = next;
        match header_kind(name) {
            Some(Header::CallId) if s.call_id.is_none() => s.call_id = (!value.is_empty()).then_some(value),
            Some(Header::CSeq) if !cseq => {
                cseq = true;
                s.cseq_method = cseq_method(value).ok();
            }
            Some(Header::From) if !from => {
                from = true;
                s.from_uri = Some(addr_uri(value));
            }
            Some(Header::To) if !to => {
                to = true;
                s.to_uri = Some(addr_uri(value));
                s.to_tagged = tag_param(value).is_some_and(|t| !t.is_empty());
            }
            _ => continue,
        }
        if from && to && cseq && s.call_id.is_some() {
            break;
        }
    }
    Some(s)
}

/// Splits off one line; the line excludes its CRLF or bare LF.
/// The URI of the first header called `name` (or its `compact` form):
/// what is inside `<...>`, or the value up to its first `;`.
pub fn header_uri<'a>(buf: &'a [u8], name: &[u8], compact: &[u8]) -> Option<&'a [u8]> {
    let (_, mut rest) = split_line(buf);
    while let Some((n, value, next)) = next_header(rest) {
        if n.eq_ignore_ascii_case(name) || n.eq_ignore_ascii_case(compact) {
            return Some(addr_uri(value));
        }
        rest = next;
    }
    None
}

fn addr_uri(value: &[u8]) -> &[u8] {
    // A '<' inside a quoted display name opens nothing.
    let mut i = 0;
    while i < value.len() {
        match value[i] {
            b'"' => match closing_quote(value, i) {
                Some(close) => i = close + 1,
                None => break,
            },
            b'<' => {
                return match memchr(b'>', &value[i..]) {
                    Some(close) => &value[i + 1..i + close],
                    None => &value[i + 1..],
                };
            }
            _ => i += 1,
        }
    }
    trim(value.split(|&c| c == b';').next().unwrap_or_default())
}

/// The request URI of a request's start line.
pub fn request_uri(buf: &[u8]) -> Option<&[u8]> {
    let (line, _) = split_line(buf);
    let mut parts = line.split(|&c| c == b' ').filter(|p| !p.is_empty());
    let method = parts.next()?;
    (!method.starts_with(b"SIP/")).then(|| parts.next()).flatten()
}

/// The user and host of a SIP URI (`sip:user@host:port;params`); the user
/// is empty when there is none.
pub fn uri_user_host(uri: &[u8]) -> (&[u8], &[u8]) {
    let rest = match memchr(b':', uri) {
        Some(i) if uri[..i].eq_ignore_ascii_case(b"sip") || uri[..i].eq_ignore_ascii_case(b"sips") => {
            &uri[i + 1..]
        }
        _ => uri,
    };
    let rest = rest.split(|&c| c == b';' || c == b'?').next().unwrap_or_default();
    let (user, hostport) = match memchr(b'@', rest) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (&b""[..], rest),
    };
    let user = user.split(|&c| c == b':').next().unwrap_or_default();
    let host = if hostport.starts_with(b"[") {
        memchr(b']', hostport).map_or(hostport, |i| &hostport[..i + 1])
    } else {
        hostport.split(|&c| c == b':').next().unwrap_or_default()
    };
    (user, host)
}

/// Whether `pattern`, `user` or `user@host`, names a URI's user and host,
/// as OpenSIPS's tracer compares its caller and callee filters.
pub fn user_host_matches(pattern: &[u8], user: &[u8], host: &[u8]) -> bool {
    match pattern.len().cmp(&user.len()) {
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => pattern == user,
        std::cmp::Ordering::Greater => {
            pattern.starts_with(user) && pattern[user.len()] == b'@' && &pattern[user.len() + 1..] == host
        }
    }
}

fn split_line(buf: &[u8]) -> (&[u8], &[u8]) {
    match memchr(b'\n', buf) {
        Some(i) => {
            let line = &buf[..i];
            (line.strip_suffix(b"\r").unwrap_or(line), &buf[i + 1..])
        }
        None => (buf, &[]),
    }
}

/// The next header of the header block as (name, trimmed value, rest), with
/// folded continuation lines included in the value. `None` at the empty line
/// that ends the headers, or at the end of the buffer.
fn next_header(buf: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    // Each line is scanned once: the end of the first line also says
    // whether it is the empty one that ends the headers.
    let mut end = match memchr(b'\n', buf) {
        Some(i) => i + 1,
        None => buf.len(),
    };
    let first = &buf[..end];
    let first = first.strip_suffix(b"\n").unwrap_or(first);
    if first.strip_suffix(b"\r").unwrap_or(first).is_empty() {
        return None;
    }
    // Extend over continuation lines, which start with a space or a tab.
    while end < buf.len() && matches!(buf[end], b' ' | b'\t') {
        end += match memchr(b'\n', &buf[end..]) {
            Some(i) => i + 1,
            None => buf.len() - end,
        };
    }
    let header = &buf[..end];
    let rest = &buf[end..];
    let colon = memchr(b':', header)?;
    let name = trim(&header[..colon]);
    let value = trim(&header[colon + 1..]);
    Some((name, value, rest))
}

/// The method token of a CSeq value ("314159 INVITE").
fn cseq_method(value: &[u8]) -> Result<&[u8], SipError> {
    let digits = value.iter().take_while(|c| c.is_ascii_digit()).count();
    let method = trim(&value[digits..]);
    if digits == 0 || method.is_empty() || !method.iter().all(|&c| is_token_char(c)) {
        return Err(SipError::BadHeader("CSeq"));
    }
    Ok(method)
}

/// The tag parameter of a From or To value; empty when there is none.
/// `None` when the value is malformed (unclosed quote or angle bracket).
fn tag_param(value: &[u8]) -> Option<&[u8]> {
    let params = header_params(value)?;
    for param in params.split(|&c| c == b';') {
        let (name, val) = match memchr(b'=', param) {
            Some(i) => (trim(&param[..i]), trim(&param[i + 1..])),
            None => (trim(param), &b""[..]),
        };
        if name.eq_ignore_ascii_case(b"tag") {
            return Some(val);
        }
    }
    Some(b"")
}

/// The header parameters of a name-addr or addr-spec: what follows the
/// closing '>' or, without angle brackets, the first ';'.
fn header_params(value: &[u8]) -> Option<&[u8]> {
    let mut i = 0;
    while i < value.len() {
        match value[i] {
            b'"' => i = closing_quote(value, i)? + 1,
            b'<' => {
                let close = i + memchr(b'>', &value[i..])?;
                return Some(&value[close + 1..]);
            }
            b';' => return Some(&value[i..]),
            _ => i += 1,
        }
    }
    Some(b"")
}

/// Index of the quote that closes the quoted string opened at `open`.
fn closing_quote(value: &[u8], open: usize) -> Option<usize> {
    let mut i = open + 1;
    while i < value.len() {
        match value[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

fn trim(s: &[u8]) -> &[u8] {
    let is_ws = |c: &u8| matches!(c, b' ' | b'\t' | b'\r' | b'\n');
    let start = s.iter().position(|c| !is_ws(c)).unwrap_or(s.len());
    let end = s.iter().rposition(|c| !is_ws(c)).map_or(start, |i| i + 1);
    &s[start..end]
}

fn starts_with_ignore_case(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// RFC 3261 token characters.
fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@example.com>\r\n\
From: \"Alice; the \\\"first\\\" <one>\" <sip:alice@example.com;transport=udp>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Content-Length: 0\r\n\r\n";

    #[test]
    fn request_fields() {
        let f = extract(INVITE).unwrap();
        assert_eq!(f.start, StartLine::Request { method: b"INVITE" });
        assert_eq!(f.method(), b"INVITE");
        assert_eq!(f.status(), b"");
        assert_eq!(f.call_id, b"a84b4c76e66710@pc33.example.com");
        assert_eq!(f.cseq_method, b"INVITE");
        assert_eq!(f.from_tag, b"1928301774");
        assert_eq!(f.to_tag, b"");
        assert!(!f.is_reply());
    }

    #[test]
    fn reply_takes_method_from_cseq() {
        let msg = b"SIP/2.0 180 Ringing\r\nt: <sip:b@x>;tag=9fxced76sl\r\n\
f: sip:a@x;tag=abc\r\ni: call-1\r\nCSeq: 2 BYE\r\n\r\nbody;tag=no";
        let f = extract(msg).unwrap();
        assert_eq!(f.start, StartLine::Reply { status: b"180" });
        assert_eq!(f.method(), b"BYE");
        assert_eq!(f.status(), b"180");
        assert_eq!(f.to_tag, b"9fxced76sl");
        assert_eq!(f.from_tag, b"abc");
        assert_eq!(f.call_id, b"call-1");
        assert!(f.is_reply());
    }

    #[test]
    fn header_names_are_case_insensitive_and_may_be_spaced() {
        let msg = b"OPTIONS sip:x SIP/2.0\nCALL-ID  :  spaced \nFROM:<sip:a@b>;TAG=T1\n\
tO: sip:c@d ; tag = T2\ncseq: 7   OPTIONS\n\n";
        let f = extract(msg).unwrap();
        assert_eq!(f.call_id, b"spaced");
        assert_eq!(f.from_tag, b"T1");
        assert_eq!(f.to_tag, b"T2");
        assert_eq!(f.cseq_method, b"OPTIONS");
    }

    #[test]
    fn folded_header_value_continues_on_next_line() {
        let msg = b"BYE sip:x SIP/2.0\r\nFrom: <sip:a@b>\r\n ;tag=folded\r\nTo: <sip:c@d>\r\n\
Call-ID: c\r\nCSeq: 1 BYE\r\n\r\n";
        assert_eq!(extract(msg).unwrap().from_tag, b"folded");
    }

    #[test]
    fn parameters_inside_angle_brackets_are_not_header_params() {
        let msg = b"BYE sip:x SIP/2.0\r\nFrom: <sip:a@b;tag=uri>\r\nTo: <sip:c@d>;tag=hdr\r\n\
Call-ID: c\r\nCSeq: 1 BYE\r\n\r\n";
        let f = extract(msg).unwrap();
        assert_eq!(f.from_tag, b"");
        assert_eq!(f.to_tag, b"hdr");
    }

    #[test]
    fn headers_in_the_body_are_ignored() {
        let msg =
            b"MESSAGE sip:x SIP/2.0\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCSeq: 1 MESSAGE\r\n\r\n\
Call-ID: smuggled\r\n";
        assert_eq!(extract(msg), Err(SipError::MissingHeader("Call-ID")));
        assert_eq!(call_id(msg), None);
    }

    #[test]
    fn first_occurrence_wins() {
        let msg = b"ACK sip:x SIP/2.0\r\nCall-ID: one\r\ni: two\r\nFrom: <sip:a@b>;tag=1\r\n\
To: <sip:c@d>\r\nCSeq: 1 ACK\r\n\r\n";
        assert_eq!(extract(msg).unwrap().call_id, b"one");
        assert_eq!(call_id(msg), Some(&b"one"[..]));
    }

    #[test]
    fn malformed_start_lines_are_rejected() {
        for line in [
            &b""[..],
            b"\r\n",
            b"INVITE sip:x\r\n",
            b"INVITE sip:x HTTP/1.1\r\n",
            b"INVITE  sip:x SIP/2.0\r\n",
            b"INV<ITE sip:x SIP/2.0\r\n",
            b"SIP/2.0 18 Ringing\r\n",
            b"SIP/2.0 999 Nope\r\n",
            b"SIP/2.0 1800 Ringing\r\n",
            b"SIP/2.0\r\n",
            b"GET / HTTP/1.1\r\n",
        ] {
            assert_eq!(extract(line), Err(SipError::BadStartLine), "{:?}", line);
        }
    }

    #[test]
    fn missing_and_malformed_headers_are_errors() {
        let base = |headers: &[u8]| {
            let mut m = b"BYE sip:x SIP/2.0\r\n".to_vec();
            m.extend_from_slice(headers);
            m.extend_from_slice(b"\r\n");
            m
        };
        let all = b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: c\r\nCSeq: 1 BYE\r\n";
        assert!(extract(&base(all)).is_ok());
        let cases: [(&[u8], SipError); 6] = [
            (b"To: <sip:c@d>\r\nCall-ID: c\r\nCSeq: 1 BYE\r\n", SipError::MissingHeader("From")),
            (b"From: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 BYE\r\n", SipError::MissingHeader("To")),
            (
                b"From: <sip:a@b>\r\nTo: <sip:c@d>\r\nCall-ID:  \r\nCSeq: 1 BYE\r\n",
                SipError::MissingHeader("Call-ID"),
            ),
            (b"From: <sip:a@b>\r\nTo: <sip:c@d>\r\nCall-ID: c\r\nCSeq: BYE\r\n", SipError::BadHeader("CSeq")),
            (
                b"From: <sip:a@b\r\nTo: <sip:c@d>\r\nCall-ID: c\r\nCSeq: 1 BYE\r\n",
                SipError::BadHeader("From"),
            ),
            (
                b"From: \"open <sip:a@b>\r\nTo: <sip:c@d>\r\nCall-ID: c\r\nCSeq: 1 BYE\r\n",
                SipError::BadHeader("From"),
            ),
        ];
        for (headers, err) in cases {
            assert_eq!(extract(&base(headers)), Err(err), "{}", String::from_utf8_lossy(headers));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic sweep over damaged and truncated copies.
        let mut seed = 0x2545F4914F6CDD1Du64;
        for len in 0..400 {
            let mut buf = INVITE.to_vec();
            for _ in 0..len % 17 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = (seed as usize) % buf.len();
                buf[at] = (seed >> 32) as u8;
            }
            buf.truncate(len % (INVITE.len() + 1));
            let _ = extract(&buf);
            let _ = call_id(&buf);
        }
    }

    #[test]
    fn uris_of_the_from_header_and_the_request_line() {
        let msg = b"INVITE sip:bob@example.com:5060;transport=udp SIP/2.0\r\n\
            f: \"Alice\" <sip:alice:pw@atlanta.example;user=phone>;tag=1\r\n\r\n";
        let from = header_uri(msg, b"From", b"f").unwrap();
        assert_eq!(from, b"sip:alice:pw@atlanta.example;user=phone");
        assert_eq!(uri_user_host(from), (&b"alice"[..], &b"atlanta.example"[..]));
        let ruri = request_uri(msg).unwrap();
        assert_eq!(uri_user_host(ruri), (&b"bob"[..], &b"example.com"[..]));
        assert_eq!(uri_user_host(b"sip:[2001:db8::1]:5060"), (&b""[..], &b"[2001:db8::1]"[..]));
        assert_eq!(
            header_uri(b"X y SIP/2.0\r\nFrom: sip:a@b;tag=2\r\n\r\n", b"From", b"f"),
            Some(&b"sip:a@b"[..])
        );
        assert_eq!(request_uri(b"SIP/2.0 200 OK\r\n\r\n"), None);
        assert_eq!(header_uri(b"X y SIP/2.0\r\n\r\n", b"From", b"f"), None);
    }

    #[test]
    fn summaries_read_what_trace_decisions_need_in_one_pass() {
        let s = summary(INVITE).unwrap();
        assert_eq!(s.method(), Some(&b"INVITE"[..]));
        assert!(s.is_request() && !s.to_tagged);
        assert_eq!(s.ruri, Some(&b"sip:bob@example.com"[..]));
        assert_eq!(s.call_id, Some(&b"a84b4c76e66710@pc33.example.com"[..]));
        assert_eq!(s.from_uri, Some(&b"sip:alice@example.com;transport=udp"[..]));
        assert_eq!(s.to_uri, Some(&b"sip:bob@example.com"[..]));
        let reply = b"SIP/2.0 200 OK\r\nt: <sip:b@x>;tag=9f\r\ni: call-1\r\nCSeq: 2 OPTIONS\r\n\r\n";
        let s = summary(reply).unwrap();
        assert_eq!((s.method(), s.ruri, s.from_uri), (Some(&b"OPTIONS"[..]), None, None));
        assert!(s.to_tagged && !s.is_request());
        // Nothing but the start line is required.
        let quoted = b"MESSAGE sip:x SIP/2.0\r\nFrom: \"a <b>\" <sip:c@d>;tag=1\r\nTo: sip:e@f;tag=2\r\n\r\n";
        let s = summary(quoted).unwrap();
        assert_eq!((s.from_uri, s.to_uri, s.to_tagged), (Some(&b"sip:c@d"[..]), Some(&b"sip:e@f"[..]), true));
        let bare = summary(b"MESSAGE sip:x SIP/2.0\r\nCSeq: x\r\n\r\n").unwrap();
        assert_eq!((bare.call_id, bare.cseq_method, bare.to_uri), (None, None, None));
        assert_eq!(summary(b"garbage\r\n\r\n"), None);
    }

    #[test]
    fn caller_and_callee_patterns() {
        assert!(user_host_matches(b"alice", b"alice", b"a.example"));
        assert!(user_host_matches(b"alice@a.example", b"alice", b"a.example"));
        assert!(!user_host_matches(b"alice@b.example", b"alice", b"a.example"));
        assert!(!user_host_matches(b"alic", b"alice", b"a.example"));
        assert!(!user_host_matches(b"alicex", b"alice", b"a.example"));
        assert!(!user_host_matches(b"bob", b"alice", b"a.example"));
    }
}
