//! `trace(trace_id, [scope], [type], [trace_attrs], [flags], [correlation_id])`,
//! the script function of OpenSIPS's tracer. The message and transaction
//! scopes are implemented; the others are refused at startup.

use crate::core::counters::DropReason;
use crate::ffi::guard::guard;
use crate::opensips::module::Module;
use crate::opensips::tracer::{self, Trace};
use crate::opensips::{b2b, dialog, dynamic, module, sys, trace_api, transaction};
use std::os::raw::{c_int, c_void};

pub const CMD_COUNT: usize = 1;

/// The scope letters as the value the fixup makes of them (for MI).
pub fn scope_value(text: &[u8]) -> Option<usize> {
    let mut scope = None;
    for &c in text.iter().filter(|c| !c.is_ascii_whitespace()) {
        let this = match c.to_ascii_lowercase() {
            b'm' => Scope::Message,
            b't' => Scope::Transaction,
            b'd' => Scope::Dialog,
            _ => return None,
        };
        scope = scope.max(Some(this));
    }
    scope.map(|s| s as usize)
}

const fn param(flags: u32, fixup: sys::fixup_function) -> sys::cmd_param {
    sys::cmd_param { flags: flags as c_int, fixup, free_fixup: None }
}

pub const fn cmd_exports() -> [sys::cmd_export_t; CMD_COUNT + 1] {
    let none = param(0, None);
    let str_opt = sys::CMD_PARAM_STR | sys::CMD_PARAM_OPT;
    let mut params = [none; 9];
    params[0] = param(sys::CMD_PARAM_STR, Some(fixup_trace_id));
    params[1] = param(str_opt, Some(fixup_scope));
    params[2] = param(str_opt, Some(fixup_types));
    params[3] = param(str_opt, None);
    params[4] = param(str_opt, Some(fixup_legs));
    params[5] = param(str_opt, None);
    let trace = sys::cmd_export_t {
        name: c"trace".as_ptr(),
        function: Some(w_trace),
        params,
        flags: (sys::REQUEST_ROUTE | sys::FAILURE_ROUTE | sys::ONREPLY_ROUTE | sys::BRANCH_ROUTE) as c_int,
    };
    let end = sys::cmd_export_t { name: std::ptr::null(), function: None, params: [none; 9], flags: 0 };
    [trace, end]
}

/// The text of a str parameter as OpenSIPS hands it to a fixup.
///
/// # Safety
/// `param` must point at the `str*` OpenSIPS passes.
unsafe fn fixup_text<'a>(param: *mut *mut c_void) -> Option<&'a [u8]> {
    // SAFETY: per the contract; the str stays valid during the fixup.
    unsafe { tracer::str_at(*param as *const sys::str_) }
}

/// Turns the trace id name into its index (plus one, as 0 is no value).
unsafe extern "C" fn fixup_trace_id(param: *mut *mut c_void) -> c_int {
    guard("trace() fixup", -1, || {
        // SAFETY: OpenSIPS passes the parameter's str.
        let Some(name) = (unsafe { fixup_text(param) }) else { return -1 };
        let name = String::from_utf8_lossy(name);
        match module::get().and_then(|m| m.id_index(&name)) {
            Some(i) => {
                // SAFETY: replacing the parameter with a value the function reads back.
                unsafe { *param = (i + 1) as *mut c_void };
                0
            }
            None => {
                crate::log_error!("trace(): no trace_id is called '{name}'");
                -1
            }
        }
    })
}

