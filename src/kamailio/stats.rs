//! The counters as Kamailio statistics of the group "siptrace", read with
//! `kamcmd stats.get_statistics siptrace:` or the counters RPCs.

use crate::core::counters::{Counters, DropReason};
use crate::kamailio::{shared, sys};
use std::ffi::CStr;
use std::os::raw::c_char;
use std::sync::atomic::Ordering;

type Reader = fn(&Counters) -> u64;

const STATS: [(&CStr, Reader); 13] = [
    (c"traced_requests", |c| c.traced_requests.load(Ordering::Relaxed)),
    (c"traced_replies", |c| c.traced_replies.load(Ordering::Relaxed)),
    (c"hep_sent", |c| c.hep_sent.load(Ordering::Relaxed)),
    (c"duplicates_sent", |c| c.duplicates_sent.load(Ordering::Relaxed)),
    (c"db_rows", |c| c.db_rows.load(Ordering::Relaxed)),
    (c"dropped", |c| c.dropped_total()),
    (c"dropped_oversize", |c| c.dropped(DropReason::Oversize)),
    (c"dropped_mixed_family", |c| c.dropped(DropReason::MixedFamily)),
    (c"dropped_send_failed", |c| c.dropped(DropReason::SendFailed)),
    (c"dropped_no_destination", |c| c.dropped(DropReason::NoDestination)),
    (c"dropped_unparsable", |c| c.dropped(DropReason::Unparsable)),
    (c"dropped_db_failed", |c| c.dropped(DropReason::DbFailed)),
    (c"dropped_db_unavailable", |c| c.dropped(DropReason::DbUnavailable)),
];

/// Kamailio reads a function statistic through a function without
/// arguments, so each statistic gets its own instance.
unsafe extern "C" fn read<const I: usize>() -> sys::counter_val_t {
    crate::kamailio::guard::guard("statistics", 0, || {
        shared::get().map_or(0, |s| STATS[I].1(&s.counters) as sys::counter_val_t)
    })
}

const READERS: [unsafe extern "C" fn() -> sys::counter_val_t; 13] = [
    read::<0>, read::<1>, read::<2>, read::<3>, read::<4>, read::<5>, read::<6>, read::<7>, read::<8>,
    read::<9>, read::<10>, read::<11>, read::<12>,
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
