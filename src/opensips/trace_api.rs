//! The tracer's role in OpenSIPS's trace API: the core and modules such as
//! xlog and rest_client ask the tracer whether the message being processed
//! is traced for their kind of record (`check_is_traced`) and hand it the
//! record (`sip_context_trace`), which they fill through the functions of
//! `global_trace_api`. OpenSIPS's tracer passes proto_hep's functions, which
//! send from the SIP worker; here they are this module's own, which queue
//! the record for the sender like every other trace.
//!
//! Record kinds are registered by name (`sip` first, then `xlog`, `rest`,
//! ...); a kind's position is its bit in `trace()`'s type mask, and its
//! HEP protocol type (from proto_hep) goes in the packet.

use crate::core::endpoint::{Endpoint, Transport};
use crate::core::event::JsonObject;
use crate::core::record::{Direction, Outputs, Timestamp, TraceRecord};
use crate::core::shared::enqueue;
use crate::ffi::guard::guard;
use crate::opensips::module::{self, HepApi, Module};
use crate::opensips::sys;
use crate::opensips::tracer;
use std::ffi::CStr;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::raw::{c_char, c_int, c_void};
use std::sync::atomic::Ordering;
use std::sync::Mutex;

/// The registered kinds: (name, HEP protocol type). Filled before forking.
static KINDS: Mutex<Vec<(String, c_int)>> = Mutex::new(Vec::new());

fn kinds() -> std::sync::MutexGuard<'static, Vec<(String, c_int)>> {
    KINDS.lock().unwrap_or_else(|e| e.into_inner())
}

/// The bit of the `sip` kind, registered first.
pub const SIP_BIT: u32 = 1;

/// The traces active for the message this process works on: the message
/// id and, for each, (trace id index, kinds mask).
static CURRENT: Mutex<(u32, Vec<(usize, u32)>)> = Mutex::new((0, Vec::new()));

fn current() -> std::sync::MutexGuard<'static, (u32, Vec<(usize, u32)>)> {
    CURRENT.lock().unwrap_or_else(|e| e.into_inner())
}

/// Notes that `msg_id` is traced to trace id `id` for the kinds `types`.
pub fn enter(msg_id: u32, id: usize, types: u32) {
    let mut c = current();
    if c.0 != msg_id {
        *c = (msg_id, Vec::new());
    }
    if !c.1.contains(&(id, types)) {
        c.1.push((id, types));
    }
}

/// The mask of `names` (`sip|xlog`), each matched as a prefix of a
/// registered kind, as OpenSIPS's tracer does; or the unknown one.
pub fn mask_of(names: &[u8]) -> Result<u32, String> {
    let kinds = kinds();
    let mut mask = 0;
    for name in names.split(|&b| b == b'|').map(<[u8]>::trim_ascii).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name);
        let known = kinds.iter().enumerate().filter(|(_, (k, _))| k.starts_with(name.as_ref()));
        let bits = known.fold(0, |m, (i, _)| m | 1 << i);
        if bits == 0 {
            let names: Vec<&str> = kinds.iter().map(|(k, _)| k.as_str()).collect();
            return Err(format!("unknown type '{name}' (known: {})", names.join(", ")));
        }
        mask |= bits;
    }
    if mask == 0 {
        return Err("no type is given".into());
    }
    Ok(mask)
}

