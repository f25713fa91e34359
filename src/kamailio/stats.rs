//! The counters, as Kamailio statistics of the group "siptrace" (read
//! with `kamcmd stats.get_statistics siptrace:`) and through the RPC
//! command `siptrace.stats`.

use crate::core::counters::{Counters, DropReason};
use crate::core::ring::Ring;
use crate::kamailio::{module, shared, sys};
use std::ffi::CStr;
use std::os::raw::c_char;
use std::sync::atomic::{AtomicU64, Ordering};

type Reader = fn() -> u64;

fn load(counter: fn(&Counters) -> &AtomicU64) -> u64 {
    shared::get().map_or(0, |s| counter(&s.counters).load(Ordering::Relaxed))
}

fn dropped(reason: DropReason) -> u64 {
    shared::get().map_or(0, |s| s.counters.dropped(reason))
}

/// Every statistic, with how to read it.
pub const STATS: [(&CStr, Reader); 25] = [
    (c"enqueued", || load(|c| &c.enqueued)),
    (c"dequeued", || load(|c| &c.dequeued)),
    (c"queue_records", || load(|c| &c.enqueued).saturating_sub(load(|c| &c.dequeued))),
    (c"queue_bytes", || module::get().map_or(0, |m| m.queues.iter().map(Ring::depth).sum())),
    (c"traced_requests", || load(|c| &c.traced_requests)),
    (c"traced_replies", || load(|c| &c.traced_replies)),
    (c"hep_sent", || load(|c| &c.hep_sent)),
    (c"duplicates_sent", || load(|c| &c.duplicates_sent)),
    (c"db_rows", || load(|c| &c.db_rows)),
    (c"db_batches", || load(|c| &c.db_batches)),
    (c"reconnects", || load(|c| &c.reconnects)),
    (c"sender_restarts", || load(|c| &c.sender_restarts)),
    // Wrapping: a block freed twice would show as a negative number.
    (c"traced_contexts", || load(|c| &c.contexts_made).wrapping_sub(load(|c| &c.contexts_freed))),
    (c"dropped", || shared::get().map_or(0, |s| s.counters.dropped_total())),
    (c"dropped_oversize", || dropped(DropReason::Oversize)),
    (c"dropped_mixed_family", || dropped(DropReason::MixedFamily)),
    (c"dropped_send_failed", || dropped(DropReason::SendFailed)),
    (c"dropped_no_destination", || dropped(DropReason::NoDestination)),
    (c"dropped_unparsable", || dropped(DropReason::Unparsable)),
    (c"dropped_db_failed", || dropped(DropReason::DbFailed)),
    (c"dropped_db_unavailable", || dropped(DropReason::DbUnavailable)),
    (c"dropped_queue_full", || dropped(DropReason::QueueFull)),
    (c"dropped_not_connected", || dropped(DropReason::NotConnected)),
    (c"dropped_sender_died", || dropped(DropReason::SenderDied)),
    (c"dropped_unreachable", || dropped(DropReason::Unreachable)),
];

/// Kamailio reads a function statistic through a function without
/// arguments, so each statistic gets its own instance.
unsafe extern "C" fn read<const I: usize>() -> sys::counter_val_t {
    crate::ffi::guard::guard("statistics", 0, || STATS[I].1() as sys::counter_val_t)
}

#[rustfmt::skip]
const READERS: [unsafe extern "C" fn() -> sys::counter_val_t; STATS.len()] = [
    read::<0>, read::<1>, read::<2>, read::<3>, read::<4>, read::<5>, read::<6>, read::<7>, read::<8>,
    read::<9>, read::<10>, read::<11>, read::<12>, read::<13>, read::<14>, read::<15>, read::<16>,
    read::<17>, read::<18>, read::<19>, read::<20>, read::<21>, read::<22>, read::<23>,
    read::<24>,
];

pub fn register() -> Result<(), String> {
    for ((name, _), reader) in STATS.iter().zip(READERS) {
        // SAFETY: names are static C strings; for STAT_IS_FUNC Kamailio
        // takes the reader function in place of the stat_var pointer.
        let rc = unsafe {
            sys::register_stat(
                c"siptrace".as_ptr() as *mut c_char,
                name.as_ptr() as *mut c_char,
                reader as *mut *mut sys::stat_var,
                (sys::STAT_IS_FUNC | sys::STAT_NO_RESET) as i32,
            )
        };
        if rc != 0 {
            return Err(format!("cannot register statistic {}", name.to_string_lossy()));
        }
    }
    Ok(())
}
