//! Replaying the spool: at a bounded rate, one batch at a time, between
//! the live batches; a batch leaves the spool once it was handed over.

use super::spool::{Batch, Kind, Target};
use super::stream::{Refused, Tag};
use super::{cluster, Sender, SenderHost};
use crate::core::counters::Counters;
use crate::core::dest::Destination;
use crate::core::endpoint::Transport;
use crate::core::record::{Direction, Row, Timestamp};
use crate::core::settings::Distribution;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long replay of rows waits after the database failed.
const ROWS_RETRY: Duration = Duration::from_secs(1);

pub(super) struct Replay {
    /// Records per second.
    rate: f64,
    tokens: f64,
    last: Option<Instant>,
    /// The batch handed to TCP and TLS streams, until they wrote it.
    in_flight: Option<(Batch, Vec<(Destination, super::Kind)>)>,
    /// A stream broke while it held replayed frames.
    broken: bool,
    rows_retry_at: Option<Instant>,
    /// Scratch space for spool frames.
    pub(super) frame: Vec<u8>,
}

impl Replay {
    pub(super) fn new(rate: u32) -> Replay {
        Replay {
            rate: rate.max(1) as f64,
            tokens: 0.0,
            last: None,
            in_flight: None,
            broken: false,
            rows_retry_at: None,
            frame: Vec::new(),
        }
    }

    /// Rows could not be stored: replay of rows waits a little.
    pub(super) fn rows_failed(&mut self, now: Instant) {
        self.rows_retry_at = Some(now + ROWS_RETRY);
    }

    /// Records that may be replayed now: a tenth of a second's worth at most.
    fn budget(&mut self, now: Instant) -> usize {
        if let Some(last) = self.last {
            self.tokens += now.duration_since(last).as_secs_f64() * self.rate;
        }
        self.last = Some(now);
        self.tokens = self.tokens.min((self.rate / 10.0).max(1.0));
        self.tokens as usize
    }
}

/// Where rows wait.
pub(super) fn row_target() -> Target {
    Target { kind: Kind::Row, distribution: Distribution::Copy, dests: Vec::new() }
}

/// A row in the spool: time, direction, then each field with its length.
pub(super) fn encode_row(row: &Row<'_>, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&row.time.secs.to_le_bytes());
    out.extend_from_slice(&row.time.usecs.to_le_bytes());
    out.push(row.direction as u8);
    for f in [
        row.table,
        row.msg,
        row.callid,
        row.method,
        row.status,
        row.fromip,
        row.toip,
        row.fromtag,
        row.traced_user,
        row.totag,
    ] {
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
}

pub(super) fn decode_row(data: &[u8]) -> Option<Row<'_>> {
    let secs = u64::from_le_bytes(data.get(..8)?.try_into().ok()?);
    let usecs = u32::from_le_bytes(data.get(8..12)?.try_into().ok()?);
    let direction = match data.get(12)? {
        0 => Direction::In,
        _ => Direction::Out,
    };
    let mut at = 13;
    let mut fields: [&[u8]; 10] = [b""; 10];
    for f in fields.iter_mut() {
        let len = u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?) as usize;
        *f = data.get(at + 4..at + 4 + len)?;
        at += 4 + len;
    }
    let [table, msg, callid, method, status, fromip, toip, fromtag, traced_user, totag] = fields;
    Some(Row {
        table,
        msg,
        callid,
        method,
        status,
        fromip,
        toip,
        time: Timestamp { secs, usecs },
        direction,
        fromtag,
        traced_user,
        totag,
    })
}

