//! The trace record: one SIP message as it crossed the server, and what it
//! becomes on each output (a HEP packet, a plain SIP copy, a table row).

use crate::core::dest::Destination;
use crate::core::endpoint::Endpoint;
use crate::core::hep::{self, EncodeError, HepPacket, HepSettings};
use crate::core::sip::SipFields;
use smallvec::SmallVec;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Direction {
    In = 0,
    Out = 1,
}

impl Direction {
    /// The `direction` column value.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// Wall-clock time with microseconds, as HEP and the table carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    pub secs: u64,
    pub usecs: u32,
}

impl Timestamp {
    pub fn now() -> Timestamp {
        let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Timestamp { secs: d.as_secs(), usecs: d.subsec_micros() }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct TraceRecord<'a> {
    pub time: Timestamp,
    pub direction: Direction,
    pub src: Endpoint,
    pub dst: Endpoint,
    pub payload: &'a [u8],
    /// The correlation id the script gave, if any.
    pub correlation_id: Option<&'a [u8]>,
    /// Further correlations as a JSON object (HEP chunk 0x0065), such as
    /// `{"sip":"<call-id>"}` on a log line or `{"net":"7"}` on a message
    /// carried by connection 7.
    pub extra_correlation: Option<&'a [u8]>,
    /// The HEP protocol type of the payload: SIP, or a log line.
    pub proto_type: u8,
    /// The `traced_user` column of each row, packed by [`pack_traced_user`];
    /// `None` is one row with an empty one.
    pub traced_users: Option<&'a [u8]>,
}

/// Appends one traced user to a packed list: a 16-bit length, then the
/// bytes (cut at 65535).
pub fn pack_traced_user(out: &mut Vec<u8>, user: &[u8]) {
    let user = &user[..user.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(user.len() as u16).to_le_bytes());
    out.extend_from_slice(user);
}

/// The users of a packed list; a damaged tail ends it.
pub struct TracedUsers<'a> {
    rest: &'a [u8],
    single: bool,
}

impl<'a> Iterator for TracedUsers<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.single {
            self.single = false;
            return Some(b"");
        }
        let len = u16::from_le_bytes(self.rest.get(..2)?.try_into().ok()?) as usize;
        let user = self.rest.get(2..2 + len)?;
        self.rest = &self.rest[2 + len..];
        Some(user)
    }
}

impl<'a> TraceRecord<'a> {
    /// The `traced_user` value of each row this record makes.
    pub fn traced_users(&self) -> TracedUsers<'a> {
        match self.traced_users {
            None => TracedUsers { rest: b"", single: true },
            Some(packed) => TracedUsers { rest: packed, single: false },
        }
    }

    /// The HEP correlation id: the one the script gave, else the Call-ID,
    /// so that Homer groups the record with its call.
    pub fn hep_correlation(&self, fields: Option<&SipFields<'a>>) -> Option<&'a [u8]> {
        self.correlation_id
            .filter(|c| !c.is_empty())
            .or_else(|| fields.map(|f| f.call_id))
            .or_else(|| crate::core::sip::call_id(self.payload))
    }

    /// Appends the record, as a HEPv3 SIP packet, to `out`.
    pub fn encode_hep(
        &self,
        fields: Option<&SipFields<'a>>,
        settings: &HepSettings,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        let packet = HepPacket {
            src: self.src,
            dst: self.dst,
            // HEP time is 32-bit; it wraps in 2106.
            time_sec: self.time.secs as u32,
            time_usec: self.time.usecs,
            proto_type: self.proto_type,
            correlation_id: self.hep_correlation(fields),
            extra_correlation: self.extra_correlation,
            payload: self.payload,
        };
        if self.proto_type == hep::proto_type::SIP {
            hep::encode(&packet, settings, out)
        } else {
            // Only HEPv3 says what a payload is; other records always use it.
            hep::encode_v3(&packet, settings, out)
        }
    }
}

/// What a tracing call covers: the current message, its transaction, or
/// its whole dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Message,
    Transaction,
    Dialog,
}

impl Scope {
    /// Reads "m", "t" or "d", case-insensitive; blanks around are allowed.
    pub fn parse(text: &str) -> Result<Scope, String> {
        let mut letters = text.chars().filter(|c| !matches!(c, ' ' | '\t'));
        let scope = match letters.next().map(|c| c.to_ascii_lowercase()) {
            Some('m') => Scope::Message,
            Some('t') => Scope::Transaction,
            Some('d') => Scope::Dialog,
            _ => return Err("expected m (message), t (transaction) or d (dialog)".into()),
        };
        if letters.next().is_some() {
            return Err("only one of m, t and d may be given".into());
        }
        Ok(scope)
    }

