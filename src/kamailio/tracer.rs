//! Delivers trace records from the process that saw the message: a row
//! through the DB API, a HEP packet or a plain SIP copy over UDP. Every
//! record that cannot be delivered is counted by reason and reported in a
//! rate-limited log line.

use crate::core::counters::{Counters, DropReason};
use crate::core::dest::Destination;
use crate::core::hep::{EncodeError, HepSettings};
use crate::core::ratelimit::LogLimiter;
use crate::core::record::{Outputs, Timestamp, TraceRecord};
use crate::core::sip::{SipError, SipFields};
use crate::core::udp::UdpSender;
use crate::kamailio::db::{DbConn, Row};
use crate::kamailio::{module, shared};
use std::cell::RefCell;
use std::fmt::Display;
use std::sync::atomic::AtomicU64;

/// Seconds between two log lines about the same kind of drop.
const LOG_INTERVAL_SECS: u64 = 10;

/// What one Kamailio process keeps for sending.
struct Worker {
    udp: UdpSender,
    packet: Vec<u8>,
    db: Option<DbConn>,
    limiters: [LogLimiter; DropReason::ALL.len()],
}

thread_local! {
    static WORKER: RefCell<Worker> = RefCell::new(Worker {
        udp: UdpSender::default(),
        packet: Vec::new(),
        db: None,
        limiters: [LogLimiter::new(LOG_INTERVAL_SECS); DropReason::ALL.len()],
    });
}

/// Gives this process its own database connection.
pub fn set_db(conn: DbConn) {
    WORKER.with(|w| w.borrow_mut().db = Some(conn));
}

/// Sends `record` to `outputs`; `fields` are what `sip::extract` read from
/// its payload. Returns whether every output took it.
pub fn deliver(
    record: &TraceRecord<'_>,
    fields: &Result<SipFields<'_>, SipError>,
    outputs: &Outputs,
) -> bool {
    let (Some(shared), Some(module)) = (shared::get(), module::get()) else {
        return false;
    };
    let counters = &shared.counters;
    let is_reply = match fields {
        Ok(f) => f.is_reply(),
        Err(_) => record.payload.starts_with(b"SIP/"),
    };
    Counters::add(if is_reply { &counters.traced_replies } else { &counters.traced_requests });

    with_worker(counters, DropReason::SendFailed, |worker| {
        worker.deliver(record, fields, outputs, &module.config.hep, counters)
    })
    .unwrap_or(false)
}

/// Counts and reports a record that was dropped before delivery.
pub fn drop_record(reason: DropReason, detail: impl Display) {
    if let Some(shared) = shared::get() {
        with_worker(&shared.counters, reason, |w| w.dropped(&shared.counters, reason, detail));
    }
}

/// Runs `f` on this process's worker. Only a re-entrant call could find it
/// busy; that record is dropped as `busy_reason` rather than deadlock.
fn with_worker<R>(
    counters: &Counters,
    busy_reason: DropReason,
    f: impl FnOnce(&mut Worker) -> R,
) -> Option<R> {
    WORKER.with(|cell| match cell.try_borrow_mut() {
        Ok(mut worker) => Some(f(&mut worker)),
        Err(_) => {
            counters.drop_one(busy_reason);
            None
        }
    })
}

impl Worker {
    fn deliver(
        &mut self,
        record: &TraceRecord<'_>,
        fields: &Result<SipFields<'_>, SipError>,
        outputs: &Outputs,
        hep: &HepSettings,
        counters: &Counters,
    ) -> bool {
        let mut delivered = true;
        if outputs.db {
            delivered &= match fields {
                Ok(f) => self.insert_row(record, f, counters),
                Err(e) => {
                    self.dropped(counters, DropReason::Unparsable, format_args!("no database row: {e}"));
                    false
                }
            };
        }
        if let Some(dest) = outputs.hep {
            let mut packet = std::mem::take(&mut self.packet);
            delivered &= match record.encode_hep(fields.as_ref().ok(), hep, &mut packet) {
                Ok(()) => self.send(&packet, dest, counters, &counters.hep_sent),
                Err(e) => {
                    let reason = match e {
                        EncodeError::MixedFamily => DropReason::MixedFamily,
                        EncodeError::Oversize { .. } => DropReason::Oversize,
                        EncodeError::EmptyPayload => DropReason::Unparsable,
                    };
                    self.dropped(counters, reason, format_args!("HEP packet not sent: {e}"));
                    false
                }
            };
            self.packet = packet;
        }
        if let Some(dest) = outputs.duplicate {
            delivered &= self.send(record.payload, dest, counters, &counters.duplicates_sent);
        }
        delivered
    }

    fn insert_row(&mut self, record: &TraceRecord<'_>, f: &SipFields<'_>, counters: &Counters) -> bool {
        let Some(db) = &self.db else {
            self.dropped(counters, DropReason::DbUnavailable, "this process has no database connection");
            return false;
        };
        let (fromip, toip) = (record.src.text(), record.dst.text());
        let row = Row {
            msg: record.payload,
            callid: f.call_id,
            method: f.method(),
            status: f.status(),
            fromip: fromip.as_bytes(),
            toip: toip.as_bytes(),
            time: record.time,
            direction: record.direction,
            fromtag: f.from_tag,
            traced_user: b"",
            totag: f.to_tag,
        };
        if db.insert(&row).is_err() {
            let call_id = String::from_utf8_lossy(f.call_id).into_owned();
            self.dropped(
                counters,
                DropReason::DbFailed,
                format_args!("row for Call-ID {call_id} not stored"),
            );
            return false;
        }
        Counters::add(&counters.db_rows);
        true
    }

    fn send(&mut self, datagram: &[u8], dest: Destination, counters: &Counters, sent: &AtomicU64) -> bool {
        match self.udp.send(dest.addr, datagram) {
            Ok(()) => {
                Counters::add(sent);
                true
            }
            Err(e) => {
                let reason = if e.raw_os_error() == Some(libc::EMSGSIZE) {
                    DropReason::Oversize
                } else {
                    DropReason::SendFailed
                };
                let detail = format_args!("{} bytes to {}: {e}", datagram.len(), dest.addr);
                self.dropped(counters, reason, detail);
                false
            }
        }
    }

    fn dropped(&mut self, counters: &Counters, reason: DropReason, detail: impl Display) {
        counters.drop_one(reason);
        if let Some(suppressed) = self.limiters[reason as usize].permit(Timestamp::now().secs) {
            let more = if suppressed > 0 {
                format!(" ({suppressed} more of this kind since the last report)")
            } else {
                String::new()
            };
            crate::log_warn!("trace dropped ({}): {detail}{more}", reason.name());
        }
    }
}
