//! OpenSIPS's trace API (`trace_api.h`): the core's hooks a tracer
//! installs (`register_trace_type`, `check_is_traced`,
//! `sip_context_trace`, `get_next_destination`) and `global_trace_api`,
//! the `trace_proto_t` through which the core and modules such as xlog
//! and rest_client fill the records they hand the tracer. Its message
//! functions are the module's own, which build a `Record`; the names and
//! destinations are proto_hep's.

use super::hep::{self, HepId};
use super::msg::address_of;
use super::sys;
use crate::core::endpoint::Transport;
use crate::ffi::guard::guard;
use std::ffi::CStr;
use std::net::SocketAddr;
use std::os::raw::{c_char, c_int, c_void};

/// A record the core or a module fills.
pub struct Record {
    pub from: Option<SocketAddr>,
    pub to: Option<SocketAddr>,
    /// Of the IP protocol the caller names (`IPPROTO_*`).
    pub transport: Transport,
    /// proto_hep's number of the record's kind.
    pub kind: i32,
    pub payload: Vec<u8>,
    /// Named parts, when the caller builds the payload of them.
    pub parts: Vec<(String, Vec<u8>)>,
    pub correlation: Option<Vec<u8>>,
    /// Named correlations with other records (`sip`, ...).
    pub extra: Vec<(String, Vec<u8>)>,
}

/// The tracer's answers to the trace API.
pub trait Tracer {
    /// A module registers the kind of records `name`, which proto_hep
    /// numbers `kind`; false refuses it.
    fn register_kind(name: &str, kind: i32) -> bool;
    /// Whether records of `kind` are traced for the message being processed.
    fn is_traced(kind: i32) -> bool;
    /// A record of `kind` about the message being processed: `build` makes
    /// it, anew for each call, from what the caller gave.
    fn context(kind: i32, build: &mut dyn FnMut() -> Record);
    /// A record the caller filled, for proto_hep's destination `dest`.
    /// False when it is not sent.
    fn send(record: &Record, dest: Option<HepId<'_>>) -> bool;
}

/// Installs `T` as the tracer and registers the `sip` kind first, unless
/// another module provides the trace API: then `Ok(false)`. From mod_init,
/// after proto_hep is bound.
pub fn install<T: Tracer>() -> Result<bool, String> {
    let hep = hep::api().ok_or("proto_hep is not bound")?;
    // SAFETY: the core's hook globals, read and set before forking.
    unsafe {
        if !std::ptr::addr_of!(sys::global_trace_api).read().is_null() {
            return Ok(false);
        }
        // The core and the modules keep the pointer for the life of the process.
        let api = Box::leak(Box::new(sys::trace_proto_t {
            create_trace_message: Some(create_message),
            add_chunk: Some(add_chunk),
            add_extra_correlation: Some(add_extra_correlation),
            add_payload_part: Some(add_payload_part),
            send_message: Some(send_message::<T>),
            get_trace_dest_by_name: hep.get_trace_dest_by_name,
            new_trace_dest: hep.new_trace_dest,
            release_trace_dest: hep.release_trace_dest,
            free_message: Some(free_message),
            get_message_id: hep.get_message_id,
            get_data_id: hep.get_data_id,
            generate_guid: hep.generate_guid,
        }));
        std::ptr::addr_of_mut!(sys::global_trace_api).write(api);
        if register_kind::<T>(c"sip".as_ptr() as *mut c_char) < 0 {
            return Err("cannot register the sip record type with proto_hep".into());
        }
        if std::ptr::addr_of!(sys::register_trace_type).read().is_none() {
            std::ptr::addr_of_mut!(sys::register_trace_type).write(Some(register_kind::<T>));
        }
        if std::ptr::addr_of!(sys::check_is_traced).read().is_none() {
            std::ptr::addr_of_mut!(sys::check_is_traced).write(Some(is_traced::<T>));
        }
        if std::ptr::addr_of!(sys::sip_context_trace).read().is_none() {
            std::ptr::addr_of_mut!(sys::sip_context_trace).write(Some(context_trace::<T>));
        }
        if std::ptr::addr_of!(sys::get_next_destination).read().is_none() {
            std::ptr::addr_of_mut!(sys::get_next_destination).write(Some(next_destination));
        }
    }
    Ok(true)
}

unsafe extern "C" fn register_kind<T: Tracer>(name: *mut c_char) -> c_int {
    guard("register_trace_type", 0, || {
        if name.is_null() {
            return 0;
        }
        // SAFETY: a NUL-terminated name from the caller.
        let name = unsafe { CStr::from_ptr(name) };
        let (Ok(text), Some(kind)) = (name.to_str(), hep::message_id(name)) else { return 0 };
        if T::register_kind(text, kind) {
            kind
        } else {
            0
        }
    })
}

unsafe extern "C" fn is_traced<T: Tracer>(kind: c_int) -> c_int {
    guard("check_is_traced", 0, || T::is_traced(kind) as c_int)
}

unsafe extern "C" fn next_destination(_last: sys::trace_dest, _hash: c_int) -> sys::trace_dest {
    // Nothing in OpenSIPS 3.6 asks for it; it cannot panic.
    std::ptr::null_mut()
}

/// The bytes of a caller's `str`, when it has any.
///
/// # Safety
/// `s` must be null or a valid `str` for `'a`.
unsafe fn bytes<'a>(s: *const sys::str_) -> Option<&'a [u8]> {
    // SAFETY: per the contract.
    unsafe { s.as_ref().and_then(|s| super::bytes(s)) }
}

/// A record of the caller's arguments.
///
/// # Safety
/// Each pointer must be null or valid for the call.
unsafe fn record(
    from: *const sys::sockaddr_union,
    to: *const sys::sockaddr_union,
    net_proto: c_int,
    payload: *const sys::str_,
    kind: c_int,
) -> Record {
    let transport = match net_proto {
        libc::IPPROTO_UDP => Transport::Udp,
        libc::IPPROTO_SCTP => Transport::Sctp,
        _ => Transport::Tcp,
    };
    Record {
        // SAFETY: per the contract.
        from: unsafe { from.as_ref() }.and_then(address_of),
        // SAFETY: per the contract.
        to: unsafe { to.as_ref() }.and_then(address_of),
        transport,
        kind,
        // SAFETY: per the contract.
        payload: unsafe { bytes(payload) }.unwrap_or_default().to_vec(),
        parts: Vec::new(),
        correlation: None,
        extra: Vec::new(),
    }
}

unsafe extern "C" fn create_message(
    from: *const sys::sockaddr_union,
    to: *const sys::sockaddr_union,
    net_proto: c_int,
    payload: *mut sys::str_,
    kind: c_int,
    _dest: sys::trace_dest,
) -> sys::trace_message {
    guard("create_trace_message", std::ptr::null_mut(), || {
        // SAFETY: the caller's arguments.
        let record = unsafe { record(from, to, net_proto, payload, kind) };
        Box::into_raw(Box::new(record)) as sys::trace_message
    })
}

/// The record behind a caller's message.
///
/// # Safety
/// `m` must be null or come from `create_message` (or `context_trace`)
/// and not be freed, nor used elsewhere during `'a`.
unsafe fn message<'a>(m: sys::trace_message) -> Option<&'a mut Record> {
    // SAFETY: per the contract.
    unsafe { (m as *mut Record).as_mut() }
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
        let Some(record) = (unsafe { message(m) }) else { return -1 };
        if vendor == 0 && data_id == CORRELATION_CHUNK {
            // SAFETY: `len` bytes at `data`, from the caller.
            if let Some(value) = unsafe { crate::ffi::host_bytes(data as *const c_char, len) } {
                record.correlation = Some(value.to_vec());
            }
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
        let (Some(record), Some(key), Some(value)) =
            (unsafe { message(m) }, unsafe { bytes(key) }, unsafe { bytes(value) })
        else {
            return -1;
        };
        record.extra.push((String::from_utf8_lossy(key).into_owned(), value.to_vec()));
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
        let (Some(record), Some(value)) = (unsafe { message(m) }, unsafe { bytes(value) }) else {
            return -1;
        };
        if key.is_null() {
            return -1;
        }
        // SAFETY: a NUL-terminated key.
        let key = unsafe { CStr::from_ptr(key) }.to_string_lossy().into_owned();
        record.parts.push((key, value.to_vec()));
        0
    })
}

