//! RPC commands, for kamcmd and every other RPC transport. The table is in
//! `exports`.

use crate::kamailio::host::rpc::{self, RpcCommand, RpcCtx, RpcDoc};
use crate::kamailio::state;
use crate::kamailio::stats;
use std::ffi::{CStr, CString};
use std::sync::atomic::Ordering;

/// `siptrace.status on|off|check`: switch tracing for all processes, or
/// report whether it is on.
pub struct Status;

pub static STATUS_DOC: RpcDoc =
    rpc::doc(c"Turn tracing on or off for all processes, or check it: on, off or check.");

impl RpcCommand for Status {
    const NAME: &'static CStr = c"siptrace.status";

    fn run(ctx: &RpcCtx<'_>) {
        let Some(state) = state::get().filter(|_| ctx.can_scan()) else {
            ctx.fault(500, c"Internal error");
            return;
        };
        let Some(arg) = ctx.scan_str() else {
            ctx.fault(500, c"Not enough parameters (on, off or check)");
            return;
        };
        let on = &state.shared.trace_on;
        if arg.eq_ignore_ascii_case(b"on") {
            on.store(true, Ordering::Relaxed);
            ctx.reply(c"Enabled");
        } else if arg.eq_ignore_ascii_case(b"off") {
            on.store(false, Ordering::Relaxed);
            ctx.reply(c"Disabled");
        } else if arg.eq_ignore_ascii_case(b"check") {
            ctx.reply(if on.load(Ordering::Relaxed) { c"Enabled" } else { c"Disabled" });
        } else {
            ctx.fault(500, c"Bad parameter (on, off or check)");
        }
    }
}

/// `siptrace.stats`: every counter, the queue depth, drops by reason.
pub struct Stats;

pub static STATS_DOC: RpcDoc = rpc::doc(
    c"Trace counters: queued, sent and stored records, queue depth, reconnections, drops by reason, \
       the spool, and each destination: up, records sent, times down, last change.",
);

impl RpcCommand for Stats {
    const NAME: &'static CStr = c"siptrace.stats";

    fn run(ctx: &RpcCtx<'_>) {
        let Some(reply) = ctx.add_struct() else { return };
        let state = state::get();
        for (name, read) in stats::STATS {
            reply.add_u64(name, state.map_or(0, read));
        }
        // Each destination: its address, and whether it is up, records
        // sent, times it went down, the Unix time of its last change.
        let Some(state) = state else { return };
        for (i, slot) in state.shared.counters.destinations.iter().enumerate() {
            let Some(dest) = slot.destination() else { break };
            let addr = format!("{}:{}", dest.transport.name(), dest.addr);
            let Ok(key) = CString::new(format!("dest{i}")) else { continue };
            reply.add_str(&key, addr.as_bytes());
            for (field, (suffix, _)) in stats::DEST_FIELDS.iter().enumerate() {
                let Ok(key) = CString::new(format!("dest{i}_{}", suffix.to_string_lossy())) else { continue };
                reply.add_u64(&key, stats::dest_field(state, i, field));
            }
        }
    }
}