/// Installs the hooks, unless another module has; from mod_init, after
/// proto_hep is bound.
pub fn init(api: &HepApi) -> Result<(), String> {
    // SAFETY: the core's hook globals, set before forking.
    unsafe {
        if !sys::global_trace_api.is_null() {
            crate::log_warn!(
                "another module provides the trace API; xlog and REST records are not traced by this module"
            );
            return Ok(());
        }
        OUR_API.get_message_id = api.0.get_message_id;
        OUR_API.get_data_id = api.0.get_data_id;
        OUR_API.generate_guid = api.0.generate_guid;
        OUR_API.get_trace_dest_by_name = api.0.get_trace_dest_by_name;
        OUR_API.new_trace_dest = api.0.new_trace_dest;
        OUR_API.release_trace_dest = api.0.release_trace_dest;
        sys::global_trace_api = std::ptr::addr_of_mut!(OUR_API);
        if register_kind(c"sip".as_ptr() as *mut c_char) < 0 {
            return Err("cannot register the sip record type with proto_hep".into());
        }
        if std::ptr::addr_of!(sys::register_trace_type).read().is_none() {
            sys::register_trace_type = Some(register_kind);
        }
        if std::ptr::addr_of!(sys::check_is_traced).read().is_none() {
            sys::check_is_traced = Some(is_traced);
        }
        if std::ptr::addr_of!(sys::sip_context_trace).read().is_none() {
            sys::sip_context_trace = Some(context_trace);
        }
        if std::ptr::addr_of!(sys::get_next_destination).read().is_none() {
            sys::get_next_destination = Some(next_destination);
        }
        if sys::__register_script_cb(
            Some(new_message),
            (sys::PRE_SCRIPT_CB | sys::REQ_TYPE_CB | sys::RPL_TYPE_CB) as c_int,
            std::ptr::null_mut(),
            0,
        ) < 0
        {
            return Err("cannot register the script callback".into());
        }
    }
    Ok(())
}

/// The API the core and the modules use to fill records: this module's
/// own message functions, proto_hep's for names and destinations.
static mut OUR_API: sys::trace_proto_t = sys::trace_proto_t {
    create_trace_message: Some(create_message),
    add_chunk: Some(add_chunk),
    add_extra_correlation: Some(add_extra_correlation),
    add_payload_part: Some(add_payload_part),
    send_message: Some(send_message),
    get_trace_dest_by_name: None,
    new_trace_dest: None,
    release_trace_dest: None,
    free_message: Some(free_message),
    get_message_id: None,
    get_data_id: None,
    generate_guid: None,
};

unsafe extern "C" fn register_kind(name: *mut c_char) -> c_int {
    guard("register_trace_type", 0, || {
        // SAFETY: a NUL-terminated name from the caller.
        let Some(text) =
            (unsafe { name.as_ref() }).and_then(|_| unsafe { CStr::from_ptr(name) }.to_str().ok())
        else {
            return 0;
        };
        // SAFETY: proto_hep's function, bound in mod_init.
        let Some(id) = (unsafe { OUR_API.get_message_id }).map(|f| unsafe { f(name) }) else { return 0 };
        let mut kinds = kinds();
        if kinds.len() >= 32 {
            crate::log_error!("too many trace types; '{text}' is not registered");
            return 0;
        }
        if !kinds.iter().any(|(k, _)| k == text) {
            kinds.push((text.to_string(), id));
        }
        id
    })
}

/// The bit of the kind whose HEP type is `id`.
fn bit_of(id: c_int) -> Option<u32> {
    kinds().iter().position(|(_, k)| *k == id).map(|i| 1 << i)
}

unsafe extern "C" fn is_traced(id: c_int) -> c_int {
    guard("check_is_traced", 0, || {
        let Some(module) = module::get() else { return 0 };
        if !module.shared.trace_on.load(Ordering::Relaxed) {
            return 0;
        }
        let Some(bit) = bit_of(id) else { return 0 };
        current().1.iter().any(|&(_, types)| types & bit != 0) as c_int
    })
}

unsafe extern "C" fn next_destination(_last: sys::trace_dest, _hash: c_int) -> sys::trace_dest {
    // Nothing in OpenSIPS 3.6 asks for it; it cannot panic.
    std::ptr::null_mut()
}

unsafe extern "C" fn new_message(_msg: *mut sys::sip_msg, _param: *mut c_void) -> c_int {
    guard("script callback", sys::SCB_RUN_ALL as c_int, || {
        let mut c = current();
        c.1.clear();
        sys::SCB_RUN_ALL as c_int
    })
}

/// A record being filled by the core or a module.
struct Message {
    from: Option<SocketAddr>,
    to: Option<SocketAddr>,
    net_proto: c_int,
    proto_type: c_int,
    payload: Vec<u8>,
    parts: Vec<(String, Vec<u8>)>,
    correlation: Option<Vec<u8>>,
    extra: Vec<(String, Vec<u8>)>,
}

fn address(su: *const sys::sockaddr_union) -> Option<SocketAddr> {
    // SAFETY: an address the caller passed, or null.
    unsafe { su.as_ref() }.and_then(tracer::address_of)
}

