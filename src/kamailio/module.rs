//! The module's life cycle in Kamailio: parameters while the config is
//! read, mod_init in the main process, child_init in every forked process.

use crate::core::config::{redact_url, Config, ConfigError, ParamValue};
use crate::core::dest::{DestUri, Destination};
use crate::kamailio::{db, events, shared, stats, sys, tracer};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, OnceLock};

/// What mod_init settled. Read-only afterwards, and inherited by every
/// process Kamailio forks.
pub struct Module {
    pub config: Config,
    /// `duplicate_uri`, resolved at startup.
    pub duplicate: Option<Destination>,
}

static MODULE: OnceLock<Module> = OnceLock::new();

/// Parameters as Kamailio reads them from the config, before mod_init.
static PENDING: Mutex<Option<Config>> = Mutex::new(None);

/// Destination URIs that were resolved at startup, by their text.
static RESOLVED: Mutex<Option<HashMap<String, Destination>>> = Mutex::new(None);

pub fn get() -> Option<&'static Module> {
    MODULE.get()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves consistent data: each write is
    // a single assignment.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn set_param(name: &str, value: ParamValue<'_>) -> Result<(), ConfigError> {
    lock(&PENDING).get_or_insert_with(Config::default).set(name, value)
}

/// Parses and resolves a destination URI while the server starts; it is
/// then found by [`destination`] without another lookup.
pub fn resolve_at_startup(text: &str) -> Result<Destination, String> {
    let dest = DestUri::parse_supported(text).and_then(|uri| uri.resolve()).map_err(|e| e.0)?;
    crate::log_debug!("destination {text} resolved to {}", dest.addr);
    lock(&RESOLVED).get_or_insert_with(HashMap::new).insert(text.to_string(), dest);
    Ok(dest)
}

/// The destination for a URI given at run time: one resolved at startup,
/// or an IP literal. Host names are never looked up per message.
pub fn destination(text: &str) -> Result<Destination, String> {
    if let Some(dest) = lock(&RESOLVED).as_ref().and_then(|m| m.get(text)) {
        return Ok(*dest);
    }
    let uri = DestUri::parse_supported(text).map_err(|e| format!("bad destination URI '{text}': {}", e.0))?;
    uri.literal().ok_or_else(|| {
        format!("destination '{text}' names a host that was not resolved at startup; use an IP address")
    })
}

pub fn mod_init() -> Result<(), String> {
    let config = lock(&PENDING).take().unwrap_or_default();
    config.validate().map_err(|e| e.to_string())?;
    shared::init(config.trace_on)?;
    stats::register()?;
    if config.uses_database() {
        db::bind(&config)?;
    }
    let duplicate = match &config.duplicate_uri {
        Some(p) => Some(
            resolve_at_startup(&p.text)
                .map_err(|e| format!("modparam 'duplicate_uri' has a bad value '{}': {e}", p.text))?,
        ),
        None => None,
    };
    refuse_unimplemented_event_route()?;
    let core_events = config.init_mode.core_events() && config.trace_mode.any();
    if core_events {
        events::register()?;
    }
    crate::log_info!(
        "tracing {} (trace_on={}), database: {}, duplicate_uri: {}",
        if core_events { "core events and script calls" } else { "script calls" },
        config.trace_on as u8,
        if config.uses_database() {
            redact_url(config.db_url.as_deref().unwrap_or("default"))
        } else {
            "off".into()
        },
        duplicate.map_or("none".to_string(), |d| d.addr.to_string()),
    );
    MODULE.set(Module { config, duplicate }).map_err(|_| "initialized twice".to_string())
}

/// `event_route[siptrace:msg]` runs for every traced message in the C
/// module; running a config that has one without it would trace otherwise.
fn refuse_unimplemented_event_route() -> Result<(), String> {
    let mut name = *b"siptrace:msg\0";
    // SAFETY: event_rt is the core's route table, complete once the config
    // is parsed; the name is NUL-terminated.
    let idx =
        unsafe { sys::route_lookup(std::ptr::addr_of_mut!(sys::event_rt), name.as_mut_ptr() as *mut _) };
    if idx >= 0 {
        return Err("event_route[siptrace:msg] is not implemented yet by siptrace-rs; remove it, or keep \
                    Kamailio's C siptrace module for this configuration"
            .into());
    }
    Ok(())
}

pub fn child_init(rank: i32) -> Result<(), String> {
    if rank == sys::PROC_INIT || rank == sys::PROC_MAIN as i32 || rank == sys::PROC_TCP_MAIN {
        return Ok(());
    }
    let Some(module) = get() else { return Ok(()) };
    if module.config.uses_database() {
        tracer::set_db(db::connect()?);
    }
    Ok(())
}

pub fn destroy() {
    shared::free();
}
