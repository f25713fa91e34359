//! The module's life cycle in Kamailio: parameters while the config is
//! read, mod_init in the main process, child_init in every forked process,
//! and the sender processes forked from the main one.

use crate::core::sql::redact_url;
use crate::kamailio::config::{Config, ConfigError, InitMode, ParamValue};
use crate::core::dest::{DestUri, Destination};
use crate::core::endpoint::Transport;
use crate::core::ring::Ring;
use crate::core::sender::tls;
use crate::kamailio::{
    call_context, connections, db, dialog, events, log_lines, msg_event, rpc_trace, send_socket, sender,
    shared, stats, sys, tracer, transaction, users,
};
use smallvec::SmallVec;
use std::collections::HashMap;
use std::os::raw::c_char;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, OnceLock};

/// What mod_init settled. Read-only afterwards, and inherited by every
/// process Kamailio forks.
pub struct Module {
    pub config: Config,
    /// The `duplicate_uri` destinations, resolved at startup.
    pub duplicates: SmallVec<[Destination; 2]>,
    /// One queue per sender process, in shared memory.
    pub queues: Vec<Ring>,
}

static MODULE: OnceLock<Module> = OnceLock::new();

/// Parameters as Kamailio reads them from the config, before mod_init.
static PENDING: Mutex<Option<Config>> = Mutex::new(None);

/// Destinations resolved at startup: by the URI text, and for TLS the name
/// the collector's certificate must carry.
#[derive(Default)]
struct Resolved {
    by_text: HashMap<String, Destination>,
    tls_names: HashMap<Destination, String>,
}

static RESOLVED: Mutex<Option<Resolved>> = Mutex::new(None);

pub fn get() -> Option<&'static Module> {
    MODULE.get()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves consistent data: each write is
    // a single insertion or assignment.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn set_param(name: &str, value: ParamValue<'_>) -> Result<(), ConfigError> {
    lock(&PENDING).get_or_insert_with(Config::default).set(name, value)
}

/// The TLS CA file in force: the configured one, or the default before
/// mod_init has run.
fn tls_ca_file() -> String {
    match get() {
        Some(m) => m.config.settings.senders.tls_ca_file.clone(),
        None => lock(&PENDING).get_or_insert_with(Config::default).settings.senders.tls_ca_file.clone(),
    }
}

/// Parses and resolves a destination URI while the server starts; it is
/// then found by [`destination`] without another lookup. A TLS
/// destination also needs a usable CA file.
pub fn resolve_at_startup(text: &str) -> Result<Destination, String> {
    let uri = DestUri::parse_supported(text).map_err(|e| e.0)?;
    let dest = uri.resolve().map_err(|e| e.0)?;
    if dest.transport == Transport::Tls {
        tls::server_name(&uri.host_text())?;
        tls::client_config(Path::new(&tls_ca_file()))?;
    }
    crate::log_debug!("destination {text} resolved to {}", dest.addr);
    let mut resolved = lock(&RESOLVED);
    let resolved = resolved.get_or_insert_with(Resolved::default);
    resolved.by_text.insert(text.to_string(), dest);
    if dest.transport == Transport::Tls {
        resolved.tls_names.insert(dest, uri.host_text());
    }
    Ok(dest)
}

/// The destination for a URI given at run time: one resolved at startup,
/// or an IP literal. Host names are never looked up per message.
pub fn destination(text: &str) -> Result<Destination, String> {
    if let Some(dest) = lock(&RESOLVED).as_ref().and_then(|r| r.by_text.get(text)) {
        return Ok(*dest);
    }
    let uri = DestUri::parse_supported(text).map_err(|e| format!("bad destination URI '{text}': {}", e.0))?;
    uri.literal().ok_or_else(|| {
        format!("destination '{text}' names a host that was not resolved at startup; use an IP address")
    })
}

/// The name a TLS collector's certificate must carry.
pub fn tls_name(dest: Destination) -> String {
    lock(&RESOLVED)
        .as_ref()
        .and_then(|r| r.tls_names.get(&dest).cloned())
        .unwrap_or_else(|| dest.addr.ip().to_string())
}