/// The bytes of a `str`, when it has any.
///
/// # Safety
/// `s` must be null or a valid `str`.
unsafe fn bytes<'a>(s: *const sys::str_) -> Option<&'a [u8]> {
    // SAFETY: per the contract.
    unsafe { tracer::str_at(s) }.filter(|b| !b.is_empty())
}

unsafe extern "C" fn create_message(
    from: *const sys::sockaddr_union,
    to: *const sys::sockaddr_union,
    net_proto: c_int,
    payload: *mut sys::str_,
    proto_type: c_int,
    _dest: sys::trace_dest,
) -> sys::trace_message {
    guard("create_trace_message", std::ptr::null_mut(), || {
        let message = Message {
            from: address(from),
            to: address(to),
            net_proto,
            proto_type,
            // SAFETY: the caller's payload, or null.
            payload: unsafe { bytes(payload) }.unwrap_or_default().to_vec(),
            parts: Vec::new(),
            correlation: None,
            extra: Vec::new(),
        };
        Box::into_raw(Box::new(message)) as sys::trace_message
    })
}

/// # Safety
/// `m` must come from `create_message` and not be freed.
unsafe fn message<'a>(m: sys::trace_message) -> Option<&'a mut Message> {
    // SAFETY: per the contract.
    unsafe { (m as *mut Message).as_mut() }
}

/// The generic correlation id chunk; other chunks are not kept.
const CORRELATION_CHUNK: c_int = 0x11;

unsafe extern "C" fn add_chunk(
    m: sys::trace_message,
    data: *mut c_void,
    len: c_int,
    _type: c_int,
    data_id: c_int,
    vendor: c_int,
) -> c_int {
    guard("add_chunk", -1, || {
        // SAFETY: a message of ours.
        let Some(message) = (unsafe { message(m) }) else { return -1 };
        if vendor == 0 && data_id == CORRELATION_CHUNK && !data.is_null() && len > 0 {
            // SAFETY: `len` bytes at `data`, from the caller.
            let value = unsafe { std::slice::from_raw_parts(data as *const u8, len as usize) };
            message.correlation = Some(value.to_vec());
        }
        0
    })
}

unsafe extern "C" fn add_extra_correlation(
    m: sys::trace_message,
    key: *mut sys::str_,
    value: *mut sys::str_,
) -> c_int {
    guard("add_extra_correlation", -1, || {
        // SAFETY: a message of ours and the caller's strings.
        let (Some(message), Some(key), Some(value)) =
            (unsafe { message(m) }, unsafe { bytes(key) }, unsafe { bytes(value) })
        else {
            return -1;
        };
        message.extra.push((String::from_utf8_lossy(key).into_owned(), value.to_vec()));
        0
    })
}

unsafe extern "C" fn add_payload_part(
    m: sys::trace_message,
    key: *mut c_char,
    value: *mut sys::str_,
) -> c_int {
    guard("add_payload_part", -1, || {
        // SAFETY: a message of ours and the caller's strings.
        let (Some(message), Some(value)) = (unsafe { message(m) }, unsafe { bytes(value) }) else {
            return -1;
        };
        if key.is_null() {
            return -1;
        }
        // SAFETY: a NUL-terminated key.
        let key = unsafe { CStr::from_ptr(key) }.to_string_lossy().into_owned();
        message.parts.push((key, value.to_vec()));
        0
    })
}

unsafe extern "C" fn free_message(m: sys::trace_message) {
    guard("free_message", (), || {
        if !m.is_null() {
            // SAFETY: made by `create_message` with Box::into_raw.
            drop(unsafe { Box::from_raw(m as *mut Message) });
        }
    })
}

unsafe extern "C" fn send_message(
    m: sys::trace_message,
    dest: sys::trace_dest,
    _sock: *const sys::socket_info,
) -> c_int {
    guard("send_message", -1, || {
        let Some(module) = module::get() else { return -1 };
        // SAFETY: a message of ours.
        let Some(message) = (unsafe { message(m) }) else { return -1 };
        let Some(dest) = module.hep_destination_of(dest) else {
            tracer::report(module, crate::core::counters::DropReason::NoDestination, "an unknown hep_id");
            return -1;
        };
        let outputs = Outputs { hep: smallvec::smallvec![dest], ..Outputs::default() };
        if queue(module, message, &outputs) {
            0
        } else {
            -1
        }
    })
}

