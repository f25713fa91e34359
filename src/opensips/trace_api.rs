//! The tracer's role in OpenSIPS's trace API: the core and modules such as
//! xlog and rest_client ask the tracer whether the message being processed
//! is traced for their kind of record (`check_is_traced`) and hand it the
//! record (`sip_context_trace`), which they fill through the functions of
//! `global_trace_api`. OpenSIPS's tracer passes proto_hep's functions, which
//! send from the SIP worker; here the records go through the queue to the
//! sender like every other trace.
//!
//! Record kinds are registered by name (`sip` first, then `xlog`, `rest`,
//! ...); a kind's position is its bit in `trace()`'s type mask, and its
//! HEP protocol type (from proto_hep) goes in the packet.

use crate::core::counters::DropReason;
use crate::core::endpoint::Endpoint;
use crate::core::event::JsonObject;
use crate::core::record::{Direction, Outputs, Timestamp, TraceRecord};
use crate::core::shared::enqueue;
use crate::ffi::lock;
use crate::opensips::hep;
use crate::opensips::host::hep::HepId;
use crate::opensips::host::msg::Msg;
use crate::opensips::host::script::{self, Messages};
use crate::opensips::host::trace_api::{self as api, Record};
use crate::opensips::state::{self, State};
use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Mutex;

/// The registered kinds: (name, HEP protocol type). Modules register them
/// from their mod_init, before OpenSIPS forks (some after this module's),
/// so this is apart from the state.
static KINDS: Mutex<Vec<(String, i32)>> = Mutex::new(Vec::new());

/// The bit of the `sip` kind, registered first.
pub const SIP_BIT: u32 = 1;

/// The traces active for the message this process works on: for each,
/// (trace id index, kinds mask).
#[derive(Default)]
struct Current {
    msg: u32,
    traces: Vec<(usize, u32)>,
}

thread_local! {
    static CURRENT: RefCell<Current> = RefCell::default();
}

/// Notes that message `msg_id` is traced to trace id `id` for the kinds
/// `types`.
pub fn enter(msg_id: u32, id: usize, types: u32) {
    CURRENT.with_borrow_mut(|c| {
        if c.msg != msg_id {
            *c = Current { msg: msg_id, traces: Vec::new() };
        }
        if !c.traces.contains(&(id, types)) {
            c.traces.push((id, types));
        }
    })
}

/// The mask of `names` (`sip|xlog`), each matched as a prefix of a
/// registered kind, as OpenSIPS's tracer does; or the unknown one.
pub fn mask_of(names: &[u8]) -> Result<u32, String> {
    let kinds = lock(&KINDS);
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
pub fn init() -> Result<(), String> {
    if !api::install::<Api>()? {
        crate::log_warn!(
            "another module provides the trace API; xlog and REST records are not traced by this module"
        );
        return Ok(());
    }
    script::before_script(Messages::RequestsAndReplies, new_message)
}

/// A new message: the traces of the previous one are over.
fn new_message(_msg: &mut Msg) {
    CURRENT.with_borrow_mut(|c| c.traces.clear());
}

/// The bit of the kind whose HEP type is `kind`.
fn bit_of(kind: i32) -> Option<u32> {
    lock(&KINDS).iter().position(|(_, k)| *k == kind).map(|i| 1 << i)
}

/// The trace ids whose traces of the current message take records of `kind`.
fn traces_of(state: &State, kind: i32) -> Vec<usize> {
    if !state.shared.trace_on.load(Ordering::Relaxed) {
        return Vec::new();
    }
    let Some(bit) = bit_of(kind) else { return Vec::new() };
    CURRENT.with_borrow(|c| c.traces.iter().filter(|(_, t)| t & bit != 0).map(|&(i, _)| i).collect())
}

struct Api;

impl api::Tracer for Api {
    fn register_kind(name: &str, kind: i32) -> bool {
        let mut kinds = lock(&KINDS);
        if kinds.len() >= 32 {
            crate::log_error!("too many trace types; '{name}' is not registered");
            return false;
        }
        if !kinds.iter().any(|(k, _)| k == name) {
            kinds.push((name.to_string(), kind));
        }
        true
    }

    fn is_traced(kind: i32) -> bool {
        state::get().is_some_and(|state| !traces_of(state, kind).is_empty())
    }

    fn context(kind: i32, build: &mut dyn FnMut() -> Record) {
        let Some(state) = state::get() else { return };
        for index in traces_of(state, kind).into_iter().filter(|&i| state.id_on(i)) {
            let Some(outputs) = state.outputs(index) else { continue };
            if outputs.hep.is_empty() {
                continue;
            }
            let hep_only = Outputs { hep: outputs.hep.clone(), ..Outputs::default() };
            queue(state, &build(), &hep_only);
        }
    }

    fn send(record: &Record, dest: Option<HepId<'_>>) -> bool {
        let Some(state) = state::get() else { return false };
        let Some(dest) = dest.and_then(|dest| hep::destination_of(state, dest)) else {
            state.report(DropReason::NoDestination, "an unknown hep_id");
            return false;
        };
        let outputs = Outputs { hep: smallvec::smallvec![dest], ..Outputs::default() };
        queue(state, record, &outputs)
    }
}

/// Queues a filled record, shaped as proto_hep would send it.
fn queue(state: &State, record: &Record, outputs: &Outputs) -> bool {
    let (payload, correlation, extra) = match &state.homer5_delimiter {
        // Homer 5 mode: the parts joined, and only the `sip` correlation
        // kept, as the correlation id.
        Some(delimiter) => {
            let payload = if record.parts.is_empty() {
                record.payload.clone()
            } else {
                record.parts.iter().map(|(_, v)| v.as_slice()).collect::<Vec<_>>().join(delimiter.as_slice())
            };
            let sip = record.extra.iter().rev().find(|(k, _)| k == "sip").map(|(_, v)| v.clone());
            (payload, sip.or_else(|| record.correlation.clone()), None)
        }
        None => {
            let payload = if record.parts.is_empty() {
                record.payload.clone()
            } else {
                json(&record.parts).into_bytes()
            };
            let extra = (!record.extra.is_empty()).then(|| json(&record.extra).into_bytes());
            (payload, record.correlation.clone(), extra)
        }
    };
    // proto_hep's stand-ins when a record has no address.
    let from = record.from.unwrap_or_else(|| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 0));
    let to = record.to.unwrap_or_else(|| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), 0));
    let trace = TraceRecord {
        time: Timestamp::now(),
        direction: Direction::Out,
        src: Endpoint::new(record.transport, from.ip(), from.port()),
        dst: Endpoint::new(record.transport, to.ip(), to.port()),
        payload: &payload,
        correlation_id: correlation.as_deref(),
        extra_correlation: extra.as_deref(),
        proto_type: record.kind as u8,
        traced_users: None,
    };
    match enqueue(&state.queues, &state.shared.counters, &trace, outputs, None) {
        Ok(()) => true,
        Err(e) => {
            state.report(e.reason, &e.detail);
            false
        }
    }
}

/// A JSON object of named values.
fn json(fields: &[(String, Vec<u8>)]) -> String {
    let mut json = JsonObject::new();
    for (k, v) in fields {
        json.string(k, v);
    }
    json.finish()
}
