//! The tracer's statistics, `traced_requests` and `traced_replies`, read
//! from the counters the senders keep.

use crate::opensips::host::stats::Stat;
use crate::opensips::state;
use std::ffi::CStr;
use std::sync::atomic::Ordering;

pub struct TracedRequests;

impl Stat for TracedRequests {
    const NAME: &'static CStr = c"traced_requests";
    fn read() -> u64 {
        state::get().map_or(0, |s| s.shared.counters.traced_requests.load(Ordering::Relaxed))
    }
}

pub struct TracedReplies;

impl Stat for TracedReplies {
    const NAME: &'static CStr = c"traced_replies";
    fn read() -> u64 {
        state::get().map_or(0, |s| s.shared.counters.traced_replies.load(Ordering::Relaxed))
    }
}
