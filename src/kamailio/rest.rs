//! REST queries of traced calls: `sip_trace_http_query(url, [post, [hdrs,]]
//! result)` runs http_client's query, as `http_client_query()` does, and
//! when the current call traces `rest` sends two HEP records (type 0x58):
//! the request and the reply. They share a correlation id of their own and
//! carry the call's Call-ID as extra correlation, as OpenSIPS's
//! rest_client does.

use crate::core::endpoint::{Endpoint, Transport};
use crate::core::event::{JsonObject, TraceTypes};
use crate::core::hep::proto_type;
use crate::core::record::{Direction, Timestamp, TraceRecord};
use crate::kamailio::call_context::{self, CallContext};
use crate::ffi::guard::guard;
use crate::kamailio::{net, sys, tracer};
use std::ffi::{c_void, CStr, CString};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::raw::{c_char, c_int};
use std::sync::OnceLock;

/// The most reply body bytes a reply record carries.
const MAX_BODY: usize = 4096;

struct Api(sys::httpc_api_t);
// SAFETY: a table of function pointers http_client fills once, in the
// main process before it forks; only read afterwards.
unsafe impl Sync for Api {}
unsafe impl Send for Api {}

static API: OnceLock<Option<Api>> = OnceLock::new();

/// http_client's API, bound on first use (its functions exist once the
/// module is loaded, whatever the order of the loadmodule lines).
fn api() -> Option<&'static sys::httpc_api_t> {
    API.get_or_init(|| {
        // SAFETY: find_export looks up a loaded module's exported function.
        let bind = unsafe { sys::find_export(c"bind_http_client".as_ptr() as *mut c_char, 0, 0) }?;
        // SAFETY: http_client exports bind_http_client with this signature.
        let bind: unsafe extern "C" fn(*mut sys::httpc_api_t) -> c_int = unsafe { std::mem::transmute(bind) };
        let mut api = sys::httpc_api_t::default();
        // SAFETY: fills `api`.
        (unsafe { bind(&mut api) } == 0).then_some(Api(api))
    })
    .as_ref()
    .map(|a| &a.0)
}

/// Fixup of `sip_trace_http_query` with `N` parameters: the last is the
/// variable that gets the result, the others are strings.
unsafe extern "C" fn fixup_http_query<const N: c_int>(param: *mut *mut c_void, param_no: c_int) -> c_int {
    guard("sip_trace_http_query() fixup", -1, || {
        if param_no != N {
            // SAFETY: the core's fixup for string-or-pseudo-variable values.
            return unsafe { sys::fixup_spve_all(param, param_no) };
        }
        if api().is_none() {
            crate::log_error!(
                "sip_trace_http_query() needs the http_client module: loadmodule \"http_client.so\""
            );
            return -1;
        }
        // SAFETY: before its fixup, a parameter is the config's string.
        let text = unsafe { CStr::from_ptr(*param as *const c_char) }.to_string_lossy().into_owned();
        let mut name = sys::str_ { s: text.as_ptr() as *mut c_char, len: text.len() as c_int };
        // SAFETY: the core parses and caches the spec, and keeps it.
        let spec = unsafe { sys::pv_cache_get(&mut name) };
        // SAFETY: a spec from the cache lives as long as the process.
        if !unsafe { spec.as_ref() }.is_some_and(|s| s.setf.is_some()) {
            crate::log_error!("sip_trace_http_query(): '{text}' is not a variable that can be set");
            return -1;
        }
        // SAFETY: the parameter slot now holds the cached spec.
        unsafe { *param = spec as *mut c_void };
        0
    })
}

/// Frees nothing for the result: the spec belongs to the core's cache.
unsafe extern "C" fn free_fixup_http_query<const N: c_int>(
    param: *mut *mut c_void,
    param_no: c_int,
) -> c_int {
    if param_no == N {
        return 0;
    }
    // SAFETY: the other parameters were fixed by fixup_spve_all.
    unsafe { sys::fixup_free_spve_all(param, param_no) }
}

unsafe extern "C" fn w_http_query2(msg: *mut sys::sip_msg, url: *mut c_char, result: *mut c_char) -> c_int {
    guard("sip_trace_http_query()", -1, || unsafe { query_from_script(msg, url, None, None, result) })
}

