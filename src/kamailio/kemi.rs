//! The KEMI functions: the script functions for configs written in Lua,
//! Python and the other KEMI languages, as `KSR.siptrace.*`, with the C
//! module's names and parameters. The table is in `exports`.

use crate::core::counters::DropReason;
use crate::core::record::Scope;
use crate::kamailio::host::kemi::KemiFunction;
use crate::kamailio::host::msg::Msg;
use crate::kamailio::script;
use crate::kamailio::state::{self, State};
use crate::kamailio::tracer;
use std::ffi::CStr;
use std::os::raw::c_int;

/// Argument `i`, empty when missing or null.
fn arg(args: &[Option<String>], i: usize) -> &str {
    args.get(i).and_then(Option::as_deref).unwrap_or_default()
}

/// The scope a mode string asks for, if it is one the module implements;
/// otherwise a counted drop, as for the native functions' runtime values.
fn scope(state: &State, function: &str, text: &str) -> Option<Scope> {
    match script::supported_scope(text) {
        Ok(scope) => Some(scope),
        Err(e) => {
            tracer::drop_record(state, DropReason::NoDestination, format_args!("{function}('{text}'): {e}"));
            None
        }
    }
}

/// Runs `f` with the state, -1 before mod_init.
fn with_state(f: impl FnOnce(&State) -> c_int) -> c_int {
    state::get().map_or(-1, f)
}

pub struct SipTrace;

impl KemiFunction for SipTrace {
    const NAME: &'static CStr = c"sip_trace";

    fn run(msg: Msg<'_>, _args: &[Option<String>]) -> c_int {
        with_state(|state| script::trace_call(state, msg, None, None, None))
    }
}

pub struct SipTraceDst;

impl KemiFunction for SipTraceDst {
    const NAME: &'static CStr = c"sip_trace_dst";

    fn run(msg: Msg<'_>, args: &[Option<String>]) -> c_int {
        with_state(|state| script::trace_call(state, msg, Some(arg(args, 0)), None, None))
    }
}

pub struct SipTraceDstCid;

impl KemiFunction for SipTraceDstCid {
    const NAME: &'static CStr = c"sip_trace_dst_cid";

    fn run(msg: Msg<'_>, args: &[Option<String>]) -> c_int {
        let cid = args.get(1).and_then(Option::as_deref);
        with_state(|state| script::trace_call(state, msg, Some(arg(args, 0)), cid, None))
    }
}

pub struct SipTraceDstCidType;

impl KemiFunction for SipTraceDstCidType {
    const NAME: &'static CStr = c"sip_trace_dst_cid_type";

    fn run(msg: Msg<'_>, args: &[Option<String>]) -> c_int {
        with_state(|state| {
            let Some(scope) = scope(state, "sip_trace_dst_cid_type", arg(args, 2)) else { return -1 };
            let cid = args.get(1).and_then(Option::as_deref);
            script::trace_call(state, msg, Some(arg(args, 0)), cid, Some(scope))
        })
    }
}

pub struct SipTraceMode;

impl KemiFunction for SipTraceMode {
    const NAME: &'static CStr = c"sip_trace_mode";

    fn run(msg: Msg<'_>, args: &[Option<String>]) -> c_int {
        with_state(|state| match scope(state, "sip_trace_mode", arg(args, 0)) {
            Some(scope) => script::trace_call(state, msg, None, None, Some(scope)),
            None => -1,
        })
    }
}

pub struct SipTraceTypes;

impl KemiFunction for SipTraceTypes {
    const NAME: &'static CStr = c"sip_trace_types";

    fn run(msg: Msg<'_>, args: &[Option<String>]) -> c_int {
        script::trace_types(msg, arg(args, 0))
    }
}

pub struct Hlog;

impl KemiFunction for Hlog {
    const NAME: &'static CStr = c"hlog";

    fn run(msg: Msg<'_>, args: &[Option<String>]) -> c_int {
        with_state(|state| script::hlog(state, msg, None, arg(args, 0)))
    }
}

pub struct HlogCid;

impl KemiFunction for HlogCid {
    const NAME: &'static CStr = c"hlog_cid";

    fn run(msg: Msg<'_>, args: &[Option<String>]) -> c_int {
        with_state(|state| script::hlog(state, msg, Some(arg(args, 0)), arg(args, 1)))
    }
}
