//! The layout of a trace record in a queue: what a SIP worker writes and a
//! sender reads. Fixed-size fields first, then the destinations, the
//! correlation id and the payload.

use crate::core::dest::Destination;
use crate::core::endpoint::{Endpoint, Transport};
use crate::core::record::{Direction, Outputs, Timestamp, TraceRecord};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The first byte of every queued record; a record of another version is
/// refused.
pub const VERSION: u8 = 4;
/// Most destinations of each kind (HEP, SIP copy) a queued record holds:
/// each count travels in one byte.
pub const MAX_DESTINATIONS: usize = u8::MAX as usize;
const FLAG_DB: u8 = 1;
/// version, direction, flags, hep count, duplicate count, HEP proto type,
/// table name length, 1 spare,
/// seconds, microseconds, correlation length, payload length, traced users
/// length, extra correlation length.
const FIXED: usize = 8 + 8 + 4 + 4 + 4 + 4 + 4;
/// transport, family, port, 16 address bytes.
const ENDPOINT: usize = 1 + 1 + 2 + 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireError(&'static str);

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed queued record: {}", self.0)
    }
}

/// Bytes `record` and `outputs` take in a queue.
pub fn encoded_len(record: &TraceRecord<'_>, outputs: &Outputs) -> usize {
    FIXED
        + ENDPOINT * (2 + outputs.hep.len() + outputs.duplicate.len())
        + record.correlation_id.map_or(0, <[u8]>::len)
        + record.extra_correlation.map_or(0, <[u8]>::len)
        + record.payload.len()
        + record.traced_users.map_or(0, <[u8]>::len)
        + outputs.table.as_deref().map_or(0, <[u8]>::len)
}

/// Writes the record into `buf`, which is `encoded_len` bytes, with `time`
/// as its timestamp.
///
/// A table name is at most 255 bytes (the caller checks it is an identifier).
pub fn encode(buf: &mut [u8], record: &TraceRecord<'_>, outputs: &Outputs, time: Timestamp) {
    let correlation = record.correlation_id.unwrap_or_default();
    let table = outputs.table.as_deref().unwrap_or_default();
    debug_assert!(table.len() <= u8::MAX as usize);
    debug_assert!(outputs.hep.len() <= MAX_DESTINATIONS && outputs.duplicate.len() <= MAX_DESTINATIONS);
    let mut w = Writer { buf, at: 0 };
    w.put(&[
        VERSION,
        record.direction as u8,
        if outputs.db { FLAG_DB } else { 0 },
        outputs.hep.len() as u8,
        outputs.duplicate.len() as u8,
        record.proto_type,
        table.len() as u8,
        0,
    ]);
    w.put(&time.secs.to_le_bytes());
    w.put(&time.usecs.to_le_bytes());
    w.put(&(correlation.len() as u32).to_le_bytes());
    w.put(&(record.payload.len() as u32).to_le_bytes());
    // u32::MAX marks "no list": one row with an empty traced user.
    w.put(&record.traced_users.map_or(u32::MAX, |u| u.len() as u32).to_le_bytes());
    let extra = record.extra_correlation.unwrap_or_default();
    w.put(&(extra.len() as u32).to_le_bytes());
    w.endpoint(record.src.transport, record.src.addr);
    w.endpoint(record.dst.transport, record.dst.addr);
    for d in outputs.hep.iter().chain(outputs.duplicate.iter()) {
        w.endpoint(d.transport, d.addr);
    }
    w.put(correlation);
    w.put(record.payload);
    w.put(record.traced_users.unwrap_or_default());
    w.put(table);
    w.put(extra);
    debug_assert_eq!(w.at, w.buf.len());
}

