//! Rows a sender holds until it writes them: copied out of the queue, so
//! that the queue frees at once while rows gather into large database
//! transactions, which cost the database far less per row.

use crate::core::record::{Direction, Row, Timestamp, TraceRecord};
use crate::core::sip::SipFields;
use std::ops::Range;
use std::time::Instant;

struct HeldRow {
    table: Range<usize>,
    fields: [Range<usize>; 8],
    traced_user: Range<usize>,
    time: Timestamp,
    direction: Direction,
}

#[derive(Default)]
pub struct PendingRows {
    bytes: Vec<u8>,
    rows: Vec<HeldRow>,
    since: Option<Instant>,
}

impl PendingRows {
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// When the oldest held row arrived.
    pub fn since(&self) -> Option<Instant> {
        self.since
    }

    /// Holds the rows of `record`, for `table` (empty: the configured one).
    pub fn push(&mut self, record: &TraceRecord<'_>, f: &SipFields<'_>, table: &[u8], now: Instant) {
        let (from, to) = (record.src.text(), record.dst.text());
        let table = {
            let start = self.bytes.len();
            self.bytes.extend_from_slice(table);
            start..self.bytes.len()
        };
        let parts: [&[u8]; 8] = [
            record.payload,
            f.call_id,
            f.method(),
            f.status(),
            from.as_bytes(),
            to.as_bytes(),
            f.from_tag,
            f.to_tag,
        ];
        let fields = parts.map(|p| {
            let start = self.bytes.len();
            self.bytes.extend_from_slice(p);
            start..self.bytes.len()
        });
        // One row per traced user, sharing the copied fields.
        for user in record.traced_users() {
            let start = self.bytes.len();
            self.bytes.extend_from_slice(user);
            let traced_user = start..self.bytes.len();
            self.rows.push(HeldRow {
                table: table.clone(),
                fields: fields.clone(),
                traced_user,
                time: record.time,
                direction: record.direction,
            });
        }
        self.since.get_or_insert(now);
    }

    /// The held rows, as the table takes them.
    pub fn rows(&self) -> Vec<Row<'_>> {
        self.rows
            .iter()
            .map(|r| {
                let [msg, callid, method, status, fromip, toip, fromtag, totag] =
                    r.fields.clone().map(|range| &self.bytes[range]);
                Row {
                    table: &self.bytes[r.table.clone()],
                    msg,
                    callid,
                    method,
                    status,
                    fromip,
                    toip,
                    time: r.time,
                    direction: r.direction,
                    fromtag,
                    traced_user: &self.bytes[r.traced_user.clone()],
                    totag,
                }
            })
            .collect()
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.rows.clear();
        self.since = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::endpoint::{Endpoint, Transport};

    #[test]
    fn held_rows_read_back_as_they_were() {
        let payload = b"SIP/2.0 486 Busy\r\nCall-ID: c9\r\nFrom: <sip:a@b>;tag=x\r\nTo: <sip:c@d>;tag=y\r\nCSeq: 3 INVITE\r\n\r\n";
        let record = TraceRecord {
            time: Timestamp { secs: 5, usecs: 6 },
            direction: Direction::Out,
            src: Endpoint::new(Transport::Tcp, "10.0.0.1".parse().unwrap(), 5060),
            dst: Endpoint::new(Transport::Tcp, "10.0.0.2".parse().unwrap(), 5070),
            payload,
            correlation_id: None,
            extra_correlation: None,
            proto_type: crate::core::hep::proto_type::SIP,
            traced_users: None,
        };
        let fields = crate::core::sip::extract(payload).unwrap();
        let mut held = PendingRows::default();
        assert!(held.since().is_none());
        held.push(&record, &fields, b"", Instant::now());
        held.push(&record, &fields, b"calls_2026", Instant::now());
        let rows = held.rows();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].table, rows[1].table), (&b""[..], &b"calls_2026"[..]));
        let r = rows[1];
        assert_eq!(
            (r.msg, r.callid, r.method, r.status),
            (&payload[..], &b"c9"[..], &b"INVITE"[..], &b"486"[..])
        );
        assert_eq!((r.fromip, r.toip), (&b"tcp:10.0.0.1:5060"[..], &b"tcp:10.0.0.2:5070"[..]));
        assert_eq!((r.fromtag, r.totag, r.traced_user), (&b"x"[..], &b"y"[..], &b""[..]));
        assert_eq!((r.time, r.direction), (Timestamp { secs: 5, usecs: 6 }, Direction::Out));
        held.clear();
        assert!(held.is_empty() && held.since().is_none());
    }
}
