//! `sip_trace_msg(vmsg, saddr, taddr, daddr, corrid)` (Kamailio 6.0's
//! siptrace, in the script and as `KSR.siptrace.sip_trace_msg`): sends
//! any text as a HEP SIP packet, with the source and target addresses the
//! script gives, to `daddr` or the `duplicate_uri` collectors. It stores
//! no row, and depends on neither `trace_on` nor `hep_mode_on`.

use crate::core::counters::DropReason;
use crate::core::endpoint::Endpoint;
use crate::core::record::{Direction, Outputs, Timestamp, TraceRecord};
use crate::kamailio::host::cmd::{Params, ScriptFunction};
use crate::kamailio::host::kemi::KemiFunction;
use crate::kamailio::host::msg::Msg;
use crate::kamailio::host::version::{self, Release};
use crate::kamailio::state::{self, State};
use crate::kamailio::tracer;
use smallvec::smallvec;
use std::ffi::CStr;
use std::os::raw::c_int;
use std::sync::atomic::{AtomicBool, Ordering};

/// The release that has the function.
const SINCE: Release = Release(6, 0);

fn not_here() -> String {
    format!("sip_trace_msg() needs Kamailio {SINCE} (this module is built for Kamailio {})", version::RUNNING)
}

/// Whether a parameter is a constant, without pseudo-variables.
fn is_constant(text: &str) -> bool {
    !text.contains('$')
}

/// Sends `vmsg` as a HEP SIP packet from `saddr` to `taddr`, to `daddr`
/// (or every `duplicate_uri` when it is empty), with correlation id
/// `corrid` when it is not empty. Returns 1 once queued.
pub fn sip_trace_msg(
    state: &State,
    vmsg: &[u8],
    saddr: &str,
    taddr: &str,
    daddr: &str,
    corrid: &str,
) -> c_int {
    if vmsg.is_empty() {
        crate::log_error!("sip_trace_msg(): the message is empty");
        return -1;
    }
    let (Some(src), Some(dst)) = (Endpoint::parse_pipport(saddr), Endpoint::parse_pipport(taddr)) else {
        tracer::drop_record(
            state,
            DropReason::Unparsable,
            format_args!("sip_trace_msg(): the addresses '{saddr}' and '{taddr}' must be proto:ip:port"),
        );
        return -1;
    };
    let targets = if daddr.is_empty() {
        state.duplicates.clone()
    } else {
        match state.destination(daddr) {
            Ok(dest) => smallvec![dest],
            Err(e) => {
                tracer::drop_record(state, DropReason::NoDestination, format_args!("sip_trace_msg(): {e}"));
                return -1;
            }
        }
    };
    if targets.is_empty() {
        tracer::drop_record(
            state,
            DropReason::NoDestination,
            "sip_trace_msg(): no daddr and no duplicate_uri",
        );
        return -1;
    }
    let record = TraceRecord {
        time: Timestamp::now(),
        direction: Direction::Out,
        // HEP's IP protocol chunk is the target's, as the C module sends it.
        src: Endpoint { transport: dst.transport, ..src },
        dst,
        payload: vmsg,
        correlation_id: (!corrid.is_empty()).then_some(corrid.as_bytes()),
        extra_correlation: None,
        proto_type: crate::core::hep::proto_type::SIP,
        traced_users: None,
    };
    if tracer::enqueue_as_given(state, &record, &Outputs { hep: targets, ..Outputs::default() }) {
        1
    } else {
        -1
    }
}

/// The script function.
pub struct SipTraceMsg;

impl ScriptFunction for SipTraceMsg {
    const NAME: &'static CStr = c"sip_trace_msg";

    fn check(index: usize, _count: usize, text: &str) -> Result<usize, String> {
        if !version::at_least(SINCE) {
            return Err(not_here());
        }
        match index {
            2 | 3 if is_constant(text) => {
                Endpoint::parse_pipport(text).ok_or_else(|| {
                    format!("sip_trace_msg(): bad address '{text}': expected proto:ip:port, such as udp:192.0.2.10:5060")
                })?;
            }
            4 if is_constant(text) && !text.is_empty() => {
                let state = state::get().ok_or("sip_trace_msg(): the module is not initialized")?;
                state
                    .resolve_at_startup(text)
                    .map_err(|e| format!("sip_trace_msg(): bad destination URI '{text}': {e}"))?;
            }
            _ => {}
        }
        Ok(0)
    }

    fn run(_msg: Msg<'_>, params: &Params<'_>) -> c_int {
        let Some(state) = state::get() else { return -1 };
        let mut values = Vec::with_capacity(5);
        for i in 1..=5 {
            let Some(bytes) = params.text(i) else {
                crate::log_error!("sip_trace_msg(): cannot evaluate parameter {i}");
                return -1;
            };
            values.push(if bytes == b"<null>" { Vec::new() } else { bytes });
        }
        let text = |i: usize| String::from_utf8_lossy(&values[i]).into_owned();
        sip_trace_msg(state, &values[0], &text(1), &text(2), &text(3), &text(4))
    }
}

/// `KSR.siptrace.sip_trace_msg(vmsg, saddr, taddr, daddr, corrid)`.
pub struct KemiSipTraceMsg;

impl KemiFunction for KemiSipTraceMsg {
    const NAME: &'static CStr = c"sip_trace_msg";

    fn run(_msg: Msg<'_>, args: &[Option<String>]) -> c_int {
        if !version::at_least(SINCE) {
            // A KEMI config is not checked at startup: said once per process.
            static SAID: AtomicBool = AtomicBool::new(false);
            if !SAID.swap(true, Ordering::Relaxed) {
                crate::log_error!("KSR.siptrace.{}", not_here());
            }
            return -1;
        }
        let arg = |i: usize| args.get(i).and_then(Option::as_deref).unwrap_or_default();
        state::get()
            .map_or(-1, |state| sip_trace_msg(state, arg(0).as_bytes(), arg(1), arg(2), arg(3), arg(4)))
    }
}
