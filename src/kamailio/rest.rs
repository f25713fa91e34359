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
use crate::kamailio::host::cmd::{ParamKind, Params, ScriptFunction};
use crate::kamailio::host::msg::Msg;
use crate::kamailio::host::pv::Variable;
use crate::kamailio::state::{self, State};
use crate::kamailio::tracer;
use std::ffi::{CStr, CString};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::raw::c_int;

/// The most reply body bytes a reply record carries.
const MAX_BODY: usize = 4096;

/// `sip_trace_http_query(url, [post, [hdrs,]] result)`: the last
/// parameter is the variable that gets the result, the others are strings.
pub struct HttpQuery;

impl ScriptFunction for HttpQuery {
    const NAME: &'static CStr = c"sip_trace_http_query";

    fn kind(index: usize, count: usize) -> ParamKind {
        if index == count {
            ParamKind::Variable
        } else {
            ParamKind::Text
        }
    }

    fn check(index: usize, count: usize, _text: &str) -> Result<usize, String> {
        if index == count && state::get().and_then(|s| s.http).is_none() {
            return Err(
                "sip_trace_http_query() needs the http_client module: loadmodule \"http_client.so\"".into()
            );
        }
        Ok(0)
    }

    fn run(msg: Msg<'_>, params: &Params<'_>) -> c_int {
        let Some(state) = state::get() else { return -1 };
        let count = params.count();
        let Some(url) = params.text(1).filter(|u| !u.is_empty()) else {
            crate::log_warn!("sip_trace_http_query(): the URL has no value");
            return -1;
        };
        let post = if count >= 3 { params.text(2).unwrap_or_default() } else { Vec::new() };
        let hdrs = if count == 4 { params.text(3).unwrap_or_default() } else { Vec::new() };
        let Some(result) = params.variable(count) else { return -1 };
        query(state, msg, &url, &post, &hdrs, result)
    }
}

/// Runs the query, sets the result variable, and traces both ends when the
/// current call asks for REST records. Returns what http_client_query()
/// returns: the HTTP status, or -1.
pub fn query(state: &State, msg: Msg<'_>, url: &[u8], post: &[u8], hdrs: &[u8], result: Variable) -> c_int {
    let Some(http) = state.http else {
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
        send(state, call, &id, url, Direction::Out, payload.finish());
    });
    fn given<'c>(c: &'c CString, text: &[u8]) -> Option<&'c CStr> {
        (!text.is_empty()).then_some(c.as_c_str())
    }
    let (status, body) = http.query(msg, &c_url, given(&c_post, post), given(&c_hdrs, hdrs));
    let reply = body.bytes();
    call_context::with_current(TraceTypes::REST, |call| {
        let mut payload = JsonObject::new();
        let code = status.to_string();
        payload.string("first_line", format!("HTTP/1.1 {code}").as_bytes()).string("status", code.as_bytes());
        if !reply.is_empty() {
            payload.string("payload", crate::core::event::excerpt(reply, MAX_BODY));
        }
        send(state, call, &id, url, Direction::In, payload.finish());
    });
    body.store_in(result, msg);
    if status == 0 {
        -1
    } else {
        status
    }
}

/// One REST record: `Out` the request, toward the server; `In` its reply.
fn send(state: &State, call: &CallContext, id: &[u8], url: &[u8], direction: Direction, payload: String) {
    let outputs = tracer::hep_outputs(state, &call.target);
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
    tracer::enqueue(state, &record, &outputs);
}