    pub fn name(self) -> &'static str {
        match self {
            Scope::Message => "message",
            Scope::Transaction => "transaction",
            Scope::Dialog => "dialog",
        }
    }
}

/// Where one record goes: a database row, HEP packets, plain SIP copies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outputs {
    pub db: bool,
    /// The table of the row, when not the configured one.
    pub table: Option<Box<[u8]>>,
    pub hep: SmallVec<[Destination; 2]>,
    pub duplicate: SmallVec<[Destination; 2]>,
}

impl Outputs {
    pub fn is_empty(&self) -> bool {
        !self.db && self.hep.is_empty() && self.duplicate.is_empty()
    }
}

/// One row of the `sip_trace` table, borrowed from its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row<'a> {
    /// The table the row goes to; empty for the configured one.
    pub table: &'a [u8],
    pub msg: &'a [u8],
    pub callid: &'a [u8],
    pub method: &'a [u8],
    pub status: &'a [u8],
    pub fromip: &'a [u8],
    pub toip: &'a [u8],
    pub time: Timestamp,
    pub direction: Direction,
    pub fromtag: &'a [u8],
    pub traced_user: &'a [u8],
    pub totag: &'a [u8],
}

impl Row<'_> {
    /// The two ends, read back from their `proto:ip:port` texts; None when
    /// either is not one.
    pub fn ends(&self) -> Option<(Endpoint, Endpoint)> {
        let end = |text: &[u8]| Endpoint::parse(std::str::from_utf8(text).ok()?);
        Some((end(self.fromip)?, end(self.toip)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::endpoint::Transport;
    use crate::core::hep::{decode_v3, Decoded};

    const MSG: &[u8] = b"OPTIONS sip:x SIP/2.0\r\nCall-ID: abc@host\r\nFrom: <sip:a@b>;tag=1\r\n\
To: <sip:c@d>\r\nCSeq: 1 OPTIONS\r\n\r\n";

    fn record(correlation_id: Option<&'static [u8]>) -> TraceRecord<'static> {
        TraceRecord {
            time: Timestamp { secs: 1_800_000_000, usecs: 5 },
            direction: Direction::In,
            src: Endpoint::new(Transport::Tcp, "192.0.2.1".parse().unwrap(), 40000),
            dst: Endpoint::new(Transport::Tcp, "192.0.2.2".parse().unwrap(), 5060),
            payload: MSG,
            correlation_id,
            extra_correlation: None,
            proto_type: hep::proto_type::SIP,
            traced_users: None,
        }
    }

    #[test]
    fn correlation_defaults_to_the_call_id() {
        let fields = crate::core::sip::extract(MSG).unwrap();
        assert_eq!(record(None).hep_correlation(Some(&fields)), Some(&b"abc@host"[..]));
        assert_eq!(record(None).hep_correlation(None), Some(&b"abc@host"[..]));
        assert_eq!(record(Some(b"")).hep_correlation(None), Some(&b"abc@host"[..]));
        assert_eq!(record(Some(b"mine")).hep_correlation(Some(&fields)), Some(&b"mine"[..]));
        let mut no_call_id = record(None);
        no_call_id.payload = b"garbage";
        assert_eq!(no_call_id.hep_correlation(None), None);
    }

    #[test]
    fn hep_packet_carries_the_record() {
        let mut out = Vec::new();
        record(None)
            .encode_hep(
                None,
                &HepSettings { capture_id: 9, auth_key: None, version: 3, ..Default::default() },
                &mut out,
            )
            .unwrap();
        let chunks = decode_v3(&out).unwrap();
        let d = Decoded::from_chunks(&chunks);
        assert_eq!(d.ip_proto, Some(6));
        assert_eq!(d.src_port, Some(40000));
        assert_eq!(d.time_sec, Some(1_800_000_000));
        assert_eq!(d.time_usec, Some(5));
        assert_eq!(d.correlation_id, Some(&b"abc@host"[..]));
        assert_eq!(d.payload, Some(MSG));
    }

    #[test]
    fn scopes() {
        assert_eq!(Scope::parse("m"), Ok(Scope::Message));
        assert_eq!(Scope::parse(" T\t"), Ok(Scope::Transaction));
        assert_eq!(Scope::parse("D"), Ok(Scope::Dialog));
        assert!(Scope::parse("").is_err());
        assert!(Scope::parse("mt").unwrap_err().contains("only one"));
        assert!(Scope::parse("x").unwrap_err().contains("expected"));
    }

    #[test]
    fn directions() {
        assert_eq!(Direction::In.as_str(), "in");
        assert_eq!(Direction::Out.as_str(), "out");
    }
}
