//! `trace(trace_id, [scope], [type], [trace_attrs], [flags], [correlation_id])`,
//! the script function of OpenSIPS's tracer. This module implements the
//! message scope; the others are refused at startup.

use crate::core::counters::DropReason;
use crate::core::endpoint::{Endpoint, Transport};
use crate::core::hep::proto_type;
use crate::core::record::{Direction, Timestamp, TraceRecord};
use crate::core::shared::enqueue;
use crate::guard::guard;
use crate::opensips::{module, sys};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::raw::{c_int, c_void};
use std::sync::atomic::Ordering;

pub const CMD_COUNT: usize = 1;

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
    let s = unsafe { (*param as *const sys::str_).as_ref()? };
    Some(unsafe { std::slice::from_raw_parts(s.s as *const u8, s.len.max(0) as usize) })
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

/// Accepts the message scope, `m`; the others are not implemented yet.
unsafe extern "C" fn fixup_scope(param: *mut *mut c_void) -> c_int {
    guard("trace() fixup", -1, || {
        // SAFETY: OpenSIPS passes the parameter's str.
        let Some(scope) = (unsafe { fixup_text(param) }) else { return -1 };
        for &c in scope.iter().filter(|c| !c.is_ascii_whitespace()) {
            match c.to_ascii_lowercase() {
                b'm' => {}
                b't' | b'd' | b'b' => {
                    crate::log_error!(
                        "trace(): scope '{}' is not implemented yet by this tracer module; use 'm'",
                        c as char
                    );
                    return -1;
                }
                _ => {
                    crate::log_error!("trace(): unknown scope '{}'", String::from_utf8_lossy(scope));
                    return -1;
                }
            }
        }
        0
    })
}

/// Accepts the type `sip`; the others are not implemented yet.
unsafe extern "C" fn fixup_types(param: *mut *mut c_void) -> c_int {
    guard("trace() fixup", -1, || {
        // SAFETY: OpenSIPS passes the parameter's str.
        let Some(types) = (unsafe { fixup_text(param) }) else { return -1 };
        for t in types.split(|&b| b == b'|').map(<[u8]>::trim_ascii) {
            if !t.eq_ignore_ascii_case(b"sip") {
                crate::log_error!(
                    "trace(): type '{}' is not implemented yet by this tracer module; use 'sip'",
                    String::from_utf8_lossy(t)
                );
                return -1;
            }
        }
        0
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

fn ip_of(ip: &sys::ip_addr) -> Option<IpAddr> {
    // SAFETY: the union's bytes are plain data.
    let bytes = unsafe { ip.u.addr };
    match ip.af as i32 {
        libc::AF_INET => Some(IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))),
        libc::AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(bytes))),
        _ => None,
    }
}

fn transport_of(proto: c_int) -> Transport {
    match proto as u32 {
        sys::sip_protos_PROTO_TCP => Transport::Tcp,
        sys::sip_protos_PROTO_TLS => Transport::Tls,
        sys::sip_protos_PROTO_SCTP => Transport::Sctp,
        sys::sip_protos_PROTO_WS => Transport::Ws,
        sys::sip_protos_PROTO_WSS => Transport::Wss,
        _ => Transport::Udp,
    }
}

/// The string of an optional str parameter, as the function gets it.
///
/// # Safety
/// `p` must be null or point at a live `str`.
unsafe fn str_param<'a>(p: *mut c_void) -> Option<&'a [u8]> {
    // SAFETY: per the contract.
    let s = unsafe { (p as *const sys::str_).as_ref()? };
    Some(unsafe { std::slice::from_raw_parts(s.s as *const u8, s.len.max(0) as usize) })
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn w_trace(
    msg: *mut sys::sip_msg,
    id: *mut c_void,
    _scope: *mut c_void,
    _types: *mut c_void,
    _attrs: *mut c_void,
    _legs: *mut c_void,
    correlation: *mut c_void,
    _p7: *mut c_void,
    _p8: *mut c_void,
) -> c_int {
    guard("trace()", -1, || {
        let Some(module) = module::get() else { return -1 };
        // SAFETY: OpenSIPS passes the message being processed.
        let Some(msg) = (unsafe { msg.as_ref() }) else { return -1 };
        if !module.shared.trace_on.load(Ordering::Relaxed) {
            return -1;
        }
        let Some((_, outputs)) = (id as usize).checked_sub(1).and_then(|i| module.ids.get(i)) else {
            return -1;
        };
        let transport = transport_of(msg.rcv.proto);
        let (Some(src), Some(dst)) = (ip_of(&msg.rcv.src_ip), ip_of(&msg.rcv.dst_ip)) else {
            report(module, DropReason::Unparsable, "the message has no IP addresses");
            return -1;
        };
        // SAFETY: the message buffer is valid for its length.
        let payload = unsafe { std::slice::from_raw_parts(msg.buf as *const u8, msg.len as usize) };
        let record = TraceRecord {
            time: Timestamp::now(),
            direction: Direction::In,
            src: Endpoint::new(transport, src, msg.rcv.src_port),
            dst: Endpoint::new(transport, dst, msg.rcv.dst_port),
            payload,
            // SAFETY: an optional str parameter.
            correlation_id: unsafe { str_param(correlation) },
            extra_correlation: None,
            proto_type: proto_type::SIP,
            traced_users: None,
        };
        match enqueue(&module.queues, &module.shared.counters, &record, outputs, None) {
            Ok(()) => 1,
            Err(e) => {
                report(module, e.reason, &e.detail);
                -1
            }
        }
    })
}

fn report(module: &module::Module, reason: DropReason, detail: &str) {
    if let Some(line) = module.shared.count_drop(reason, 1, &detail) {
        crate::log_warn!("{line}");
    }
}