unsafe extern "C" fn free_message(m: sys::trace_message) {
    guard("free_message", (), || {
        if !m.is_null() {
            // SAFETY: made by `create_message` with Box::into_raw, freed once.
            drop(unsafe { Box::from_raw(m as *mut Record) });
        }
    })
}

unsafe extern "C" fn send_message<T: Tracer>(
    m: sys::trace_message,
    dest: sys::trace_dest,
    _sock: *const sys::socket_info,
) -> c_int {
    guard("send_message", -1, || {
        // SAFETY: a message of ours.
        let Some(record) = (unsafe { message(m) }) else { return -1 };
        // SAFETY: proto_hep's entry, alive while the caller sends to it.
        let dest = unsafe { HepId::from_ptr(dest) };
        if T::send(record, dest) {
            0
        } else {
            -1
        }
    })
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn context_trace<T: Tracer>(
    kind: c_int,
    from: *mut sys::sockaddr_union,
    to: *mut sys::sockaddr_union,
    payload: *mut sys::str_,
    net_proto: c_int,
    correlation: *mut sys::str_,
    modify: *mut sys::modify_trace,
) -> c_int {
    guard("sip_context_trace", -1, || {
        let mut build = || {
            // SAFETY: the caller's arguments, valid during the call.
            let mut record = Box::new(unsafe { record(from, to, net_proto, payload, kind) });
            // SAFETY: as above.
            record.correlation = unsafe { bytes(correlation) }.map(<[u8]>::to_vec);
            // SAFETY: the caller's modifier, which fills the record through
            // our functions (`global_trace_api`) while it has it.
            if let Some(modify) = unsafe { modify.as_ref() } {
                if let Some(f) = modify.mod_f {
                    // SAFETY: as above.
                    unsafe { f(&mut *record as *mut Record as sys::trace_message, modify.param) };
                }
            }
            *record
        };
        T::context(kind, &mut build);
        0
    })
}