impl Sender<'_> {
    /// A connection broke while it held replayed frames: the batch in flight
    /// goes back to the spool and comes again.
    pub(super) fn replay_broken(&mut self) {
        self.replay.broken = true;
    }

    fn target_ready(&mut self, t: &Target, now: Instant) -> bool {
        match t.kind {
            Kind::Row => self.replay.rows_retry_at.map_or(true, |at| now >= at),
            _ => t.dests.iter().any(|d| self.board.is_up(*d, now)),
        }
    }

    /// Moves replay along: ends the batch in flight when its streams wrote
    /// it, or takes the next one when the rate allows.
    pub(super) fn replay_step(&mut self, host: &mut dyn SenderHost) {
        let now = Instant::now();
        if self.replay.in_flight.is_none() {
            // Frames of a batch already rewound broke: nothing to undo.
            self.replay.broken = false;
        }
        if let Some((batch, streams)) = self.replay.in_flight.take() {
            let n = batch.entries.len() as u64;
            if self.replay.broken {
                self.replay.broken = false;
                // Some of the batch may have been written before the break.
                Counters::add_n(&self.counters.replay_repeated, n);
                spool_result(host, self.spool.as_mut().map(|s| s.rewind(&batch)));
            } else if streams.iter().all(|k| self.streams.get(k).map_or(true, |s| s.pending_replay() == 0)) {
                Counters::add_n(&self.counters.replayed, n);
                spool_result(host, self.spool.as_mut().map(|s| s.commit(&batch)));
            } else {
                self.replay.in_flight = Some((batch, streams));
                return;
            }
        }
        if self.spool.as_ref().map_or(true, |s| s.is_empty()) {
            // Nothing to replay: the rate starts afresh when there is.
            self.replay.last = None;
            self.replay.tokens = 0.0;
            return;
        }
        let budget = self.replay.budget(now).min(self.settings.batch_size);
        if budget == 0 {
            return;
        }
        // Which targets can take records now.
        let targets = self.spool.as_ref().map(|s| s.targets()).unwrap_or_default();
        let ready: Vec<Target> = targets.into_iter().filter(|t| self.target_ready(t, now)).collect();
        let Some(spool) = self.spool.as_mut() else { return };
        let batch = match spool.take(budget, |t| ready.contains(t)) {
            Ok(Some(b)) => b,
            Ok(None) => return,
            Err(e) => {
                host.spool_note(true, &format_args!("cannot read the spool: {e}"));
                return;
            }
        };
        self.replay.tokens -= batch.entries.len() as f64;
        if batch.skipped > 0 {
            let detail = "damaged records in the spool skipped";
            self.drop(host, crate::core::counters::DropReason::SpoolCorrupt, batch.skipped, &detail);
        }
        match batch.target.kind {
            Kind::Row => self.replay_rows(batch, host, now),
            Kind::Hep | Kind::Copy => self.replay_frames(batch, host, now),
        }
    }

    fn replay_rows(&mut self, batch: Batch, host: &mut dyn SenderHost, now: Instant) {
        let rows: Vec<Row<'_>> = batch.entries.iter().filter_map(|e| decode_row(&e.data)).collect();
        let (stored, error) = if rows.is_empty() { (0, None) } else { host.store_rows(&rows) };
        let n = batch.entries.len() as u64;
        if stored >= rows.len() {
            Counters::add(&self.counters.db_batches);
            Counters::add_n(&self.counters.db_rows, stored as u64);
            Counters::add_n(&self.counters.replayed, n);
            let r = self.spool.as_mut().map(|s| s.commit(&batch));
            spool_result(host, r);
        } else {
            if stored > 0 {
                Counters::add_n(&self.counters.db_rows, stored as u64);
                Counters::add_n(&self.counters.replay_repeated, stored as u64);
            }
            if let Some((_, why)) = error {
                host.spool_note(true, &format_args!("spooled rows not stored yet: {why}"));
            }
            self.replay.rows_failed(now);
            let r = self.spool.as_mut().map(|s| s.rewind(&batch));
            spool_result(host, r);
        }
    }

    fn replay_frames(&mut self, batch: Batch, host: &mut dyn SenderHost, now: Instant) {
        let kind = if batch.target.kind == Kind::Hep { super::Kind::Hep } else { super::Kind::Copy };
        let copy = batch.target.kind == Kind::Copy;
        let list = batch.target.dests.clone();
        let ret = Duration::from_secs(self.settings.delivery.failover_return_s);
        // Where each record goes now.
        let mut picks: Vec<Option<Destination>> = Vec::with_capacity(batch.entries.len());
        for e in &batch.entries {
            let pick = match batch.target.distribution {
                _ if list.len() <= 1 => list.first().copied().filter(|d| self.board.is_up(*d, now)),
                Distribution::Copy => list.first().copied(),
                Distribution::Failover => {
                    cluster::failover(&list, &mut self.board, &mut self.failover, ret, now)
                }
                Distribution::Shard => {
                    cluster::shard(cluster::frame_key(copy, &e.data), &list, &mut self.board, now)
                }
            };
            picks.push(pick);
        }
        if picks.iter().any(Option::is_none) {
            let r = self.spool.as_mut().map(|s| s.rewind(&batch));
            spool_result(host, r);
            return;
        }
        let mut datagrams: Vec<(SocketAddr, &[u8])> = Vec::new();
        let mut udp_dests = Vec::new();
        let mut streams: Vec<(Destination, super::Kind)> = Vec::new();
        let mut refused = false;
        let mut handed = 0u64;
        for (e, d) in batch.entries.iter().zip(picks.iter().flatten()) {
            if d.transport == Transport::Udp {
                datagrams.push((d.addr, &e.data));
                udp_dests.push(*d);
                continue;
            }
            let stream = match self.streams.get_mut(&(*d, kind)) {
                Some(s) => s,
                None => {
                    let tls = if d.transport == Transport::Tls { host.tls_for(*d) } else { None };
                    if d.transport == Transport::Tls && tls.is_none() {
                        refused = true;
                        break;
                    }
                    self.streams.entry((*d, kind)).or_insert_with(|| {
                        super::Stream::new(*d, tls, self.settings.stream_backlog)
                            .from_ip(self.settings.source_ip)
                    })
                }
            };
            let tag = Tag { key: e.key, route: u32::MAX, replay: true };
            match stream.queue_tagged(&e.data, tag, now) {
                Ok(()) => {
                    handed += 1;
                    if !streams.contains(&(*d, kind)) {
                        streams.push((*d, kind));
                    }
                }
                Err(Refused::NotConnected) | Err(Refused::Backlog) => {
                    refused = true;
                    break;
                }
            }
        }
        if !datagrams.is_empty() && !refused {
            let result = self.udp.send_burst(&datagrams);
            Counters::add_n(super::counter_of(self.counters, kind), result.sent as u64);
            for (i, d) in udp_dests.iter().enumerate() {
                if !result.failed.iter().any(|(f, _)| *f == i) {
                    self.board.sent(*d, 1, now);
                }
            }
            if !result.failed.is_empty() {
                for (i, _) in &result.failed {
                    self.board.down(udp_dests[*i], now);
                }
                Counters::add_n(&self.counters.replay_repeated, result.sent as u64);
                refused = true;
            }
        }
        if refused {
            // Not all of it went: the whole batch comes again; what went
            // already may arrive twice, and is counted so.
            Counters::add_n(&self.counters.replay_repeated, handed);
            let r = self.spool.as_mut().map(|s| s.rewind(&batch));
            spool_result(host, r);
            return;
        }
        if streams.is_empty() {
            Counters::add_n(&self.counters.replayed, batch.entries.len() as u64);
            let r = self.spool.as_mut().map(|s| s.commit(&batch));
            spool_result(host, r);
        } else {
            // The next polls write it; the batch ends when the streams
            // wrote it all.
            self.replay.in_flight = Some((batch, streams));
        }
    }
}

fn spool_result(host: &dyn SenderHost, r: Option<std::io::Result<()>>) {
    if let Some(Err(e)) = r {
        host.spool_note(true, &format_args!("cannot update the spool: {e}"));
    }
}
