//! The script functions: `sip_trace([uri[, correlation_id[, mode]]])`,
//! `sip_trace_mode(mode)` and `hlog(...)`, with their fixups.
//!

use crate::core::counters::DropReason;
use crate::core::endpoint::{Endpoint, Transport};
use crate::core::event::TraceTypes;
use crate::core::record::{Direction, Outputs, Scope, Timestamp, TraceRecord};
use crate::ffi::guard::guard;
use crate::kamailio::tracer::ScriptTarget;
use crate::kamailio::transaction::{self, Start};
use crate::kamailio::users::{self, Users};
use crate::kamailio::{call_context, connections, module, net, rest, sys, tracer};
use std::ffi::{c_void, CStr};
use std::os::raw::{c_char, c_int};

/// The trace scope a script call asks for, if this module has it.
pub(crate) fn supported_scope(text: &str) -> Result<Scope, String> {
    Scope::parse(text)
}

/// Whether a fixup parameter is a constant, without pseudo-variables.
fn is_constant(text: &str) -> bool {
    !text.contains('$')
}

/// The text Kamailio hands a fixup for parameter `*param`.
///
/// # Safety
/// `param` must point at a NUL-terminated string, as before any fixup.
unsafe fn fixup_text(param: *mut *mut c_void) -> String {
    // SAFETY: per the contract.
    unsafe { CStr::from_ptr(*param as *const c_char) }.to_string_lossy().into_owned()
}

unsafe extern "C" fn fixup_sip_trace(param: *mut *mut c_void, param_no: c_int) -> c_int {
    guard("sip_trace() fixup", -1, || {
        // SAFETY: before its fixup, a parameter is the config's string.
        let text = unsafe { fixup_text(param) };
        match param_no {
            1 if is_constant(&text) => {
                if let Err(e) = module::resolve_at_startup(&text) {
                    crate::log_error!("sip_trace(): bad destination URI '{text}': {e}");
                    return -1;
                }
            }
            3 => {
                return match supported_scope(&text) {
                    Ok(scope) => {
                        // SAFETY: the slot now holds our boxed scope, freed by
                        // free_fixup_sip_trace.
                        unsafe { *param = Box::into_raw(Box::new(scope)) as *mut c_void };
                        0
                    }
                    Err(e) => {
                        crate::log_error!("sip_trace(): bad trace mode '{text}': {e}");
                        -1
                    }
                };
            }
            _ => {}
        }
        // SAFETY: the core's fixup for string-or-pseudo-variable values.
        unsafe { sys::fixup_spve_all(param, param_no) }
    })
}

unsafe extern "C" fn free_fixup_sip_trace(param: *mut *mut c_void, param_no: c_int) -> c_int {
    guard("sip_trace() free fixup", -1, || {
        if param_no == 3 {
            // SAFETY: parameter 3 holds the box fixup_sip_trace made.
            unsafe {
                if !(*param).is_null() {
                    drop(Box::from_raw(*param as *mut Scope));
                    *param = std::ptr::null_mut();
                }
            }
            return 0;
        }
        // SAFETY: parameters 1 and 2 were fixed by fixup_spve_all.
        unsafe { sys::fixup_free_spve_all(param, param_no) }
    })
}

unsafe extern "C" fn fixup_sip_trace_mode(param: *mut *mut c_void, param_no: c_int) -> c_int {
    guard("sip_trace_mode() fixup", -1, || {
        // SAFETY: before its fixup, a parameter is the config's string.
        let text = unsafe { fixup_text(param) };
        if is_constant(&text) {
            if let Err(e) = supported_scope(&text) {
                crate::log_error!("sip_trace_mode(): bad trace mode '{text}': {e}");
                return -1;
            }
        }
        // SAFETY: the core's fixup for string-or-pseudo-variable values.
        unsafe { sys::fixup_spve_all(param, param_no) }
    })
}

unsafe extern "C" fn w_hlog1(msg: *mut sys::sip_msg, text: *mut c_char, _: *mut c_char) -> c_int {
    guard("hlog()", -1, || {
        // SAFETY: the parameter was fixed by fixup_spve_all; msg is live.
        let Some(text) = (unsafe { param_value(msg, text) }) else { return -1 };
        hlog(msg, None, &text)
    })
}

unsafe extern "C" fn w_hlog2(msg: *mut sys::sip_msg, cid: *mut c_char, text: *mut c_char) -> c_int {
    guard("hlog()", -1, || {
        // SAFETY: both parameters were fixed by fixup_spve_all; msg is live.
        let Some(text) = (unsafe { param_value(msg, text) }) else { return -1 };
        let cid = unsafe { param_value(msg, cid) }.unwrap_or_default();
        hlog(msg, Some(&cid), &text)
    })
}