/// The scope letters: `m` (the message), `t` (its transaction), `d` (its
/// dialog) and `b` (the B2B session b2b_logic makes of it). The parameter
/// becomes the scope.
unsafe extern "C" fn fixup_scope(param: *mut *mut c_void) -> c_int {
    guard("trace() fixup", -1, || {
        // SAFETY: OpenSIPS passes the parameter's str.
        let Some(text) = (unsafe { fixup_text(param) }) else { return -1 };
        let mut scope = None;
        for &c in text.iter().filter(|c| !c.is_ascii_whitespace()) {
            // The widest scope given wins, as in OpenSIPS's tracer.
            let this = match c.to_ascii_lowercase() {
                b'm' => Scope::Message,
                b't' if transaction::tm_loaded() => Scope::Transaction,
                b't' => {
                    crate::log_error!("trace(): scope 't' needs the tm module loaded");
                    return -1;
                }
                b'd' if dialog::loaded() => Scope::Dialog,
                b'd' => {
                    crate::log_error!("trace(): scope 'd' needs the dialog module loaded");
                    return -1;
                }
                b'b' if b2b::loaded() => Scope::B2b,
                b'b' => {
                    crate::log_error!("trace(): scope 'b' needs the b2b_logic module loaded");
                    return -1;
                }
                _ => {
                    crate::log_error!("trace(): unknown scope '{}'", String::from_utf8_lossy(text));
                    return -1;
                }
            };
            scope = scope.max(Some(this));
        }
        let Some(scope) = scope else {
            crate::log_error!("trace(): the scope is empty");
            return -1;
        };
        // SAFETY: replacing the parameter with a value the function reads back.
        unsafe { *param = scope as usize as *mut c_void };
        0
    })
}

/// Starts tracing `msg` in `scope` (0: none given, else a `Scope`), as
/// trace() does: for trace() itself and for dynamic trace ids.
pub fn start(module: &Module, msg: &mut sys::sip_msg, trace: Trace<'_>, scope: usize) -> c_int {
    trace_api::enter(msg.id, trace.id, trace.types);
    let request = msg.first_line.type_ == sys::SIP_REQUEST as _;
    // Without a scope: the dialog's for an initial INVITE when the dialog
    // module is there, else the transaction's when tm is. A scope the
    // message cannot have falls back: the dialog's to the transaction's for
    // all but an initial INVITE, the transaction's to the message's for a
    // reply. As in OpenSIPS's tracer. Parsed only when the scope depends on it.
    let initial_invite = || request && is_initial_invite(msg);
    let scope = match scope {
        0 if dialog::loaded() && initial_invite() => Scope::Dialog,
        0 if transaction::tm_loaded() => Scope::Transaction,
        3 if initial_invite() => Scope::Dialog,
        2 | 3 => Scope::Transaction,
        // b2b_logic's entities trace what the session receives and sends,
        // this request included; nothing is traced here.
        4 => return if b2b::start(msg, trace) { 1 } else { -1 },
        _ => Scope::Message,
    };
    let started = match scope {
        Scope::Dialog => dialog::start(msg, trace),
        Scope::Transaction if request => transaction::start(msg, trace),
        _ => true,
    };
    if !started {
        tracer::report(module, DropReason::NoDestination, "trace(): tm or dialog refused the callbacks");
        return -1;
    }
    if trace.types & trace_api::SIP_BIT == 0 || tracer::incoming(module, trace, msg, false) {
        1
    } else {
        -1
    }
}

/// Registers the check of each request against the dynamic trace ids.
pub fn init_dynamic() -> Result<(), String> {
    let kinds = (sys::PRE_SCRIPT_CB | sys::REQ_TYPE_CB) as c_int;
    // SAFETY: registering a script callback before forking.
    if unsafe { sys::__register_script_cb(Some(match_dynamic), kinds, std::ptr::null_mut(), 0) } < 0 {
        return Err("cannot register the script callback".into());
    }
    Ok(())
}

/// Traces a request that the filters of a started dynamic trace id match.
unsafe extern "C" fn match_dynamic(msg: *mut sys::sip_msg, _param: *mut c_void) -> c_int {
    guard("dynamic tracing", sys::SCB_RUN_ALL as c_int, || {
        let Some(module) = module::get() else { return sys::SCB_RUN_ALL as c_int };
        // What trace() kept for b2b_logic belongs to the previous request.
        b2b::forget_current();
        if !module.dynamic.any_active() {
            return sys::SCB_RUN_ALL as c_int;
        }
        // SAFETY: the request being processed.
        let Some(msg) = (unsafe { msg.as_mut() }) else { return sys::SCB_RUN_ALL as c_int };
        // SAFETY: the request's buffer.
        let bytes = unsafe { tracer::buffer(msg) }.to_vec();
        let source = tracer::ip_of(&msg.rcv.src_ip);
        let initial_invite = is_initial_invite(msg);
        for (slot, entry) in module.dynamic.snapshot() {
            if entry.scope == Scope::Dialog as usize && !initial_invite {
                continue;
            }
            if entry.filters().iter().all(|f| filter_matches(f, &bytes, source)) {
                let trace =
                    Trace { id: module.ids.len() + slot, types: entry.types, correlation: None, attrs: None };
                start(module, msg, trace, entry.scope);
            }
        }
        sys::SCB_RUN_ALL as c_int
    })
}

