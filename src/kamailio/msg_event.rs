//! `event_route[siptrace:msg]` and `$siptrace(name)`: a route the config
//! runs for each message `trace_mode` is about to trace, where `drop()`
//! keeps that message out of the traces, and where `$siptrace(...)` gives
//! its ends and direction.
//!
//! As in the C module, the route runs for the core's network events (the
//! `trace_mode` traces), on a copy of the message parsed for it. A config
//! in a KEMI language names a function instead (`evcb_msg`), which runs
//! the same way. A config without either pays one check per message.

use crate::core::endpoint::Endpoint;
use crate::core::record::{Direction, TraceRecord};
use crate::kamailio::host::net::proto_number;
use crate::kamailio::host::pv::{PvClass, PvValue};
use crate::kamailio::host::route::{self, EventRoute, RouteOutcome};
use crate::kamailio::state::State;
use std::cell::Cell;
use std::ffi::{CStr, CString};

/// The event, and the name of its route.
const EVENT: &CStr = c"siptrace:msg";

thread_local! {
    // What the route is running for; Kamailio's processes are single-threaded.
    static CURRENT: Cell<Option<(Endpoint, Endpoint, Direction)>> = const { Cell::new(None) };
}

/// Finds the route, if the config has one, and takes the `evcb_msg` KEMI
/// function, which the route wins over, its name kept for the life of the
/// process. Called in mod_init.
pub fn init(evcb_msg: Option<&str>) -> (Option<EventRoute>, Option<&'static CStr>) {
    // NUL-terminated: engines take the name as a C string.
    let callback =
        evcb_msg.map(|name| &*Box::leak(CString::new(name).unwrap_or_default().into_boxed_c_str()));
    (EventRoute::find(EVENT), callback)
}

/// Whether `record` is to be traced: false when the route dropped it.
pub fn keeps(state: &State, record: &TraceRecord<'_>) -> bool {
    if state.msg_route.is_none() && state.msg_callback.is_none() {
        return true;
    }
    CURRENT.with(|c| c.set(Some((record.src, record.dst, record.direction))));
    // A message the route cannot parse is traced without running it; the
    // C module traces nothing of it then (see the guide).
    let outcome = route::run_on_copy(record.payload, state.msg_route, state.msg_callback, EVENT);
    CURRENT.with(|c| c.set(None));
    outcome != RouteOutcome::Dropped
}

/// The names `$siptrace(...)` takes.
const NAMES: [&str; 11] = [
    "src_addr",
    "dst_addr",
    "src_host",
    "dst_host",
    "src_port",
    "dst_port",
    "src_proto",
    "dst_proto",
    "src_hostip",
    "dst_hostip",
    "direction",
];

/// `$siptrace(name)`.
pub struct SiptracePv;

impl PvClass for SiptracePv {
    fn name_index(name: &[u8]) -> Result<usize, String> {
        NAMES.iter().position(|n| n.as_bytes() == name).ok_or_else(|| {
            format!(
                "$siptrace({}): unknown name; expected one of {}",
                String::from_utf8_lossy(name),
                NAMES.join(", ")
            )
        })
    }

    fn value(index: usize) -> PvValue {
        // Outside the route there is no traced message.
        let Some((src, dst, direction)) = CURRENT.with(Cell::get) else { return PvValue::Null };
        let end = if index % 2 == 0 { src } else { dst };
        match index {
            0 | 1 => PvValue::Text(end.to_string()),
            2 | 3 => PvValue::Text(match end.addr.ip() {
                std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                ip => ip.to_string(),
            }),
            4 | 5 => PvValue::Int(i32::from(end.addr.port())),
            // The name, with Kamailio's protocol number as the integer
            // value, so that both `== "udp"` and `== 1` compare.
            6 | 7 => PvValue::TextAndInt(end.transport.name(), proto_number(end.transport)),
            8 | 9 => PvValue::Text(end.addr.ip().to_string()),
            10 => PvValue::Text(direction.as_str().to_string()),
            _ => PvValue::Null,
        }
    }
}