/// `hlog([correlation_id,] text)`: a HEPv3 log record (type 100) to the
/// `duplicate_uri` collectors, from the socket Kamailio would use toward
/// the first one, correlated by the given id or the message's Call-ID.
/// As in the C module, it does not depend on trace_on or hep_mode_on.
pub fn hlog(msg: *mut sys::sip_msg, cid: Option<&str>, text: &str) -> c_int {
    let Some(module) = module::get() else { return -1 };
    let Some(first) = module.duplicates.first() else {
        tracer::drop_record(DropReason::NoDestination, "hlog(): no duplicate_uri modparam");
        return -1;
    };
    let correlation = match cid {
        Some(id) => id.as_bytes().to_vec(),
        None => {
            // SAFETY: Kamailio passes the live message it is routing.
            let buf = unsafe { msg.as_ref() }.and_then(net::message_bytes);
            match buf.and_then(crate::core::sip::call_id) {
                Some(id) => id.to_vec(),
                None => {
                    tracer::drop_record(DropReason::Unparsable, "hlog(): the message has no Call-ID");
                    return -1;
                }
            }
        }
    };
    let record = TraceRecord {
        time: Timestamp::now(),
        direction: Direction::Out,
        src: net::local_toward(first),
        dst: Endpoint { transport: Transport::Udp, addr: first.addr },
        payload: text.as_bytes(),
        correlation_id: Some(&correlation),
        extra_correlation: None,
        proto_type: crate::core::hep::proto_type::LOG,
        traced_users: None,
    };
    let outputs = Outputs { hep: module.duplicates.clone(), ..Default::default() };
    if tracer::enqueue(&record, &outputs) {
        1
    } else {
        -1
    }
}

unsafe extern "C" fn w_sip_trace0(msg: *mut sys::sip_msg, _: *mut c_char, _: *mut c_char) -> c_int {
    guard("sip_trace()", -1, || trace_call(msg, None, None, None))
}

unsafe extern "C" fn w_sip_trace1(msg: *mut sys::sip_msg, dest: *mut c_char, _: *mut c_char) -> c_int {
    guard("sip_trace()", -1, || {
        with_params(msg, dest, None, |dest, _| trace_call(msg, Some(dest), None, None))
    })
}

unsafe extern "C" fn w_sip_trace2(msg: *mut sys::sip_msg, dest: *mut c_char, cid: *mut c_char) -> c_int {
    guard("sip_trace()", -1, || {
        with_params(msg, dest, Some(cid), |dest, cid| trace_call(msg, Some(dest), cid, None))
    })
}

unsafe extern "C" fn w_sip_trace3(
    msg: *mut sys::sip_msg,
    dest: *mut c_char,
    cid: *mut c_char,
    mode: *mut c_char,
) -> c_int {
    guard("sip_trace()", -1, || {
        // SAFETY: the fixup stored a Scope it supports.
        let Some(scope) = (unsafe { (mode as *const Scope).as_ref() }).copied() else {
            return -1;
        };
        with_params(msg, dest, Some(cid), |dest, cid| trace_call(msg, Some(dest), cid, Some(scope)))
    })
}

/// Evaluates the URI and correlation id parameters of `sip_trace()` and
/// hands them to `f`. A URI that cannot be evaluated is a counted drop; a
/// correlation id that cannot be evaluated leaves the default, the Call-ID.
fn with_params(
    msg: *mut sys::sip_msg,
    dest: *mut c_char,
    cid: Option<*mut c_char>,
    f: impl FnOnce(&str, Option<&str>) -> c_int,
) -> c_int {
    // SAFETY: parameters were fixed by fixup_spve_all; msg is live.
    let Some(dest) = (unsafe { param_value(msg, dest) }) else {
        tracer::drop_record(DropReason::NoDestination, "sip_trace(): cannot evaluate the URI argument");
        return -1;
    };
    // SAFETY: as above.
    let cid = cid.and_then(|p| unsafe { param_value(msg, p) });
    f(&dest, cid.as_deref())
}

unsafe extern "C" fn w_sip_trace_mode(msg: *mut sys::sip_msg, mode: *mut c_char, _: *mut c_char) -> c_int {
    guard("sip_trace_mode()", -1, || {
        // SAFETY: the parameter was fixed by fixup_spve_all.
        let Some(text) = (unsafe { param_value(msg, mode) }) else {
            return -1;
        };
        match supported_scope(&text) {
            Ok(scope) => trace_call(msg, None, None, Some(scope)),
            Err(e) => {
                tracer::drop_record(DropReason::NoDestination, format_args!("sip_trace_mode('{text}'): {e}"));
                -1
            }
        }
    })
}

