//! A sender drains one queue: it reads the records SIP workers queued,
//! turns them into table rows, HEP packets and plain SIP copies, and
//! delivers them in bursts: one `sendmmsg` for the datagrams, one database
//! batch for the rows, and writes to the TCP and TLS collectors.
//!
//! It runs in a process of its own, so that none of this costs the SIP
//! workers anything but the copy into the queue.

pub mod cluster;
mod replay;
pub mod rows;
pub mod spool;
pub mod stream;
pub mod tls;
pub mod udp;

use crate::core::counters::{Counters, DropReason};
use crate::core::dest::Destination;
use crate::core::endpoint::Transport;
use crate::core::hep::{self, EncodeError, HepSettings};
use crate::core::record::{Outputs, Row, TraceRecord};
use crate::core::ring::Ring;
use crate::core::settings::{Delivery, Distribution};
use crate::core::sip;
use crate::core::wire;
use crate::core::xheaders::{self, XHeaders};
use cluster::{Board, FailoverState};
use rows::PendingRows;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use spool::Spool;
use std::collections::HashMap;
use std::fmt::Display;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::ops::Range;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stream::{Refused, Stream, Tag};
use udp::UdpOut;

#[derive(Debug, Clone)]
pub struct SenderSettings {
    /// Most records handled in one burst.
    pub batch_size: usize,
    /// How long a sender with an empty queue waits before looking again.
    pub flush_interval: Duration,
    pub hep: HepSettings,
    /// Most bytes waiting for one TCP or TLS collector.
    pub stream_backlog: usize,
    /// Rows are written once the oldest has waited this long...
    pub db_flush_interval: Duration,
    /// ... or once this many are waiting, in one transaction.
    pub db_batch_size: usize,
    /// Whether SIP sent to collectors and as copies carries the
    /// `X-Siptrace-*` headers (rows never do).
    pub xheaders_write: bool,
    /// The local address TCP and TLS connections are made from, when the
    /// server's config names a send socket.
    pub source_ip: Option<IpAddr>,
    /// How several destinations are used, and the spool's settings.
    pub delivery: Delivery,
    /// Whether rows the database cannot take now wait in the spool. The
    /// host's `store_rows` must then store a batch in order, each row in
    /// one place, and stop at the first row it cannot store, as Kamailio's
    /// one transaction per batch does: the rows after the stored ones are
    /// spooled, and replayed to the same place. OpenSIPS writes each row
    /// to every destination of its trace id, one by one, so its rows are
    /// not spooled.
    pub spool_rows: bool,
}

impl SenderSettings {
    /// Most bytes waiting for one TCP or TLS collector.
    pub const STREAM_BACKLOG: usize = 4 << 20;

    /// The settings the module's parameters give; the host adds the source
    /// address when it has one.
    pub fn from_settings(settings: &crate::core::settings::Settings) -> SenderSettings {
        let s = &settings.senders;
        SenderSettings {
            batch_size: s.batch_size,
            flush_interval: Duration::from_millis(s.flush_interval_ms),
            hep: settings.hep.clone(),
            stream_backlog: Self::STREAM_BACKLOG,
            db_flush_interval: Duration::from_millis(s.db_flush_interval_ms),
            db_batch_size: s.db_batch_size,
            xheaders_write: settings.xheaders_write,
            source_ip: None,
            delivery: settings.delivery.clone(),
            spool_rows: true,
        }
    }
}