/// Queues a filled record, shaped as proto_hep would send it.
fn queue(module: &Module, message: &Message, outputs: &Outputs) -> bool {
    let (payload, correlation, extra) = match &module.homer5_delimiter {
        // Homer 5 mode: the parts joined, and only the `sip` correlation
        // kept, as the correlation id.
        Some(delimiter) => {
            let payload = if message.parts.is_empty() {
                message.payload.clone()
            } else {
                message.parts.iter().map(|(_, v)| v.as_slice()).collect::<Vec<_>>().join(delimiter.as_slice())
            };
            let sip = message.extra.iter().rev().find(|(k, _)| k == "sip").map(|(_, v)| v.clone());
            (payload, sip.or_else(|| message.correlation.clone()), None)
        }
        None => {
            let payload = if message.parts.is_empty() {
                message.payload.clone()
            } else {
                let mut json = JsonObject::new();
                for (k, v) in &message.parts {
                    json.string(k, v);
                }
                json.finish().into_bytes()
            };
            let extra = (!message.extra.is_empty()).then(|| {
                let mut json = JsonObject::new();
                for (k, v) in &message.extra {
                    json.string(k, v);
                }
                json.finish().into_bytes()
            });
            (payload, message.correlation.clone(), extra)
        }
    };
    let transport = match message.net_proto {
        libc::IPPROTO_UDP => Transport::Udp,
        libc::IPPROTO_SCTP => Transport::Sctp,
        _ => Transport::Tcp,
    };
    // proto_hep's stand-ins when a record has no address.
    let from = message.from.unwrap_or_else(|| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 0));
    let to = message.to.unwrap_or_else(|| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), 0));
    let record = TraceRecord {
        time: Timestamp::now(),
        direction: Direction::Out,
        src: Endpoint::new(transport, from.ip(), from.port()),
        dst: Endpoint::new(transport, to.ip(), to.port()),
        payload: &payload,
        correlation_id: correlation.as_deref(),
        extra_correlation: extra.as_deref(),
        proto_type: message.proto_type as u8,
        traced_users: None,
    };
    match enqueue(&module.queues, &module.shared.counters, &record, outputs, None) {
        Ok(()) => true,
        Err(e) => {
            tracer::report(module, e.reason, &e.detail);
            false
        }
    }
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn context_trace(
    id: c_int,
    from: *mut sys::sockaddr_union,
    to: *mut sys::sockaddr_union,
    payload: *mut sys::str_,
    net_proto: c_int,
    correlation: *mut sys::str_,
    modify: *mut sys::modify_trace,
) -> c_int {
    guard("sip_context_trace", -1, || {
        let Some(module) = module::get() else { return 0 };
        if !module.shared.trace_on.load(Ordering::Relaxed) {
            return 0;
        }
        let Some(bit) = bit_of(id) else { return 0 };
        let traces: Vec<usize> = current().1.iter().filter(|(_, t)| t & bit != 0).map(|&(i, _)| i).collect();
        for index in traces.into_iter().filter(|&i| module.id_on(i)) {
            let Some(outputs) = module.outputs(index) else { continue };
            if outputs.hep.is_empty() {
                continue;
            }
            // SAFETY: the caller's addresses and strings; our own functions
            // fill the message through the caller's modifier.
            let m = unsafe { create_message(from, to, net_proto, payload, id, std::ptr::null_mut()) };
            if let Some(c) = unsafe { bytes(correlation) } {
                unsafe { add_chunk(m, c.as_ptr() as *mut c_void, c.len() as c_int, 1, CORRELATION_CHUNK, 0) };
            }
            if let Some(modify) = unsafe { modify.as_ref() } {
                if let Some(f) = modify.mod_f {
                    unsafe { f(m, modify.param) };
                }
            }
            // SAFETY: our message, filled.
            if let Some(message) = unsafe { message(m) } {
                let hep_only = Outputs { hep: outputs.hep.clone(), ..Outputs::default() };
                queue(module, message, &hep_only);
            }
            unsafe { free_message(m) };
        }
        0
    })
}
