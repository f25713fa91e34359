//! The module's life cycle in Kamailio: mod_init in the main process,
//! which settles the state, and child_init in every forked process, which
//! forks the sender processes from the main one.

use crate::core::dest::Destination;
use crate::core::ring::Ring;
use crate::core::sql::redact_url;
use crate::kamailio::config::InitMode;
use crate::kamailio::host::avp::AvpName;
use crate::kamailio::host::http::HttpClient;
use crate::kamailio::host::process::{self, Forked, Rank};
use crate::kamailio::host::shm;
use crate::kamailio::row_writer::{self, Chosen};
use crate::kamailio::state::{self, settled, Resolved, State};
use crate::kamailio::{
    call_context, connections, dialog, events, log_lines, msg_event, rpc_trace, send_socket, sender,
    sessions, stats, transaction,
};
use smallvec::SmallVec;
use std::sync::Mutex;

/// Parses the AVP spec that modparam `param` gave.
fn avp(param: &str, spec: Option<&String>) -> Result<Option<AvpName>, String> {
    spec.map(|spec| {
        AvpName::parse(spec).map_err(|why| format!("modparam '{param}' has a bad value '{spec}': {why}"))
    })
    .transpose()
}

pub fn mod_init() -> Result<(), String> {
    let config = state::take_params();
    config.validate().map_err(|e| e.to_string())?;
    // A spool_dir that cannot be created or written refuses startup.
    config.settings.delivery.check_spool_dir()?;
    let shared = shm::new_shared_state(config.trace_on)?;
    stats::register(config.duplicate_uri.len())?;
    let (db, native_rows) = match config.uses_database().then(|| row_writer::mod_init(&config)).transpose()? {
        Some(Chosen::DbApi(db)) => (Some(db), None),
        Some(Chosen::Native(settings)) => (None, Some(*settings)),
        None => (None, None),
    };
    let mut resolved = Resolved::default();
    let mut duplicates: SmallVec<[Destination; 2]> = SmallVec::new();
    // A TLS destination is checked against the CA file its sender will use.
    for p in &config.duplicate_uri {
        let dest = resolved
            .resolve(&p.text, &config.settings.senders.tls_ca_file)
            .map_err(|e| format!("modparam 'duplicate_uri' has a bad value '{}': {e}", p.text))?;
        duplicates.push(dest);
    }
    // Their counters keep the order of duplicate_uri: dest0, dest1, ...
    for d in &duplicates {
        shared.counters.dest_slot(d);
    }
    let (msg_route, msg_callback) = msg_event::init(config.evcb_msg.as_deref());
    let queues = (0..config.settings.senders.count)
        .map(|_| shm::new_ring(config.settings.senders.queue_bytes))
        .collect::<Result<Vec<Ring>, String>>()?;
    process::register_children(config.settings.senders.count)?;
    let send_socket = send_socket::find(&config)?;
    let core_events = config.init_mode.core_events() && config.trace_mode.any();
    if core_events {
        events::register()?;
    }
    let (mut tm, mut dialogs, mut announced) = (None, None, None);
    let (mut traced_user_avp, mut table_avp) = (None, None);
    if config.init_mode != InitMode::CoreEvents {
        tm = transaction::mod_init(config.trace_sl_acks)?;
        dialogs = dialog::mod_init()?;
        call_context::mod_init()?;
        announced = connections::mod_init(config.trace_net)?;
        // In the main process, so that every process Kamailio forks has it.
        log_lines::install();
        traced_user_avp = avp("traced_user_avp", config.traced_user_avp.as_ref())?;
        table_avp = avp("trace_table_avp", config.trace_table_avp.as_ref())?;
    }
    let session_table = sessions::mod_init(&config)?;
    if config.db_mode_asked != 0 && config.uses_database() {
        crate::log_info!(
            "trace_db_mode {} asks for {} inserts: rows are always written by the sender processes, in batches",
            config.db_mode_asked,
            if config.db_mode_asked == 1 { "delayed" } else { "asynchronous" }
        );
    }
    crate::log_info!(
        "tracing {} (trace_on={}), database: {}, duplicate_uri: {}{}, {} sender(s) with {} KiB queues{}",
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
        if duplicates.len() > 1 {
            format!(" ({})", config.settings.delivery.distribution.name())
        } else {
            String::new()
        },
        config.settings.senders.count,
        config.settings.senders.queue_bytes / 1024,
        match &config.settings.delivery.spool_dir {
            Some(dir) => format!(", spool in {dir}"),
            None => String::new(),
        },
    );
    state::settle(State {
        config,
        duplicates,
        resolved: Mutex::new(resolved),
        queues,
        shared,
        tm,
        dialogs,
        // Its functions exist once it is loaded, whatever the order of the
        // loadmodule lines; sip_trace_http_query()'s fixup needs it.
        http: HttpClient::bind(),
        db,
        native_rows,
        send_socket: settled(send_socket),
        traced_user_avp: settled(traced_user_avp),
        table_avp: settled(table_avp),
        msg_route,
        msg_callback,
        announced,
        sessions: session_table,
    })
}

/// Before forking (PROC_INIT), patches the RPC commands to trace; in the
/// main process, forks the senders; other processes need nothing.
pub fn child_init(rank: i32) -> Result<(), String> {
    let Some(state) = state::get() else { return Ok(()) };
    match process::rank(rank) {
        Rank::Init => {
            sessions::proc_init(state)?;
            if state.config.trace_rpc {
                rpc_trace::install(state)?;
            }
            Ok(())
        }
        Rank::Main => {
            for index in 0..state.queues.len() {
                match process::fork(&format!("siptrace sender {index}")) {
                    None => return Err(format!("cannot fork sender {index}")),
                    // In the sender, which never comes back here: returning
                    // would run the main process's error path in this child.
                    Some(Forked::Child) => sender::run(state, index),
                    Some(Forked::Parent) => {}
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}