unsafe extern "C" fn w_http_query3(
    msg: *mut sys::sip_msg,
    url: *mut c_char,
    post: *mut c_char,
    result: *mut c_char,
) -> c_int {
    guard("sip_trace_http_query()", -1, || unsafe { query_from_script(msg, url, Some(post), None, result) })
}

unsafe extern "C" fn w_http_query4(
    msg: *mut sys::sip_msg,
    url: *mut c_char,
    post: *mut c_char,
    hdrs: *mut c_char,
    result: *mut c_char,
) -> c_int {
    guard("sip_trace_http_query()", -1, || unsafe {
        query_from_script(msg, url, Some(post), Some(hdrs), result)
    })
}

/// # Safety
/// The string parameters were fixed by fixup_spve_all, `result` holds a
/// writable spec, `msg` is live.
unsafe fn query_from_script(
    msg: *mut sys::sip_msg,
    url: *mut c_char,
    post: Option<*mut c_char>,
    hdrs: Option<*mut c_char>,
    result: *mut c_char,
) -> c_int {
    let value = |p: *mut c_char| {
        let mut v = sys::str_ { s: std::ptr::null_mut(), len: 0 };
        // SAFETY: per the contract.
        (unsafe { sys::get_str_fparam(&mut v, msg, p as *mut sys::fparam_t) } == 0)
            .then(|| unsafe { net::str_bytes(&v) }.unwrap_or_default().to_vec())
    };
    let Some(url) = value(url).filter(|u| !u.is_empty()) else {
        crate::log_warn!("sip_trace_http_query(): the URL has no value");
        return -1;
    };
    let post = post.and_then(value).unwrap_or_default();
    let hdrs = hdrs.and_then(value).unwrap_or_default();
    // SAFETY: the fixup stored a writable spec.
    let Some(spec) = (unsafe { (result as *mut sys::pv_spec_t).as_mut() }) else { return -1 };
    // SAFETY: per the contract.
    unsafe { query(msg, &url, &post, &hdrs, spec) }
}

/// Runs the query, sets the result variable, and traces both ends when the
/// current call asks for REST records. Returns what http_client_query()
/// returns: the HTTP status, or -1.
///
/// # Safety
/// `msg` must be live and `spec` writable.
pub unsafe fn query(
    msg: *mut sys::sip_msg,
    url: &[u8],
    post: &[u8],
    hdrs: &[u8],
    spec: &mut sys::pv_spec_t,
) -> c_int {
    let Some(run) = api().and_then(|a| a.http_client_query) else {
        crate::log_warn!("sip_trace_http_query(): the http_client module is not loaded");
        return -1;
    };
    let (Ok(c_url), Ok(c_post), Ok(c_hdrs)) = (CString::new(url), CString::new(post), CString::new(hdrs))
    else {
        crate::log_warn!("sip_trace_http_query(): an argument holds a NUL byte");
        return -1;
    };
    let method: &[u8] = if post.is_empty() { b"GET" } else { b"POST" };
    let id = crate::core::event::new_correlation_id("rest").into_bytes();
    call_context::with_current(TraceTypes::REST, |call| {
        let mut payload = JsonObject::new();
        payload
            .string("first_line", &[method, b" ", url, b" HTTP/1.1"].concat())
            .string("method", method)
            .string("url", url);
        if !post.is_empty() {
            payload.string("payload", post);
        }
        send(call, &id, url, Direction::Out, payload.finish());
    });
    let mut body = sys::str_ { s: std::ptr::null_mut(), len: 0 };
    let opt = |c: &CString, given: &[u8]| {
        if given.is_empty() {
            std::ptr::null_mut()
        } else {
            c.as_ptr() as *mut c_char
        }
    };
    // SAFETY: NUL-terminated arguments that outlive the call; http_client
    // allocates the body in pkg memory, freed below.
    let status =
        unsafe { run(msg, c_url.as_ptr() as *mut c_char, &mut body, opt(&c_post, post), opt(&c_hdrs, hdrs)) };
    // SAFETY: a body http_client filled, or null.
    let reply = unsafe { net::str_bytes(&body) }.unwrap_or_default();
    call_context::with_current(TraceTypes::REST, |call| {
        let mut payload = JsonObject::new();
        let code = status.to_string();
        payload.string("first_line", format!("HTTP/1.1 {code}").as_bytes()).string("status", code.as_bytes());
        if !reply.is_empty() {
            payload.string("payload", crate::core::event::excerpt(reply, MAX_BODY));
        }
        send(call, &id, url, Direction::In, payload.finish());
    });
    let mut value = sys::pv_value_t { rs: body, ri: 0, flags: sys::PV_VAL_STR as c_int };
    if let Some(set) = spec.setf {
        // SAFETY: a writable spec, set as http_client sets its result.
        unsafe { set(msg, &mut spec.pvp, sys::EQ_T as c_int, &mut value) };
    }
    if !body.s.is_null() {
        // SAFETY: http_client allocated it in pkg memory.
        unsafe { sys::siptrace_shim_pkg_free(body.s as *mut c_void) };
    }
    if status == 0 {
        -1
    } else {
        status
    }
}