unsafe extern "C" fn fixup_sip_trace_types(param: *mut *mut c_void, param_no: c_int) -> c_int {
    guard("sip_trace_types() fixup", -1, || {
        // SAFETY: before its fixup, a parameter is the config's string.
        let text = unsafe { fixup_text(param) };
        if is_constant(&text) {
            if let Err(e) = TraceTypes::parse(&text) {
                crate::log_error!("sip_trace_types(): bad type list '{text}': {e}");
                return -1;
            }
        }
        // SAFETY: the core's fixup for string-or-pseudo-variable values.
        unsafe { sys::fixup_spve_all(param, param_no) }
    })
}

unsafe extern "C" fn w_sip_trace_types(msg: *mut sys::sip_msg, types: *mut c_char, _: *mut c_char) -> c_int {
    guard("sip_trace_types()", -1, || {
        // SAFETY: the parameter was fixed by fixup_spve_all.
        let Some(text) = (unsafe { param_value(msg, types) }) else { return -1 };
        trace_types(msg, &text)
    })
}

/// `sip_trace_types("sip|xlog|rest")`: what the trace that the next
/// `sip_trace()` or `sip_trace_mode()` call on this message starts sends.
pub fn trace_types(msg: *mut sys::sip_msg, text: &str) -> c_int {
    // SAFETY: Kamailio passes the live message it is routing.
    let Some(m) = (unsafe { msg.as_ref() }) else { return -1 };
    match TraceTypes::parse(text) {
        Ok(types) => {
            call_context::ask_types(m, types);
            1
        }
        Err(e) => {
            crate::log_warn!("sip_trace_types('{text}'): {e}");
            -1
        }
    }
}

/// The value of a parameter fixed by fixup_spve_all; `None` if it cannot be
/// evaluated. Empty and `$null` values read as empty.
///
/// # Safety
/// `param` must be a gparam made by fixup_spve_all, `msg` a live message.
unsafe fn param_value(msg: *mut sys::sip_msg, param: *mut c_char) -> Option<String> {
    let mut value = sys::str_ { s: std::ptr::null_mut(), len: 0 };
    // SAFETY: per the contract.
    if unsafe { sys::get_str_fparam(&mut value, msg, param as *mut sys::fparam_t) } != 0 {
        return None;
    }
    // SAFETY: a successful evaluation gives `len` valid bytes.
    let bytes = unsafe { net::str_bytes(&value) }.unwrap_or_default();
    Some(if bytes == b"<null>" { String::new() } else { String::from_utf8_lossy(bytes).into_owned() })
}

/// Traces what the script asked for: the current message, and with the
/// transaction scope (or, without a scope, `trace_flag` set on the
/// message) what its transaction sends and receives. Returns 1 when
/// something was queued for its outputs (what happens there is counted),
/// -1 when tracing is off or nothing can be traced.
pub fn trace_call(
    msg: *mut sys::sip_msg,
    dest: Option<&str>,
    cid: Option<&str>,
    scope: Option<Scope>,
) -> c_int {
    let Some(module) = module::get() else { return -1 };
    if msg.is_null() {
        return -1;
    }
    // Tracing is off, unless traced_user_avp names someone to trace.
    let users = users::current();
    if let Users::Skip = users {
        return -1;
    }
    let target = match dest {
        None => ScriptTarget { uri_given: false, dest: None },
        Some("") => ScriptTarget { uri_given: true, dest: None },
        Some(text) => match module::destination(text) {
            Ok(d) => ScriptTarget { uri_given: true, dest: Some(d) },
            Err(e) => {
                tracer::drop_record(DropReason::NoDestination, e);
                return -1;
            }
        },
    };
    let correlation = cid.unwrap_or_default();

    // SAFETY: Kamailio passes the live message it is routing.
    let flags = unsafe { (*msg).flags };
    let types = call_context::asked_types(unsafe { &*msg });
    let scope = scope.unwrap_or(match module.config.trace_flag {
        Some(flag) if flags & (1 << flag) != 0 => Scope::Transaction,
        _ => Scope::Message,
    });
    if scope != Scope::Message {
        // SAFETY: msg is the live message being routed.
        match unsafe { transaction::start(msg, target, correlation.as_bytes(), scope, types) } {
            Ok(Start::TraceCurrent) => {}
            Ok(Start::AlreadyTraced) => return 1,
            Err(e) => {
                crate::log_warn!("sip_trace(): {e}");
                return -1;
            }
        }
    }
    // SAFETY: as above; the rest of this message's script runs with the call current.
    unsafe { call_context::enter(msg, types, target, correlation.as_bytes()) };
    if !types.contains(TraceTypes::SIP) {
        return 1;
    }
    // SAFETY: as above.
    let Some(msg) = (unsafe { msg.as_ref() }) else { return -1 };
    let Some((payload, src, dst, direction)) = current_message(msg) else { return -1 };
    let (src, dst) = tracer::script_ends(direction, src, dst);
    let connection = match direction {
        Direction::In => connections::received_on(&msg.rcv),
        // SAFETY: set only while onsend_route runs, to live data.
        Direction::Out => unsafe { sys::p_onsend.as_ref() }
            .and_then(|s| unsafe { s.dst.as_ref() })
            .and_then(connections::sent_on),
    };
    let extra = connection.map(crate::core::event::net_correlation);
    let record = TraceRecord {
        time: Timestamp::now(),
        direction,
        src,
        dst,
        payload,
        correlation_id: (!correlation.is_empty()).then_some(correlation.as_bytes()),
        extra_correlation: extra.as_deref().map(str::as_bytes),
        proto_type: crate::core::hep::proto_type::SIP,
        traced_users: match &users {
            Users::List(packed) => Some(packed),
            _ => None,
        },
    };
    if tracer::enqueue(&record, &tracer::script_outputs(&target)) {
        1
    } else {
        -1
    }
}