/// Reads a record written by [`encode`]; the slices point into `buf`.
pub fn decode(buf: &[u8]) -> Result<(TraceRecord<'_>, Outputs), WireError> {
    let mut r = Reader { buf, at: 0 };
    let head = r.take(8)?;
    if head[0] != VERSION {
        return Err(WireError("unknown version"));
    }
    let direction = match head[1] {
        0 => Direction::In,
        1 => Direction::Out,
        _ => return Err(WireError("bad direction")),
    };
    let (db, n_hep, n_dup) = (head[2] & FLAG_DB != 0, head[3] as usize, head[4] as usize);
    let secs = r.u64()?;
    let usecs = r.u32()?;
    let correlation_len = r.u32()? as usize;
    let payload_len = r.u32()? as usize;
    let users_len = r.u32()?;
    let extra_len = r.u32()? as usize;
    let src = r.endpoint()?;
    let dst = r.endpoint()?;
    let mut outputs = Outputs { db, ..Outputs::default() };
    for _ in 0..n_hep {
        outputs.hep.push(r.destination()?);
    }
    for _ in 0..n_dup {
        outputs.duplicate.push(r.destination()?);
    }
    let correlation = r.take(correlation_len)?;
    let payload = r.take(payload_len)?;
    let traced_users = if users_len == u32::MAX { None } else { Some(r.take(users_len as usize)?) };
    let table = r.take(head[6] as usize)?;
    outputs.table = (!table.is_empty()).then(|| table.into());
    let extra = r.take(extra_len)?;
    if r.at != buf.len() {
        return Err(WireError("trailing bytes"));
    }
    let record = TraceRecord {
        time: Timestamp { secs, usecs },
        direction,
        src,
        dst,
        payload,
        correlation_id: (!correlation.is_empty()).then_some(correlation),
        extra_correlation: (!extra.is_empty()).then_some(extra),
        proto_type: head[5],
        traced_users,
    };
    Ok((record, outputs))
}

struct Writer<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.at..self.at + bytes.len()].copy_from_slice(bytes);
        self.at += bytes.len();
    }

    fn endpoint(&mut self, transport: Transport, addr: SocketAddr) {
        let mut ip = [0u8; 16];
        let family = match addr.ip() {
            IpAddr::V4(v4) => {
                ip[..4].copy_from_slice(&v4.octets());
                4
            }
            IpAddr::V6(v6) => {
                ip = v6.octets();
                6
            }
        };
        self.put(&[transport_code(transport), family]);
        self.put(&addr.port().to_le_bytes());
        self.put(&ip);
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or(WireError("truncated"))?;
        let bytes = &self.buf[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap_or_default()))
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap_or_default()))
    }

    fn endpoint(&mut self) -> Result<Endpoint, WireError> {
        let b = self.take(ENDPOINT)?;
        let transport = transport_of(b[0]).ok_or(WireError("bad transport"))?;
        let port = u16::from_le_bytes([b[2], b[3]]);
        let mut octets = [0u8; 16];
        octets.copy_from_slice(&b[4..20]);
        let ip = match b[1] {
            4 => IpAddr::V4(Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3])),
            6 => IpAddr::V6(Ipv6Addr::from(octets)),
            _ => return Err(WireError("bad address family")),
        };
        Ok(Endpoint::new(transport, ip, port))
    }

    fn destination(&mut self) -> Result<Destination, WireError> {
        let e = self.endpoint()?;
        Ok(Destination { addr: e.addr, transport: e.transport })
    }
}

const TRANSPORTS: [Transport; 6] =
    [Transport::Udp, Transport::Tcp, Transport::Tls, Transport::Sctp, Transport::Ws, Transport::Wss];

fn transport_code(t: Transport) -> u8 {
    TRANSPORTS.iter().position(|x| *x == t).unwrap_or(0) as u8
}

