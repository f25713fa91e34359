//! Delivers trace records from the process that saw the message: a row
//! through the DB API, a HEP packet or a plain SIP copy over UDP. Every
//! record that cannot be delivered is counted by reason and reported in a
//! log line limited to one per reason and interval across all processes.

use crate::core::counters::{Counters, DropReason};
use crate::core::dest::Destination;
use crate::core::hep::{EncodeError, HepSettings};
use crate::core::record::{Outputs, Timestamp, TraceRecord};
use crate::core::sip::{SipError, SipFields};
use crate::core::udp::UdpSender;
use crate::kamailio::db::{DbConn, Row};
use crate::kamailio::shared::Shared;
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
}

thread_local! {
    static WORKER: RefCell<Worker> =
        const { RefCell::new(Worker { udp: UdpSender::new(), packet: Vec::new(), db: None }) };
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

    WORKER.with(|cell| match cell.try_borrow_mut() {
        Ok(mut worker) => worker.deliver(record, fields, outputs, &module.config.hep, shared),
        Err(_) => {
            // Only a re-entrant call could find the worker busy; drop the
            // record rather than deadlock.
            report_drop(shared, DropReason::SendFailed, "re-entrant trace call");
            false
        }
    })
}

/// Counts and reports a record that was dropped before delivery.
pub fn drop_record(reason: DropReason, detail: impl Display) {
    if let Some(shared) = shared::get() {
        report_drop(shared, reason, detail);
    }
}

fn report_drop(shared: &Shared, reason: DropReason, detail: impl Display) {
    shared.counters.drop_one(reason);
    let limiter = &shared.drop_log[reason as usize];
    if let Some(suppressed) = limiter.permit(Timestamp::now().secs, LOG_INTERVAL_SECS) {
        let more = if suppressed > 0 {
            format!(" ({suppressed} more of this kind since the last report)")
        } else {
            String::new()
        };
        crate::log_warn!("trace dropped ({}): {detail}{more}", reason.name());
    }
}

impl Worker {
    fn deliver(
        &mut self,
        record: &TraceRecord<'_>,
        fields: &Result<SipFields<'_>, SipError>,
        outputs: &Outputs,
        hep: &HepSettings,
        shared: &Shared,
    ) -> bool {
        let counters = &shared.counters;
        let mut delivered = true;
        if outputs.db {
            delivered &= match fields {
                Ok(f) => self.insert_row(record, f, shared),
                Err(e) => {
                    report_drop(shared, DropReason::Unparsable, format_args!("no database row: {e}"));
                    false
                }
            };
        }
        if let Some(dest) = outputs.hep {
            let mut packet = std::mem::take(&mut self.packet);
            delivered &= match record.encode_hep(fields.as_ref().ok(), hep, &mut packet) {
                Ok(()) => self.send(&packet, dest, shared, &counters.hep_sent),
                Err(e) => {
                    let reason = match e {
                        EncodeError::Oversize { .. } => DropReason::Oversize,
                        EncodeError::MixedFamily => DropReason::MixedFamily,
                        EncodeError::EmptyPayload => DropReason::Unparsable,
                    };
                    report_drop(shared, reason, format_args!("HEP packet not sent: {e}"));
                    false
                }
            };
            self.packet = packet;
        }
        if let Some(dest) = outputs.duplicate {
            delivered &= self.send(record.payload, dest, shared, &counters.duplicates_sent);
        }
        delivered
    }

    fn insert_row(&mut self, record: &TraceRecord<'_>, f: &SipFields<'_>, shared: &Shared) -> bool {
        let Some(db) = &self.db else {
            report_drop(shared, DropReason::DbUnavailable, "this process has no database connection");
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
        if let Err(e) = db.insert(&row) {
            let call_id = String::from_utf8_lossy(f.call_id);
            report_drop(
                shared,
                DropReason::DbFailed,
                format_args!("row for Call-ID {call_id} not stored: {e}"),
            );
            return false;
        }
        Counters::add(&shared.counters.db_rows);
        true
    }

    fn send(&mut self, datagram: &[u8], dest: Destination, shared: &Shared, sent: &AtomicU64) -> bool {
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
                report_drop(shared, reason, format_args!("{} bytes to {}: {e}", datagram.len(), dest.addr));
                false
            }
        }
    }
}
