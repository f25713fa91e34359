//! The tracer's MI commands, as OpenSIPS's tracer has them: `trace` shows
//! the trace ids and switches tracing on and off, globally or per id;
//! `trace_start` and `trace_stop` add and remove dynamic trace ids
//! (`state::dynamic`). exports.rs lists them with their parameters.

use crate::core::dest::{DestUri, Destination};
use crate::core::endpoint::Transport;
use crate::opensips::host::mi::{Handler, Item, Params, Response};
use crate::opensips::state::dynamic::{self, Entry, Filter, FilterKind, Target};
use crate::opensips::state::{self, State};
use crate::opensips::{hep, script, sinks, trace_api};
use std::sync::atomic::{AtomicBool, Ordering};

fn internal_error() -> Response {
    Response::error(500, "Internal error", "")
}

/// Sets `switch` as the `mode` parameter says: `on` or `off`, in any case.
fn switch(params: &Params<'_>, switch: &AtomicBool) -> Response {
    let on = match params.string(c"mode").map(|m| m.to_ascii_lowercase()).as_deref() {
        Some("on") => true,
        Some("off") => false,
        _ => return Response::error(500, "Bad parameter value", "trace mode should be 'on' or 'off'"),
    };
    switch.store(on, Ordering::Relaxed);
    Response::ok()
}

/// The destinations of the trace ids `which` selects, the static ones
/// after the dynamic ones; with the global switch when `global`.
fn destinations(state: &State, global: bool, which: impl Fn(usize) -> bool) -> Response {
    Response::object(|object| {
        if global {
            let on = state.shared.trace_on.load(Ordering::Relaxed);
            object.add_string("global", if on { "on" } else { "off" });
        }
        list(state, object.add_array("trace destinations"), which);
    })
}

fn list(state: &State, array: Item<'_>, which: impl Fn(usize) -> bool) {
    for (slot, entry) in state.dynamic.snapshot() {
        if !which(state.ids.len() + slot) {
            continue;
        }
        let item = array.add_object();
        item.add_string("name", entry.name());
        // Like static ones, a file or syslog destination shows no type or uri.
        match entry.target {
            Target::Hep | Target::Sip => {
                item.add_string("type", if entry.target == Target::Hep { "HEP" } else { "SIP" });
                item.add_string("uri", &entry.dest.addr.to_string());
            }
            Target::File | Target::Syslog { .. } => {}
        }
        item.add_string("state", "dynamic");
        let filters = item.add_array("filters");
        for f in entry.filters() {
            let kind = match f.kind {
                FilterKind::Caller => "caller",
                FilterKind::Callee => "callee",
                FilterKind::Ip => "ip",
            };
            filters.add_object().add_string(kind, &String::from_utf8_lossy(f.text()));
        }
    }
    for entry in state.listing.iter().filter(|e| which(e.id)) {
        let item = array.add_object();
        item.add_string("name", &state.ids[entry.id].0);
        if !entry.kind.is_empty() {
            item.add_string("type", entry.kind);
            item.add_string("uri", &entry.uri);
        }
        // The id's own switch, whatever the global one says.
        let on = state.switches.get(entry.id).is_some_and(|s| s.load(Ordering::Relaxed));
        item.add_string("state", if on { "on" } else { "off" });
    }
}

/// `trace`: every trace id, and the global switch.
pub struct ShowAll;

impl Handler for ShowAll {
    const NAME: &'static str = "MI trace";
    fn run(_params: &Params<'_>) -> Response {
        match state::get() {
            Some(state) => destinations(state, true, |_| true),
            None => internal_error(),
        }
    }
}

/// `trace id=...`: one trace id, static or dynamic.
pub struct ShowId;

impl Handler for ShowId {
    const NAME: &'static str = "MI trace";
    fn run(params: &Params<'_>) -> Response {
        let Some(state) = state::get() else { return internal_error() };
        let Some(name) = params.string(c"id") else { return Response::error(400, "Bad trace id value", "") };
        if let Some(index) = state.id_index(&name) {
            return destinations(state, false, |i| i == index);
        }
        match state.dynamic.snapshot().into_iter().find(|(_, e)| e.name() == name) {
            Some((slot, _)) => destinations(state, false, |i| i == state.ids.len() + slot),
            None => Response::error(400, "Bad trace id value", ""),
        }
    }
}

/// `trace mode=on|off`: the global switch.
pub struct SetGlobal;

impl Handler for SetGlobal {
    const NAME: &'static str = "MI trace";
    fn run(params: &Params<'_>) -> Response {
        match state::get() {
            Some(state) => switch(params, &state.shared.trace_on),
            None => internal_error(),
        }
    }
}