/// What a sender needs from the server it runs in.
pub trait SenderHost {
    /// Stores rows as one batch; returns how many were stored and, when
    /// not all were, why.
    fn store_rows(&mut self, rows: &[Row<'_>]) -> (usize, Option<(DropReason, String)>);
    /// TLS settings and the certificate name for a TLS collector.
    fn tls_for(&self, dest: Destination) -> Option<(Arc<ClientConfig>, ServerName<'static>)>;
    /// Reports records that were dropped (they are already counted).
    fn dropped(&self, reason: DropReason, count: u64, detail: &dyn Display);
    /// Reports a connection to a collector that failed or came back.
    fn connection(&self, dest: Destination, up: bool, detail: &dyn Display);
    /// Reports something about the spool worth a log line: `warn` for a
    /// problem, otherwise news.
    fn spool_note(&self, _warn: bool, _detail: &dyn Display) {}
}

/// What a packet is, for counting it when it goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Hep,
    Copy,
}

/// An outgoing packet: where to, what, its bytes and its tag.
type Packet = (Destination, Kind, Bytes, Tag);

/// Where the bytes of an outgoing packet are.
#[derive(Debug, Clone)]
enum Bytes {
    /// In the sender's scratch buffer.
    Encoded(Range<usize>),
    /// The payload of the batch's record at this index.
    Payload(usize),
}

pub struct Sender<'c> {
    settings: SenderSettings,
    counters: &'c Counters,
    udp: UdpOut,
    streams: HashMap<(Destination, Kind), Stream>,
    scratch: Vec<u8>,
    rows: PendingRows,
    board: Board<'c>,
    failover: FailoverState,
    /// Where tagged frames were meant to go, by the tag's route.
    routes: Vec<(spool::Target, u64)>,
    spool: Option<Spool>,
    /// Which sender this is, for its spool gauges.
    index: usize,
    replay: replay::Replay,
}

impl<'c> Sender<'c> {
    pub fn new(settings: SenderSettings, counters: &'c Counters) -> Sender<'c> {
        Sender {
            counters,
            udp: UdpOut::new(),
            streams: HashMap::new(),
            scratch: Vec::new(),
            rows: PendingRows::default(),
            board: Board::new(Some(counters), false),
            failover: FailoverState::default(),
            routes: Vec::new(),
            spool: None,
            index: 0,
            replay: replay::Replay::new(settings.delivery.spool_replay_rate),
            settings,
        }
    }

    /// Opens the disk spool of sender `index` (of `count`) under `dir`, and
    /// counts what an earlier run left in it; says what it found, if anything.
    pub fn open_spool(
        &mut self,
        dir: &std::path::Path,
        index: usize,
        count: usize,
    ) -> Result<Option<String>, String> {
        let max = self.settings.delivery.spool_max_bytes / count.max(1) as u64;
        let (spool, found) =
            Spool::open(dir, index, count, max).map_err(|e| format!("spool_dir '{}': {e}", dir.display()))?;
        let c = self.counters;
        Counters::add_n(&c.spool_restored, found.records);
        Counters::add_n(&c.replay_repeated, found.repeated);
        if found.corrupt > 0 {
            c.drop_n(DropReason::SpoolCorrupt, found.corrupt);
        }
        let news = (found.records > 0 || found.corrupt > 0).then(|| {
            format!(
                "spool {}: {} records ({} bytes) to replay; {} damaged stretches skipped; \
                 {} records of a batch in flight will be sent again",
                dir.display(),
                found.records,
                found.bytes,
                found.corrupt,
                found.repeated
            )
        });
        self.index = index.min(crate::core::counters::MAX_SENDERS - 1);
        self.spool = Some(spool);
        Ok(news)
    }

    fn spool_gauges(&mut self, host: &dyn SenderHost) {
        let Some(spool) = &mut self.spool else { return };
        let full = spool.take_dropped_full();
        let (bytes, records) = (spool.bytes(), spool.records());
        let c = self.counters;
        c.spool_bytes[self.index].store(bytes, std::sync::atomic::Ordering::Relaxed);
        c.spool_records[self.index].store(records, std::sync::atomic::Ordering::Relaxed);
        if full > 0 {
            self.drop(
                host,
                DropReason::SpoolFull,
                full,
                &"the spool is full: its oldest records were dropped",
            );
        }
    }

    /// Sends datagrams from `socket` only, such as a listening socket of
    /// the server that the config names as the send socket.
    pub fn with_udp_source(mut self, socket: UdpSocket) -> Sender<'c> {
        self.udp = UdpOut::with_source(socket);
        self
    }

    pub fn flush_interval(&self) -> Duration {
        self.settings.flush_interval
    }

    pub fn batch_size(&self) -> usize {
        self.settings.batch_size
    }

