//! The queue format between SIP workers and senders (`core::wire`).
//!
//! - Raw fuzz bytes go to `decode`, which must not panic; what it accepts
//!   encodes and decodes again to the same record.
//! - An input that does not start with the format's version byte (which
//!   the decoder would refuse) becomes a record, which encodes into exactly `encoded_len`
//!   bytes and decodes back to the same record and outputs; every shorter
//!   cut of it is refused.

#![no_main]

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use siptrace::core::dest::Destination;
use siptrace::core::record::{Direction, Outputs, Timestamp, TraceRecord};
use siptrace::core::wire;
use siptrace_rs_fuzz::{endpoint, endpoint_pair, is_within};

struct Input {
    record: Owned,
    outputs: Outputs,
    time: Timestamp,
    cut: usize,
}

/// The owned parts of a record.
struct Owned {
    direction: Direction,
    src: siptrace::core::endpoint::Endpoint,
    dst: siptrace::core::endpoint::Endpoint,
    payload: Vec<u8>,
    correlation_id: Option<Vec<u8>>,
    extra_correlation: Option<Vec<u8>>,
    proto_type: u8,
    traced_users: Option<Vec<u8>>,
}

impl Owned {
    fn record(&self) -> TraceRecord<'_> {
        TraceRecord {
            // encode() stamps the record with the time it is given instead.
            time: Timestamp { secs: 0, usecs: 0 },
            direction: self.direction,
            src: self.src,
            dst: self.dst,
            payload: &self.payload,
            correlation_id: self.correlation_id.as_deref(),
            extra_correlation: self.extra_correlation.as_deref(),
            proto_type: self.proto_type,
            traced_users: self.traced_users.as_deref(),
        }
    }
}

fn destinations(u: &mut Unstructured<'_>) -> Result<Vec<Destination>> {
    // The count travels in one byte: a configuration has a handful.
    let n = u.int_in_range(0..=8)?;
    (0..n)
        .map(|_| {
            let v6 = u.arbitrary()?;
            let e = endpoint(u, v6)?;
            Ok(Destination { addr: e.addr, transport: e.transport })
        })
        .collect()
}

fn input(u: &mut Unstructured<'_>) -> Result<Input> {
    let (src, dst, _) = endpoint_pair(u)?;
    let record = Owned {
        direction: if u.arbitrary()? { Direction::In } else { Direction::Out },
        src,
        dst,
        payload: u.arbitrary()?,
        correlation_id: u.arbitrary()?,
        extra_correlation: u.arbitrary()?,
        proto_type: u.arbitrary()?,
        traced_users: u.arbitrary()?,
    };
    let mut outputs = Outputs { db: u.arbitrary()?, ..Outputs::default() };
    // A table name is an SQL identifier of at most 64 bytes; the format
    // allows up to 255.
    let table: Option<Vec<u8>> = u.arbitrary()?;
    outputs.table = table.map(|mut t| {
        t.truncate(255);
        t.into()
    });
    outputs.hep.extend(destinations(u)?);
    outputs.duplicate.extend(destinations(u)?);
    let time = Timestamp { secs: u.arbitrary()?, usecs: u.arbitrary()? };
    Ok(Input { record, outputs, time, cut: u.arbitrary()? })
}

fn non_empty(v: Option<&[u8]>) -> Option<&[u8]> {
    v.filter(|v| !v.is_empty())
}

/// What decoding gives back for `outputs`: an empty table name is none.
fn normalized(outputs: &Outputs) -> Outputs {
    let mut o = outputs.clone();
    o.table = o.table.filter(|t| !t.is_empty());
    o
}

fn encode(record: &TraceRecord<'_>, outputs: &Outputs, time: Timestamp) -> Vec<u8> {
    let mut buf = vec![0u8; wire::encoded_len(record, outputs)];
    wire::encode(&mut buf, record, outputs, time);
    buf
}

/// Field by field, as `TraceRecord` has no `PartialEq`.
fn assert_same(a: &TraceRecord<'_>, b: &TraceRecord<'_>) {
    assert_eq!(a.time, b.time);
    assert_eq!(a.direction, b.direction);
    assert_eq!((a.src, a.dst), (b.src, b.dst));
    assert_eq!(a.payload, b.payload);
    assert_eq!(a.correlation_id, b.correlation_id);
    assert_eq!(a.extra_correlation, b.extra_correlation);
    assert_eq!(a.proto_type, b.proto_type);
    assert_eq!(a.traced_users, b.traced_users);
}

/// Whatever `decode` accepts is a record that survives another round.
fn check_decoder(data: &[u8]) {
    let Ok((record, outputs)) = wire::decode(data) else { return };
    for s in [Some(record.payload), record.correlation_id, record.extra_correlation, record.traced_users] {
        assert!(s.is_none_or(|s| is_within(data, s)));
    }
    let _ = record.traced_users().count();
    let again = encode(&record, &outputs, record.time);
    let (back, back_outputs) = wire::decode(&again).expect("a re-encoded record decodes");
    assert_same(&back, &record);
    assert_eq!(back_outputs, outputs);
}

fuzz_target!(|data: &[u8]| {
    check_decoder(data);
    // Mutations of a queued record stay records rather than being read as
    // something else.
    if data.first() == Some(&wire::VERSION) {
        return;
    }

    let Ok(i) = input(&mut Unstructured::new(data)) else { return };
    let record = i.record.record();
    let buf = encode(&record, &i.outputs, i.time);
    let (back, back_outputs) = wire::decode(&buf).expect("an encoded record decodes");
    let expected = TraceRecord {
        time: i.time,
        correlation_id: non_empty(record.correlation_id),
        extra_correlation: non_empty(record.extra_correlation),
        ..record
    };
    assert_same(&back, &expected);
    assert_eq!(back_outputs, normalized(&i.outputs));
    check_decoder(&buf);

    let cut = i.cut % buf.len();
    assert!(wire::decode(&buf[..cut]).is_err(), "a record cut at {cut} of {} decoded", buf.len());
});