fn transport_of(code: u8) -> Option<Transport> {
    TRANSPORTS.get(code as usize).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(payload: &'a [u8], correlation: Option<&'a [u8]>) -> (TraceRecord<'a>, Outputs) {
        let record = TraceRecord {
            time: Timestamp { secs: 0, usecs: 0 },
            direction: Direction::Out,
            src: Endpoint::new(Transport::Tls, "2001:db8::1".parse().unwrap(), 5061),
            dst: Endpoint::new(Transport::Tls, "2001:db8::2".parse().unwrap(), 40000),
            payload,
            correlation_id: correlation,
            extra_correlation: Some(br#"{"sip":"c"}"#),
            proto_type: crate::core::hep::proto_type::LOG,
            traced_users: None,
        };
        let mut outputs = Outputs { db: true, ..Outputs::default() };
        outputs.hep.push(Destination { addr: "10.0.0.1:9060".parse().unwrap(), transport: Transport::Udp });
        outputs.hep.push(Destination { addr: "[::1]:9061".parse().unwrap(), transport: Transport::Tcp });
        outputs
            .duplicate
            .push(Destination { addr: "10.0.0.2:5060".parse().unwrap(), transport: Transport::Udp });
        (record, outputs)
    }

    #[test]
    fn round_trip() {
        let (record, outputs) = sample(b"BYE sip:x SIP/2.0\r\n\r\n", Some(b"cid-1"));
        let mut buf = vec![0u8; encoded_len(&record, &outputs)];
        let time = Timestamp { secs: 1_800_000_123, usecs: 999_999 };
        encode(&mut buf, &record, &outputs, time);
        let (back, back_outputs) = decode(&buf).unwrap();
        assert_eq!(back.time, time);
        assert_eq!(back.direction, Direction::Out);
        assert_eq!((back.src, back.dst), (record.src, record.dst));
        assert_eq!(back.payload, record.payload);
        assert_eq!(back.correlation_id, Some(&b"cid-1"[..]));
        assert_eq!(back.extra_correlation, Some(&br#"{"sip":"c"}"#[..]));
        assert_eq!(back.proto_type, crate::core::hep::proto_type::LOG);
        assert_eq!(back.traced_users().collect::<Vec<_>>(), [b""]);
        assert_eq!(back_outputs, outputs);
    }

    #[test]
    fn table_round_trip() {
        let (record, mut outputs) = sample(b"INVITE", None);
        outputs.table = Some(b"sip_trace_2026".to_vec().into());
        let mut buf = vec![0u8; encoded_len(&record, &outputs)];
        encode(&mut buf, &record, &outputs, Timestamp { secs: 1, usecs: 2 });
        let (back, back_outputs) = decode(&buf).unwrap();
        assert_eq!(back_outputs, outputs);
        assert_eq!(back.payload, b"INVITE");
    }

    #[test]
    fn traced_users_round_trip() {
        let mut packed = Vec::new();
        for user in [&b""[..], b"alice", b"bob@example.com"] {
            crate::core::record::pack_traced_user(&mut packed, user);
        }
        let (mut record, outputs) = sample(b"INVITE", None);
        record.traced_users = Some(&packed);
        let mut buf = vec![0u8; encoded_len(&record, &outputs)];
        encode(&mut buf, &record, &outputs, Timestamp { secs: 1, usecs: 2 });
        let (back, _) = decode(&buf).unwrap();
        assert_eq!(back.traced_users().collect::<Vec<_>>(), [&b""[..], b"alice", b"bob@example.com"]);
        // An empty list makes no row at all.
        record.traced_users = Some(b"");
        let mut buf = vec![0u8; encoded_len(&record, &outputs)];
        encode(&mut buf, &record, &outputs, Timestamp { secs: 1, usecs: 2 });
        assert_eq!(decode(&buf).unwrap().0.traced_users().count(), 0);
    }

    #[test]
    fn no_correlation_and_no_outputs() {
        let (record, _) = sample(b"x", None);
        let outputs = Outputs::default();
        let mut buf = vec![0u8; encoded_len(&record, &outputs)];
        encode(&mut buf, &record, &outputs, Timestamp { secs: 1, usecs: 2 });
        let (back, back_outputs) = decode(&buf).unwrap();
        assert_eq!(back.correlation_id, None);
        assert_eq!(back_outputs, Outputs::default());
    }

    #[test]
    fn the_most_destinations_round_trip() {
        let (record, mut outputs) = sample(b"x", None);
        let d = outputs.hep[0];
        outputs.hep = std::iter::repeat(d).take(MAX_DESTINATIONS).collect();
        outputs.duplicate = outputs.hep.clone();
        let mut buf = vec![0u8; encoded_len(&record, &outputs)];
        encode(&mut buf, &record, &outputs, Timestamp { secs: 1, usecs: 2 });
        assert_eq!(decode(&buf).unwrap().1, outputs);
    }

    #[test]
    fn damaged_records_are_errors() {
        let (record, outputs) = sample(b"payload", Some(b"c"));
        let mut buf = vec![0u8; encoded_len(&record, &outputs)];
        encode(&mut buf, &record, &outputs, Timestamp { secs: 1, usecs: 2 });
        for cut in 0..buf.len() {
            assert!(decode(&buf[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = buf.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
        let mut bad = buf.clone();
        bad[0] = 9;
        assert!(decode(&bad).is_err());
    }
}