/// `trace id=... mode=on|off`: a static trace id's switch.
pub struct SetId;

impl Handler for SetId {
    const NAME: &'static str = "MI trace";
    fn run(params: &Params<'_>) -> Response {
        let Some(state) = state::get() else { return internal_error() };
        let Some(index) = params.string(c"id").and_then(|id| state.id_index(&id)) else {
            return Response::error(400, "Bad parameter value", "");
        };
        switch(params, &state.switches[index])
    }
}

/// `trace_start id=... uri=... [filter=[...]] [scope=...] [type=...]`.
pub struct Start;

impl Handler for Start {
    const NAME: &'static str = "MI trace_start";
    fn run(params: &Params<'_>) -> Response {
        let Some(state) = state::get() else { return internal_error() };
        let (Some(name), Some(uri)) = (params.string(c"id"), params.string(c"uri")) else {
            return Response::error(400, "Bad parameter value", "");
        };
        if state.id_index(&name).is_some() {
            return Response::error(500, "Bad parameter value", "trace id already used");
        }
        // The dialog scope and every record type when not given, as
        // OpenSIPS's tracer does.
        let scope = params.string(c"scope").and_then(|s| script::scope_value(s.as_bytes())).unwrap_or(3);
        let types =
            params.string(c"type").and_then(|t| trace_api::mask_of(t.as_bytes()).ok()).unwrap_or(u32::MAX);
        let entry = match entry(state, &name, &uri, scope, types, &params.strings(c"filter")) {
            Ok(entry) => entry,
            Err((code, text, details)) => return Response::error(code, text, &details),
        };
        match state.dynamic.start(entry) {
            Ok(()) => Response::ok(),
            Err(details) => Response::error(500, "Bad parameter value", &details),
        }
    }
}

/// `trace_stop id=...`.
pub struct Stop;

impl Handler for Stop {
    const NAME: &'static str = "MI trace_stop";
    fn run(params: &Params<'_>) -> Response {
        let Some(state) = state::get() else { return internal_error() };
        match params.string(c"id") {
            Some(name) if state.dynamic.stop(&name) => Response::ok(),
            _ => Response::error(400, "Bad parameter value", ""),
        }
    }
}

/// A dynamic trace id from `trace_start`'s parameters, or the error to
/// answer.
fn entry(
    state: &State,
    name: &str,
    uri: &str,
    scope: usize,
    types: u32,
    filters: &[String],
) -> Result<Entry, (i32, &'static str, String)> {
    use dynamic::{FILTERS, NAME, URI};
    let bad = |details: String| (500, "Bad parameter value", details);
    if name.is_empty() || name.len() > NAME || uri.len() > URI {
        return Err(bad(format!("the id must be 1 to {NAME} bytes and the uri at most {URI}")));
    }
    let scheme = |s: &str| crate::core::trace_id::has_scheme(uri, s);
    let nowhere = Destination { addr: ([0, 0, 0, 0], 0).into(), transport: Transport::Udp };
    let mut path = "";
    let (dest, target) = if scheme("hep:") {
        (hep::new_dynamic(name, &uri[4..]).map_err(bad)?, Target::Hep)
    } else if scheme("sip:") {
        let dest = DestUri::parse_supported(uri).and_then(|d| d.resolve()).map_err(|e| bad(e.to_string()))?;
        (dest, Target::Sip)
    } else if scheme("file:") {
        // Made now if need be, so that a path that cannot be written is
        // refused here rather than costing every trace.
        path = uri[5..].trim();
        sinks::check_file(path, state.defaults.file_mode).map_err(bad)?;
        (nowhere, Target::File)
    } else if scheme("syslog") {
        let spec = crate::core::trace_text::parse_syslog(uri).map_err(|e| bad(format!("'{uri}': {e}")))?;
        let facility = spec.facility.unwrap_or(state.defaults.syslog_facility);
        let level = spec.level.unwrap_or(state.defaults.syslog_level);
        (nowhere, Target::Syslog { facility, level })
    } else if uri.contains("://") {
        return Err((406, "DB not acceptable", "dynamic DB tracing is not yet available".into()));
    } else {
        return Err(bad(format!("'{uri}' is neither hep:, sip:, file: nor syslog")));
    };
    if filters.len() > FILTERS {
        return Err(bad(format!("at most {FILTERS} filters")));
    }
    let filters = filters.iter().map(|f| Filter::parse(f)).collect::<Result<Vec<_>, _>>().map_err(bad)?;
    Ok(Entry::new(name, dest, target, path, scope, types, &filters))
}