fn filter_matches(filter: &dynamic::Filter, msg: &[u8], source: Option<std::net::IpAddr>) -> bool {
    use dynamic::FilterKind;
    let uri = match filter.kind {
        FilterKind::Ip => {
            let want = std::str::from_utf8(filter.text()).ok().and_then(|t| t.parse().ok());
            return want.is_some() && want == source;
        }
        FilterKind::Caller => crate::core::sip::header_uri(msg, b"From", b"f"),
        FilterKind::Callee => crate::core::sip::request_uri(msg),
    };
    let Some(uri) = uri else { return false };
    let (user, host) = crate::core::sip::uri_user_host(uri);
    crate::core::sip::user_host_matches(filter.text(), user, host)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(usize)]
enum Scope {
    Message = 1,
    Transaction = 2,
    Dialog = 3,
    B2b = 4,
}

/// The kinds of records to trace (`sip|xlog|rest`, see `trace_api`); the
/// parameter becomes their mask.
unsafe extern "C" fn fixup_types(param: *mut *mut c_void) -> c_int {
    guard("trace() fixup", -1, || {
        // SAFETY: OpenSIPS passes the parameter's str.
        let Some(types) = (unsafe { fixup_text(param) }) else { return -1 };
        match trace_api::mask_of(types) {
            Ok(mask) => {
                // SAFETY: replacing the parameter with a value the function reads back.
                unsafe { *param = mask as usize as *mut c_void };
                0
            }
            Err(e) => {
                crate::log_error!("trace(): {e}");
                -1
            }
        }
    })
}

/// Checks the C/c flags; in the message scope there is only one leg.
unsafe extern "C" fn fixup_legs(param: *mut *mut c_void) -> c_int {
    guard("trace() fixup", -1, || {
        // SAFETY: OpenSIPS passes the parameter's str.
        let Some(flags) = (unsafe { fixup_text(param) }) else { return -1 };
        if let Some(bad) = flags.iter().find(|&&c| c != b'C' && c != b'c') {
            crate::log_error!("trace(): unknown flag '{}' (C and c are known)", *bad as char);
            return -1;
        }
        0
    })
}

/// The string of an optional str parameter, as the function gets it.
///
/// # Safety
/// `p` must be null or point at a live `str`.
unsafe fn str_param<'a>(p: *mut c_void) -> Option<&'a [u8]> {
    // SAFETY: per the contract.
    unsafe { tracer::str_at(p as *const sys::str_) }
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn w_trace(
    msg: *mut sys::sip_msg,
    id: *mut c_void,
    scope: *mut c_void,
    types: *mut c_void,
    attrs: *mut c_void,
    _legs: *mut c_void,
    correlation: *mut c_void,
    _p7: *mut c_void,
    _p8: *mut c_void,
) -> c_int {
    guard("trace()", -1, || {
        let Some(module) = module::get() else { return -1 };
        // SAFETY: OpenSIPS passes the message being processed.
        let Some(msg) = (unsafe { msg.as_mut() }) else { return -1 };
        let Some(id) = (id as usize).checked_sub(1).filter(|&i| i < module.ids.len()) else { return -1 };
        // SAFETY: an optional str parameter.
        let types = match types as usize as u32 {
            0 => trace_api::SIP_BIT,
            mask => mask,
        };
        // SAFETY: optional str parameters.
        let (correlation, attrs) = unsafe { (str_param(correlation), str_param(attrs)) };
        start(module, msg, Trace { id, types, correlation, attrs }, scope as usize)
    })
}

/// An INVITE without a To tag.
fn is_initial_invite(msg: &sys::sip_msg) -> bool {
    // SAFETY: the message's buffer.
    let bytes = unsafe { tracer::buffer(msg) };
    let Ok(fields) = crate::core::sip::extract(bytes) else { return false };
    fields.method() == b"INVITE" && fields.to_tag.is_empty()
}