pub fn mod_init() -> Result<(), String> {
    let config = lock(&PENDING).take().unwrap_or_default();
    config.validate().map_err(|e| e.to_string())?;
    shared::init(config.trace_on)?;
    stats::register()?;
    if config.uses_database() {
        db::bind(&config)?;
        db::check_at_startup()?;
    }
    let mut duplicates: SmallVec<[Destination; 2]> = SmallVec::new();
    for p in &config.duplicate_uri {
        let dest = resolve_at_startup(&p.text)
            .map_err(|e| format!("modparam 'duplicate_uri' has a bad value '{}': {e}", p.text))?;
        duplicates.push(dest);
    }
    msg_event::init(config.evcb_msg.as_deref());
    let queues = (0..config.settings.senders.count)
        .map(|_| shared::new_queue(config.settings.senders.queue_bytes))
        .collect::<Result<Vec<Ring>, String>>()?;
    let count = config.settings.senders.count as i32;
    // SAFETY: plain registration calls, made from mod_init as required.
    unsafe {
        if sys::register_procs(count) < 0 {
            return Err("cannot register the sender processes".into());
        }
        sys::cfg_register_child(count);
    }
    send_socket::mod_init(&config)?;
    let core_events = config.init_mode.core_events() && config.trace_mode.any();
    if core_events {
        events::register()?;
    }
    if config.init_mode != InitMode::CoreEvents {
        transaction::mod_init(config.trace_sl_acks)?;
        dialog::mod_init()?;
        call_context::mod_init()?;
        connections::mod_init(config.trace_net)?;
        // In the main process, so that every process Kamailio forks has it.
        log_lines::install();
        if let Some(spec) = &config.traced_user_avp {
            users::init(spec)?;
        }
        if let Some(spec) = &config.trace_table_avp {
            tracer::init_table_avp(spec)?;
        }
    }
    if config.db_mode_asked != 0 && config.uses_database() {
        crate::log_info!(
            "trace_db_mode {} asks for {} inserts: rows are always written by the sender processes, in batches",
            config.db_mode_asked,
            if config.db_mode_asked == 1 { "delayed" } else { "asynchronous" }
        );
    }
    crate::log_info!(
        "tracing {} (trace_on={}), database: {}, duplicate_uri: {}, {} sender(s) with {} KiB queues",
        if core_events { "core events and script calls" } else { "script calls" },
        config.trace_on as u8,
        if config.uses_database() {
            redact_url(config.db_url.as_deref().unwrap_or("default"))
        } else {
            "off".into()
        },
        if duplicates.is_empty() {
            "none".to_string()
        } else {
            duplicates
                .iter()
                .map(|d| format!("{}:{}", d.transport.name(), d.addr))
                .collect::<Vec<_>>()
                .join(", ")
        },
        config.settings.senders.count,
        config.settings.senders.queue_bytes / 1024,
    );
    MODULE.set(Module { config, duplicates, queues }).map_err(|_| "initialized twice".to_string())
}

/// Before forking (PROC_INIT), patches the RPC commands to trace; in the
/// main process, forks the senders; other processes need nothing.
pub fn child_init(rank: i32) -> Result<(), String> {
    let Some(module) = get() else { return Ok(()) };
    if rank == sys::PROC_INIT && module.config.trace_rpc {
        return rpc_trace::install(&module.config.trace_rpc_filter);
    }
    if rank != sys::PROC_MAIN as i32 {
        return Ok(());
    }
    for index in 0..module.queues.len() {
        let desc = std::ffi::CString::new(format!("siptrace sender {index}")).unwrap_or_default();
        // SAFETY: forking from child_init(PROC_MAIN), as the process API
        // requires; the description outlives the call.
        let pid = unsafe { sys::fork_process(sys::PROC_NOCHLDINIT, desc.as_ptr() as *mut c_char, 0) };
        if pid < 0 {
            return Err(format!("cannot fork sender {index}"));
        }
        if pid == 0 {
            // In the sender, which never comes back here: returning would
            // run the main process's error path in this child.
            sender::run(module, index);
        }
    }
    Ok(())
}