    /// Delivers up to one batch from `ring`, writes the held rows when
    /// they are due, and moves the collector connections along. Returns how
    /// many records it took.
    pub fn step(&mut self, ring: &Ring, host: &mut dyn SenderHost) -> usize {
        let mut reader = ring.reader();
        let mut batch: Vec<(TraceRecord<'_>, Outputs)> = Vec::new();
        let mut corrupt = 0;
        while batch.len() < self.settings.batch_size {
            let Some(bytes) = reader.next_record() else { break };
            match wire::decode(bytes) {
                Ok(record) => batch.push(record),
                Err(_) => corrupt += 1,
            }
        }
        if corrupt > 0 {
            self.drop(host, DropReason::Unparsable, corrupt, &"corrupt records in the queue");
        }
        let taken = batch.len();
        if taken > 0 {
            ring.take_in_hand(reader.position(), taken as u64);
            Counters::add_n(&self.counters.dequeued, taken as u64);
            self.deliver(&batch, host);
        }
        ring.release_keeping(reader.position(), self.held_back() as u64);
        self.flush_rows(false, host);
        self.poll_outputs(host);
        if self.spool.is_some() {
            self.replay_step(host);
            self.spool_gauges(host);
        }
        ring.set_held_back(self.held_back() as u64);
        taken
    }

    /// Outputs taken from the queue and not delivered yet: rows waiting for
    /// a batch write, frames waiting for a TCP or TLS collector.
    fn held_back(&self) -> usize {
        self.rows.len() + self.streams.values().map(Stream::pending_frames).sum::<usize>()
    }

    /// When the server stops: delivers what is queued, the rows held back
    /// and the frames waiting for collectors, for at most `within`. Returns
    /// the bytes left in the queue.
    pub fn drain(&mut self, ring: &Ring, host: &mut dyn SenderHost, within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline && (self.step(ring, host) > 0 || ring.depth() > 0) {}
        self.flush_rows(true, host);
        while Instant::now() < deadline && self.streams_waiting() {
            self.step(ring, host);
            std::thread::sleep(Duration::from_millis(10));
        }
        ring.depth()
    }

    /// Before a sender takes over `ring` from a sender process that died:
    /// counts as dropped the records that one had taken and not delivered,
    /// so that they are neither lost silently nor sent twice.
    pub fn take_over(&self, ring: &Ring, host: &dyn SenderHost) {
        let lost = ring.abandon_in_hand();
        if lost > 0 {
            let detail = format_args!("{lost} records were held by a sender process that died");
            self.drop(host, DropReason::SenderDied, lost, &detail);
        }
    }

    /// Writes the held rows in one batch if they are due, or if `now`.
    pub fn flush_rows(&mut self, now: bool, host: &mut dyn SenderHost) {
        let due = self.rows.len() >= self.settings.db_batch_size
            || self.rows.since().is_some_and(|t| t.elapsed() >= self.settings.db_flush_interval);
        if self.rows.is_empty() || !(due || now) {
            return;
        }
        let rows = self.rows.rows();
        let (stored, error) = host.store_rows(&rows);
        if stored > 0 {
            Counters::add(&self.counters.db_batches);
            Counters::add_n(&self.counters.db_rows, stored as u64);
        }
        let lost = (rows.len() - stored.min(rows.len())) as u64;
        let (reason, why) = error.unwrap_or((DropReason::DbFailed, "the database refused them".into()));
        // Rows the database could not take because it is not there wait in
        // the spool; rows it refused would be refused again.
        let mut spooled = 0;
        if lost > 0 && reason == DropReason::DbUnavailable && self.settings.spool_rows {
            if let Some(spool) = &mut self.spool {
                let target = replay::row_target();
                for row in &rows[stored.min(rows.len())..] {
                    replay::encode_row(row, &mut self.scratch);
                    let time = row.time.secs * 1_000_000 + row.time.usecs as u64;
                    let mut frame = Vec::new();
                    if spool.append(&target, 0, time, &self.scratch, &mut frame).is_ok() {
                        spooled += 1;
                    }
                }
                Counters::add_n(&self.counters.spooled, spooled);
                self.replay.rows_failed(Instant::now());
            }
        }
        drop(rows);
        self.rows.clear();
        let lost = lost - spooled;
        if lost > 0 {
            let reason = if spooled > 0 { DropReason::SpoolFull } else { reason };
            self.drop(host, reason, lost, &format_args!("{lost} rows not stored: {why}"));
        }
    }

    fn deliver(&mut self, batch: &[(TraceRecord<'_>, Outputs)], host: &mut dyn SenderHost) {
        self.scratch.clear();
        let mut packets: Vec<Packet> = Vec::new();
        let mut to_spool: Vec<(u32, u64, Bytes, u64)> = Vec::new();
        let now = Instant::now();
        let mut with_xheaders = Vec::new();
        for (i, (record, outputs)) in batch.iter().enumerate() {
            let is_sip = record.proto_type == hep::proto_type::SIP;
            let sends = !outputs.hep.is_empty() || !outputs.duplicate.is_empty();
            let xheaders = self.settings.xheaders_write && is_sip && sends;
            // Only SIP becomes a row; a log line goes to HEP alone.
            let fields =
                if (outputs.db || xheaders) && is_sip { Some(sip::extract(record.payload)) } else { None };
            let is_reply = match &fields {
                Some(Ok(f)) => f.is_reply(),
                _ => record.payload.starts_with(b"SIP/"),
            };
            let c = self.counters;
            if is_sip {
                Counters::add(if is_reply { &c.traced_replies } else { &c.traced_requests });
            }
            match &fields {
                Some(Ok(f)) if outputs.db => {
                    self.rows.push(record, f, outputs.table.as_deref().unwrap_or_default(), now)
                }
                Some(Err(e)) if outputs.db => {
                    self.drop(host, DropReason::Unparsable, 1, &format_args!("no database row: {e}"))
                }
                _ => {}
            }
            let ok_fields = fields.as_ref().and_then(|f| f.as_ref().ok());
            // What goes out: the record, or with the headers added a copy of it.
            let mut sent = *record;
            if xheaders {
                with_xheaders.clear();
                let added =
                    ok_fields.ok_or_else(|| "the message cannot be parsed".to_string()).and_then(|f| {
                        let x = XHeaders {
                            from: record.src,
                            to: record.dst,
                            time: record.time,
                            method: f.method(),
                            direction: record.direction,
                        };
                        xheaders::write(record.payload, &x, &mut with_xheaders).map_err(|e| e.0)
                    });
                if let Err(e) = added {
                    let n = (outputs.hep.len() + outputs.duplicate.len()) as u64;
                    self.drop(host, DropReason::Unparsable, n, &format_args!("no X-Siptrace headers: {e}"));
                    continue;
                }
                sent.payload = &with_xheaders;
            }
            if !outputs.hep.is_empty() {
                let start = self.scratch.len();
                match sent.encode_hep(ok_fields, &self.settings.hep, &mut self.scratch) {
                    Ok(()) => {
                        let range = start..self.scratch.len();
                        let b = Bytes::Encoded(range);
                        self.plan(&outputs.hep, Kind::Hep, record, b, now, &mut packets, &mut to_spool, host);
                    }
                    Err(e) => {
                        let reason = match e {
                            EncodeError::Oversize { .. } => DropReason::Oversize,
                            EncodeError::MixedFamily => DropReason::MixedFamily,
                            EncodeError::EmptyPayload => DropReason::Unparsable,
                        };
                        let n = outputs.hep.len() as u64;
                        self.drop(host, reason, n, &format_args!("HEP packet not sent: {e}"));
                    }
                }
            }
            if !outputs.duplicate.is_empty() {
                let copy = if xheaders {
                    let start = self.scratch.len();
                    self.scratch.extend_from_slice(&with_xheaders);
                    Bytes::Encoded(start..self.scratch.len())
                } else {
                    Bytes::Payload(i)
                };
                self.plan(
                    &outputs.duplicate,
                    Kind::Copy,
                    record,
                    copy,
                    now,
                    &mut packets,
                    &mut to_spool,
                    host,
                );
            }
        }
        let failed = self.send_packets(batch, &packets, host);
        let bytes = |b: &Bytes| -> &[u8] {
            match b {
                Bytes::Encoded(r) => &self.scratch[r.clone()],
                Bytes::Payload(i) => batch[*i].0.payload,
            }
        };
        let mut items: Vec<(u32, u64, &[u8], u64)> =
            to_spool.iter().map(|(route, key, b, time)| (*route, *key, bytes(b), *time)).collect();
        items.extend(failed.iter().map(|&i| {
            let (_, _, b, tag) = &packets[i];
            (tag.route, tag.key, bytes(b), 0)
        }));
        let items: Vec<(u32, u64, Vec<u8>, u64)> =
            items.into_iter().map(|(r, k, b, t)| (r, k, b.to_vec(), t)).collect();
        for (route, key, data, time) in items {
            self.spool_one(route, key, &data, time, host);
        }
    }

    /// Writes one output to the spool, for the target of `route`; counts it
    /// as spooled, or as dropped when it cannot be.
    fn spool_one(&mut self, route: u32, key: u64, data: &[u8], time: u64, host: &dyn SenderHost) {
        let Some(spool) = &mut self.spool else {
            self.drop(host, DropReason::NotConnected, 1, &"no destination is up");
            return;
        };
        let Some((target, _)) = self.routes.get(route as usize) else { return };
        let mut frame = std::mem::take(&mut self.replay.frame);
        let result = spool.append(target, key, time, data, &mut frame);
        self.replay.frame = frame;
        match result {
            Ok(()) => Counters::add(&self.counters.spooled),
            Err(spool::NotSpooled::Full) => {
                self.drop(host, DropReason::SpoolFull, 1, &"the spool is full and has nothing older to drop")
            }
            Err(spool::NotSpooled::Io(e)) => {
                self.drop(host, DropReason::SpoolFull, 1, &format_args!("cannot write to the spool: {e}"))
            }
        }
    }

    /// The route id of a target, for tagging what goes to it.
    fn route_of(&mut self, kind: spool::Kind, distribution: Distribution, dests: &[Destination]) -> u32 {
        if let Some(i) = self
            .routes
            .iter()
            .position(|(t, _)| t.kind == kind && t.distribution == distribution && t.dests == dests)
        {
            return i as u32;
        }
        let target = spool::Target { kind, distribution, dests: dests.to_vec() };
        let id = target.id();
        self.routes.push((target, id));
        (self.routes.len() - 1) as u32
    }

    /// Decides where one output of `record` goes, for destinations `list`:
    /// to the destinations that take it now, or to the spool, or nowhere.
    #[allow(clippy::too_many_arguments)]
    fn plan(
        &mut self,
        list: &[Destination],
        kind: Kind,
        record: &TraceRecord<'_>,
        bytes: Bytes,
        now: Instant,
        packets: &mut Vec<Packet>,
        to_spool: &mut Vec<(u32, u64, Bytes, u64)>,
        host: &dyn SenderHost,
    ) {
        let distribution = if kind == Kind::Copy || list.len() <= 1 {
            Distribution::Copy
        } else {
            self.settings.delivery.distribution
        };
        if self.spool.is_none() && distribution == Distribution::Copy {
            // Today's way: every destination gets it; its failures are counted.
            packets.extend(list.iter().map(|d| (*d, kind, bytes.clone(), Tag::default())));
            return;
        }
        let spool_kind = if kind == Kind::Hep { spool::Kind::Hep } else { spool::Kind::Copy };
        let time = record.time.secs * 1_000_000 + record.time.usecs as u64;
        // The call's key is read only when it matters: to shard, or when
        // the spool holds records of the target.
        let mut key: Option<(&[u8], u64)> = None;
        let mut key_of = || {
            *key.get_or_insert_with(|| {
                let k = cluster::call_key(record);
                (k, cluster::key_hash(k))
            })
        };
        match distribution {
            Distribution::Copy => {
                for d in list {
                    let route = self.route_of(spool_kind, Distribution::Copy, std::slice::from_ref(d));
                    let id = self.routes[route as usize].1;
                    let holds = self.spool.as_ref().is_some_and(|s| s.holds(id));
                    let held = holds && self.spool.as_ref().is_some_and(|s| s.holds_call(id, key_of().1));
                    if self.board.is_up(*d, now) && !held {
                        let hash = if holds { key_of().1 } else { 0 };
                        packets.push((*d, kind, bytes.clone(), Tag { key: hash, route, replay: false }));
                    } else {
                        to_spool.push((route, key_of().1, bytes.clone(), time));
                    }
                }
            }
            Distribution::Failover | Distribution::Shard => {
                let route = self.route_of(spool_kind, distribution, list);
                let id = self.routes[route as usize].1;
                let (call, hash) = key_of();
                if self.spool.as_ref().is_some_and(|s| s.holds(id) && s.holds_call(id, hash)) {
                    to_spool.push((route, hash, bytes, time));
                    return;
                }
                let ret = Duration::from_secs(self.settings.delivery.failover_return_s);
                let pick = if distribution == Distribution::Shard {
                    cluster::shard(call, list, &mut self.board, now)
                } else {
                    cluster::failover(list, &mut self.board, &mut self.failover, ret, now)
                };
                let tag = Tag { key: hash, route, replay: false };
                match pick {
                    Some(d) => packets.push((d, kind, bytes, tag)),
                    None if self.spool.is_some() => to_spool.push((route, hash, bytes, time)),
                    None => self.drop(host, DropReason::NotConnected, 1, &"no collector of the list is up"),
                }
            }
        }
    }

    /// Sends the packets; returns the indexes of those that failed and
    /// may go to the spool (the others that failed are counted as dropped).
    fn send_packets(
        &mut self,
        batch: &[(TraceRecord<'_>, Outputs)],
        packets: &[Packet],
        host: &mut dyn SenderHost,
    ) -> Vec<usize> {
        let bytes = |b: &Bytes| -> &[u8] {
            match b {
                Bytes::Encoded(r) => &self.scratch[r.clone()],
                Bytes::Payload(i) => batch[*i].0.payload,
            }
        };
        let datagrams: Vec<(usize, SocketAddr, &[u8], Kind)> = packets
            .iter()
            .enumerate()
            .filter(|(_, (d, _, _, _))| d.transport == Transport::Udp)
            .map(|(i, (d, k, b, _))| (i, d.addr, bytes(b), *k))
            .collect();
        let mut refused: Vec<(DropReason, String)> = Vec::new();
        let mut to_spool = Vec::new();
        let mut sent_to: Vec<Destination> = Vec::new();
        let mut went_down: Vec<Destination> = Vec::new();
        let spooling = self.spool.is_some();
        if !datagrams.is_empty() {
            let burst: Vec<(SocketAddr, &[u8])> = datagrams.iter().map(|(_, a, b, _)| (*a, *b)).collect();
            let result = self.udp.send_burst(&burst);
            let mut failed = vec![false; datagrams.len()];
            for (i, e) in &result.failed {
                failed[*i] = true;
                let (p, addr, b, _) = datagrams[*i];
                if e.raw_os_error() == Some(libc::ECONNREFUSED) {
                    went_down.push(packets[p].0);
                    if spooling {
                        to_spool.push(p);
                        continue;
                    }
                }
                let reason = if e.raw_os_error() == Some(libc::EMSGSIZE) {
                    DropReason::Oversize
                } else {
                    DropReason::SendFailed
                };
                refused.push((reason, format!("{} bytes to {addr}: {e}", b.len())));
            }
            for ((p, _, _, kind), failed) in datagrams.iter().zip(failed) {
                if !failed {
                    Counters::add(counter_of(self.counters, *kind));
                    sent_to.push(packets[*p].0);
                }
            }
        }
        let now = Instant::now();
        for (p, (dest, kind, b, tag)) in
            packets.iter().enumerate().filter(|(_, (d, ..))| d.transport != Transport::Udp)
        {
            let stream = match self.streams.get_mut(&(*dest, *kind)) {
                Some(s) => s,
                None => {
                    let tls = if dest.transport == Transport::Tls {
                        match host.tls_for(*dest) {
                            Some(t) => Some(t),
                            None => {
                                refused.push((
                                    DropReason::NotConnected,
                                    format!("no TLS settings for {}", dest.addr),
                                ));
                                continue;
                            }
                        }
                    } else {
                        None
                    };
                    self.streams.entry((*dest, *kind)).or_insert_with(|| {
                        Stream::new(*dest, tls, self.settings.stream_backlog).from_ip(self.settings.source_ip)
                    })
                }
            };
            let frame = match b {
                Bytes::Encoded(r) => &self.scratch[r.clone()],
                Bytes::Payload(i) => batch[*i].0.payload,
            };
            match stream.queue_tagged(frame, *tag, now) {
                Ok(()) => {}
                Err(_) if spooling => to_spool.push(p),
                Err(Refused::NotConnected) => refused
                    .push((DropReason::NotConnected, format!("collector {} is not connected", dest.addr))),
                Err(Refused::Backlog) => refused
                    .push((DropReason::QueueFull, format!("backlog to collector {} is full", dest.addr))),
            }
        }
        for d in went_down {
            if self.board.down(d, now) {
                host.connection(d, false, &"ICMP: port unreachable");
            }
        }
        sent_to.sort_by_key(|d| (d.addr, d.transport as u8));
        for chunk in sent_to.chunk_by(|a, b| a == b) {
            self.board.sent(chunk[0], chunk.len() as u64, now);
        }
        for (reason, detail) in refused {
            self.drop(host, reason, 1, &detail);
        }
        to_spool
    }

    /// Whether frames still wait for a collector that is up.
    pub fn streams_waiting(&self) -> bool {
        self.streams.values().any(|s| s.is_up() && s.has_pending())
    }

    fn poll_outputs(&mut self, host: &mut dyn SenderHost) {
        let now = Instant::now();
        for (to, n) in self.udp.take_bounced() {
            if let Some(addr) = to {
                let d = Destination { addr, transport: Transport::Udp };
                self.board.down(d, now);
            }
            let to = to.map_or_else(|| "a collector".to_string(), |a| a.to_string());
            let detail = format_args!("{n} datagrams to {to} came back undelivered (ICMP)");
            self.drop(host, DropReason::Unreachable, n, &detail);
        }
        let mut events = Vec::new();
        let mut salvaged: Vec<(u32, u64, Vec<u8>)> = Vec::new();
        let mut replay_broken = false;
        let spooling = self.spool.is_some();
        for ((dest, kind), stream) in self.streams.iter_mut() {
            let report = stream.poll(now);
            if report.sent > 0 {
                Counters::add_n(counter_of(self.counters, *kind), report.sent);
            }
            let mut lost = 0;
            if report.lost > 0 {
                for (frame, tag) in stream.take_failed() {
                    if tag.replay {
                        replay_broken = true;
                    } else if spooling {
                        salvaged.push((tag.route, tag.key, frame.to_vec()));
                    } else {
                        lost += 1;
                    }
                }
                stream.clear_failed();
            }
            events.push((*dest, report, lost));
        }
        for (dest, report, lost) in events {
            if lost > 0 {
                let detail = format_args!("{lost} frames lost on the connection to {}", dest.addr);
                self.drop(host, DropReason::SendFailed, lost, &detail);
            }
            if report.sent > 0 {
                self.board.sent(dest, report.sent, now);
            }
            if report.connected {
                self.board.up(dest, now);
            }
            if report.reconnected {
                Counters::add(&self.counters.reconnects);
                host.connection(dest, true, &"connected again");
            }
            if let Some(error) = &report.error {
                self.board.down(dest, now);
                host.connection(dest, false, error);
            }
        }
        for (route, key, frame) in salvaged {
            self.spool_one(route, key, &frame, 0, host);
        }
        if replay_broken {
            self.replay_broken();
        }
    }

    fn drop(&self, host: &dyn SenderHost, reason: DropReason, count: u64, detail: &dyn Display) {
        self.counters.drop_n(reason, count);
        host.dropped(reason, count, detail);
    }
}

fn counter_of(counters: &Counters, kind: Kind) -> &AtomicU64 {
    match kind {
        Kind::Hep => &counters.hep_sent,
        Kind::Copy => &counters.duplicates_sent,
    }
}

#[cfg(test)]
mod tests;
