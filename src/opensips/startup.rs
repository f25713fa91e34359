//! mod_init: the trace ids resolved, the other modules bound, the queues
//! and the shared block set up, and the state settled, before OpenSIPS
//! forks.

use crate::core::dest::DestUri;
use crate::core::hep::{ChunkLayout, HepSettings};
use crate::core::record::Outputs;
use crate::core::settings::Settings;
use crate::core::trace_id::{TraceId, TraceTarget};
use crate::opensips::host::{dialog, hep as hep_api, log, modparam, shm};
use crate::opensips::state::dynamic::Table;
use crate::opensips::state::{self, Defaults, Listing, Sinks, State};
use crate::opensips::{b2b, db, hep, params, script, sinks, trace_api, transaction};
use std::sync::atomic::AtomicBool;

pub fn mod_init() -> Result<(), String> {
    let params = params::take();
    // hep_distribution applies to the HEP destinations of each trace id.
    let mut settings = Settings { delivery: params.delivery.unwrap_or_default(), ..Settings::default() };
    // A spool_dir that cannot be created or written refuses startup.
    settings.delivery.check_spool_dir()?;
    let hep_bound = hep_api::bind();
    let mut ids: Vec<(String, Outputs)> = Vec::new();
    let mut hep_version = None;
    let mut hep_ids = Vec::new();
    let mut listing = Vec::new();
    let mut sinks = Sinks::default();
    let defaults = Defaults {
        file_mode: params.file_mode.unwrap_or(0o600),
        syslog_facility: params.syslog_facility.unwrap_or_else(log::core_facility),
        syslog_level: params.syslog_level.unwrap_or_else(log::core_level),
    };
    for TraceId { name, target } in &params.trace_ids {
        let at = match ids.iter().position(|(n, _)| n == name) {
            Some(i) => i,
            None => {
                ids.push((name.clone(), Outputs::default()));
                ids.len() - 1
            }
        };
        let outputs = &mut ids[at].1;
        match target {
            TraceTarget::Hep(id) => {
                if !hep_bound {
                    return Err(format!(
                        "trace_id '[{name}]' sends to hep:{id}, but proto_hep is not loaded before tracer"
                    ));
                }
                let (dest, version, key, uri) = hep::by_name(id)?;
                hep_ids.push((key, dest));
                listing.push(Listing { id: at, kind: "HEP", uri });
                if *hep_version.get_or_insert(version) != version {
                    return Err("every hep_id the trace ids use must have the same HEP version".into());
                }
                outputs.hep.push(dest);
            }
            TraceTarget::Sip(uri) => {
                let parsed =
                    DestUri::parse_supported(uri).map_err(|e| format!("trace_id '[{name}]': {e}"))?;
                let dest = parsed.resolve().map_err(|e| format!("trace_id '[{name}]': {e}"))?;
                outputs.duplicate.push(dest);
                listing.push(Listing {
                    id: at,
                    kind: "SIP",
                    uri: format!("{}:{}", parsed.host_text(), parsed.port),
                });
            }
            TraceTarget::Db { url, .. } => {
                sinks::add(&mut sinks, at, target, &defaults)
                    .map_err(|e| format!("trace_id '[{name}]': {e}"))?;
                let uri = crate::core::sql::redact_url(url);
                listing.push(Listing { id: at, kind: "Database", uri });
            }
            TraceTarget::File(_) | TraceTarget::Syslog(_) => {
                sinks::add(&mut sinks, at, target, &defaults)
                    .map_err(|e| format!("trace_id '[{name}]': {e}"))?;
                // MI lists them by name and state only, as OpenSIPS's tracer does.
                listing.push(Listing { id: at, kind: "", uri: String::new() });
            }
        }
    }
    for (at, (_, outputs)) in ids.iter_mut().enumerate() {
        if !sinks.of_key(&Sinks::key(at)).is_empty() {
            outputs.db = true;
            outputs.table = Some(Sinks::key(at));
        }
    }
    if ids.is_empty() {
        return Err("no trace_id is defined; give at least one".into());
    }
    if !sinks.databases.is_empty() {
        let columns =
            std::array::from_fn(|i| params.columns[i].clone().unwrap_or_else(|| db::COLUMNS[i].to_string()));
        db::bind(&sinks.databases, &columns)?;
    }
    transaction::init()?;
    dialog::bind();
    b2b::init()?;
    if hep_bound {
        trace_api::init()?;
    }
    let (capture_id, homer5_delimiter) = proto_hep_settings();
    settings.hep = HepSettings {
        version: hep_version.unwrap_or(3),
        layout: ChunkLayout::OpenSips,
        capture_id,
        ..settings.hep
    };
    let trace_on = params.trace_on.unwrap_or(true);
    let shared = shm::shared(trace_on)?;
    let queues = (0..settings.senders.count)
        .map(|_| shm::ring(settings.senders.queue_bytes))
        .collect::<Result<_, _>>()?;
    crate::log_info!(
        "{} trace id(s), HEP version {}, hep_distribution {}, {} sender(s) with {} KiB queues{}",
        ids.len(),
        settings.hep.version,
        settings.delivery.distribution.name(),
        settings.senders.count,
        settings.senders.queue_bytes / 1024,
        match &settings.delivery.spool_dir {
            Some(dir) => format!(", spool in {dir}"),
            None => String::new(),
        }
    );
    let switches = shm::slice(ids.len(), |_| AtomicBool::new(trace_on)).ok_or("out of shared memory")?;
    let dynamic = Table::init(shm::alloc::<Table>().ok_or("out of shared memory")?)?;
    script::init_dynamic()?;
    state::settle(State {
        ids,
        queues,
        shared,
        settings,
        homer5_delimiter,
        hep_ids,
        switches,
        listing,
        dynamic,
        local_ip: params.local_ip,
        sinks,
        defaults,
    })
}

/// proto_hep's capture id and Homer 5 settings, which its own packets use.
fn proto_hep_settings() -> (u32, Option<Vec<u8>>) {
    let capture_id = modparam::int_of(c"proto_hep", c"hep_capture_id").map_or(1, |id| id as u32);
    let homer5_on = modparam::int_of(c"proto_hep", c"homer5_on").map_or(1, |on| on);
    let delimiter = modparam::str_of(c"proto_hep", c"homer5_delim").unwrap_or_else(|| b":".to_vec());
    (capture_id, (homer5_on != 0).then_some(delimiter))
}