/// The bytes and addresses of the message being routed: what is about to
/// be sent when called from onsend_route, else what was received.
fn current_message(msg: &sys::sip_msg) -> Option<(&[u8], Endpoint, Endpoint, Direction)> {
    // SAFETY: p_onsend is set only while onsend_route runs, to live data.
    let onsend = unsafe { sys::p_onsend.as_ref() };
    if let Some(snd) = onsend {
        // SAFETY: the onsend info points at the outgoing buffer and sockets.
        let sock = unsafe { snd.send_sock.as_ref()? };
        let to = unsafe { snd.to.as_ref()? };
        let src = net::local(sock)?;
        let dst = Endpoint { transport: src.transport, addr: net::socket_addr(to)? };
        // SAFETY: `buf` holds `len` bytes while onsend_route runs.
        let payload =
            unsafe { std::slice::from_raw_parts(snd.buf as *const u8, usize::try_from(snd.len).ok()?) };
        return Some((payload, src, dst, Direction::Out));
    }
    let (src, dst) = net::received(&msg.rcv)?;
    Some((net::message_bytes(msg)?, src, dst, Direction::In))
}

type Fn2 = unsafe extern "C" fn(*mut sys::sip_msg, *mut c_char, *mut c_char) -> c_int;
type Fn3 = unsafe extern "C" fn(*mut sys::sip_msg, *mut c_char, *mut c_char, *mut c_char) -> c_int;

const fn cmd(
    name: &'static CStr,
    function: Fn2,
    param_no: c_int,
    fixup: sys::fixup_function,
    free_fixup: sys::free_fixup_function,
) -> sys::cmd_export_t {
    sys::cmd_export_t {
        name: name.as_ptr() as *mut c_char,
        function: Some(function),
        param_no,
        fixup,
        free_fixup,
        flags: sys::ANY_ROUTE,
    }
}

pub const CMD_COUNT: usize = 11;

/// The exported cmd_export_t array, NULL-terminated.
pub const fn cmd_exports() -> [sys::cmd_export_t; CMD_COUNT + 1] {
    // SAFETY: Kamailio calls a function with as many parameters as its
    // param_no says; the declared type is only the table's slot type.
    let w_sip_trace3_slot = unsafe { std::mem::transmute::<Fn3, Fn2>(w_sip_trace3) };
    let fixup = Some(fixup_sip_trace as unsafe extern "C" fn(*mut *mut c_void, c_int) -> c_int);
    let free = Some(free_fixup_sip_trace as unsafe extern "C" fn(*mut *mut c_void, c_int) -> c_int);
    [
        cmd(c"sip_trace", w_sip_trace0, 0, None, None),
        cmd(c"sip_trace", w_sip_trace1, 1, fixup, free),
        cmd(c"sip_trace", w_sip_trace2, 2, fixup, free),
        cmd(c"sip_trace", w_sip_trace3_slot, 3, fixup, free),
        cmd(
            c"sip_trace_mode",
            w_sip_trace_mode,
            1,
            Some(fixup_sip_trace_mode),
            Some(sys::fixup_free_spve_all),
        ),
        cmd(
            c"sip_trace_types",
            w_sip_trace_types,
            1,
            Some(fixup_sip_trace_types),
            Some(sys::fixup_free_spve_all),
        ),
        cmd(c"hlog", w_hlog1, 1, Some(sys::fixup_spve_all), Some(sys::fixup_free_spve_all)),
        cmd(c"hlog", w_hlog2, 2, Some(sys::fixup_spve_all), Some(sys::fixup_free_spve_all)),
        rest::cmd_exports()[0],
        rest::cmd_exports()[1],
        rest::cmd_exports()[2],
        sys::cmd_export_t {
            name: std::ptr::null_mut(),
            function: None,
            param_no: 0,
            fixup: None,
            free_fixup: None,
            flags: 0,
        },
    ]
}