/// One REST record: `Out` the request, toward the server; `In` its reply.
fn send(call: &CallContext, id: &[u8], url: &[u8], direction: Direction, payload: String) {
    let outputs = tracer::hep_outputs(&call.target);
    if outputs.is_empty() {
        return;
    }
    let server = crate::core::event::server_address(url);
    let local_ip = match (call.dst.addr.ip(), server.ip()) {
        (IpAddr::V4(ip), IpAddr::V4(_)) => IpAddr::V4(ip),
        (IpAddr::V6(ip), IpAddr::V6(_)) => IpAddr::V6(ip),
        (_, IpAddr::V4(_)) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        (_, IpAddr::V6(_)) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let local = Endpoint::new(Transport::Tcp, local_ip, 0);
    let server = Endpoint { transport: Transport::Tcp, addr: server };
    let (src, dst) = match direction {
        Direction::Out => (local, server),
        Direction::In => (server, local),
    };
    let extra = crate::core::event::sip_correlation(&call.call_id);
    let record = TraceRecord {
        time: Timestamp::now(),
        direction,
        src,
        dst,
        payload: payload.as_bytes(),
        correlation_id: Some(id),
        extra_correlation: Some(extra.as_bytes()),
        proto_type: proto_type::REST,
        traced_users: None,
    };
    tracer::enqueue(&record, &outputs);
}

type Fn2 = unsafe extern "C" fn(*mut sys::sip_msg, *mut c_char, *mut c_char) -> c_int;
type Fn3 = unsafe extern "C" fn(*mut sys::sip_msg, *mut c_char, *mut c_char, *mut c_char) -> c_int;
type Fn4 =
    unsafe extern "C" fn(*mut sys::sip_msg, *mut c_char, *mut c_char, *mut c_char, *mut c_char) -> c_int;
type Fixup = unsafe extern "C" fn(*mut *mut c_void, c_int) -> c_int;

/// The three forms of `sip_trace_http_query`, for the cmd table.
pub const fn cmd_exports() -> [sys::cmd_export_t; 3] {
    const fn entry(function: Fn2, n: c_int, fixup: Fixup, free: Fixup) -> sys::cmd_export_t {
        sys::cmd_export_t {
            name: c"sip_trace_http_query".as_ptr() as *mut c_char,
            function: Some(function),
            param_no: n,
            fixup: Some(fixup),
            free_fixup: Some(free),
            flags: sys::ANY_ROUTE,
        }
    }
    // SAFETY: Kamailio calls a function with as many parameters as its
    // param_no says; the declared type is only the table's slot type.
    let (w3, w4) = unsafe {
        (std::mem::transmute::<Fn3, Fn2>(w_http_query3), std::mem::transmute::<Fn4, Fn2>(w_http_query4))
    };
    [
        entry(w_http_query2, 2, fixup_http_query::<2>, free_fixup_http_query::<2>),
        entry(w3, 3, fixup_http_query::<3>, free_fixup_http_query::<3>),
        entry(w4, 4, fixup_http_query::<4>, free_fixup_http_query::<4>),
    ]
}
