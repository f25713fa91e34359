//! Module state: the trace ids resolved at startup, the queues and the
//! shared block, set up in mod_init before OpenSIPS forks.

use crate::core::config::Config;
use crate::core::dest::{DestUri, Destination};
use crate::core::endpoint::Transport;
use crate::core::hep::{ChunkLayout, HepSettings};
use crate::core::record::Outputs;
use crate::core::ring::Ring;
use crate::core::shared::Shared;
use crate::core::trace_id::{TraceId, TraceTarget};
use crate::opensips::params::PARAMS;
use crate::opensips::sys;
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

pub struct Module {
    /// Each trace id name with where its traces go.
    pub ids: Vec<(String, Outputs)>,
    pub queues: Vec<Ring>,
    pub shared: &'static Shared,
    pub config: Config,
}

// SAFETY: set once in mod_init, before OpenSIPS forks, and only read after;
// the queues and the shared block are in shared memory, used through
// atomics and process-shared locks.
unsafe impl Sync for Module {}
unsafe impl Send for Module {}

static MODULE: OnceLock<Module> = OnceLock::new();

pub fn get() -> Option<&'static Module> {
    MODULE.get()
}

impl Module {
    /// The index of the trace id called `name`.
    pub fn id_index(&self, name: &str) -> Option<usize> {
        self.ids.iter().position(|(n, _)| n == name)
    }
}

/// proto_hep's trace API, bound in mod_init; it resolves `hep_id` names.
struct HepApi(sys::trace_proto_t);
// SAFETY: a table of function pointers filled once before forking.
unsafe impl Sync for HepApi {}
unsafe impl Send for HepApi {}

fn bind_proto_hep() -> Option<HepApi> {
    let mut api = sys::trace_proto_t::default();
    // SAFETY: the module name is a NUL-terminated string; `api` is written
    // by proto_hep's binder.
    let rc = unsafe { sys::trace_prot_bind(c"proto_hep".as_ptr() as *mut _, &mut api) };
    (rc >= 0 && api.get_trace_dest_by_name.is_some()).then_some(HepApi(api))
}

/// Where proto_hep's `hep_id` called `name` sends, and its HEP version.
fn hep_destination(api: &HepApi, name: &str) -> Result<(Destination, u8), String> {
    let get = api.0.get_trace_dest_by_name.ok_or("proto_hep offers no destinations")?;
    let mut s = sys::str_ { s: name.as_ptr() as *mut _, len: name.len() as _ };
    // SAFETY: a valid str; proto_hep returns its hid_list_t or NULL.
    let hid = unsafe { get(&mut s) } as *const sys::hid_list_t;
    // SAFETY: a live entry of proto_hep's list when not null.
    let hid = unsafe { hid.as_ref() }
        .ok_or_else(|| format!("no hep_id '{name}' is defined (modparam \"proto_hep\" \"hep_id\")"))?;
    // SAFETY: proto_hep's strings are valid for their length.
    let ip = unsafe { std::slice::from_raw_parts(hid.ip.s as *const u8, hid.ip.len.max(0) as usize) };
    let ip = String::from_utf8_lossy(ip);
    let transport = match hid.transport as u32 {
        sys::sip_protos_PROTO_HEP_UDP | sys::sip_protos_PROTO_UDP => Transport::Udp,
        sys::sip_protos_PROTO_HEP_TCP | sys::sip_protos_PROTO_TCP => Transport::Tcp,
        other => return Err(format!("hep_id '{name}' uses transport {other}; UDP and TCP are implemented")),
    };
    let port = u16::try_from(if hid.port_no == 0 { 9060 } else { hid.port_no })
        .map_err(|_| format!("hep_id '{name}' has a bad port"))?;
    let addr = match ip.trim_matches(['[', ']']).parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port),
        // Names are resolved once, here, never per message.
        Err(_) => {
            DestUri::parse_supported(&format!("sip:{ip}:{port}"))
                .and_then(|d| d.resolve())
                .map_err(|e| format!("hep_id '{name}': {e}"))?
                .addr
        }
    };
    Ok((Destination { addr, transport }, hid.version as u8))
}

pub fn mod_init() -> Result<(), String> {
    let params = std::mem::take(&mut *PARAMS.lock().unwrap_or_else(|e| e.into_inner()));
    let mut config = Config::default();
    let api = bind_proto_hep();
    let mut ids: Vec<(String, Outputs)> = Vec::new();
    let mut hep_version = None;
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
                let api = api.as_ref().ok_or_else(|| {
                    format!(
                        "trace_id '[{name}]' sends to hep:{id}, but proto_hep is not loaded before tracer"
                    )
                })?;
                let (dest, version) = hep_destination(api, id)?;
                if *hep_version.get_or_insert(version) != version {
                    return Err("every hep_id the trace ids use must have the same HEP version".into());
                }
                outputs.hep.push(dest);
            }
            TraceTarget::Sip(uri) => {
                let dest = DestUri::parse_supported(uri).and_then(|d| d.resolve());
                outputs.duplicate.push(dest.map_err(|e| format!("trace_id '[{name}]': {e}"))?);
            }
            TraceTarget::Db { .. } | TraceTarget::File(_) | TraceTarget::Syslog(_) => {
                return Err(format!(
                    "trace_id '[{name}]': database, file and syslog destinations are not implemented \
                     yet by this tracer module; hep: and sip: are"
                ))
            }
        }
    }
    if ids.is_empty() {
        return Err("no trace_id is defined; give at least one".into());
    }
    crate::opensips::transaction::init()?;
    config.hep =
        HepSettings { version: hep_version.unwrap_or(3), layout: ChunkLayout::OpenSips, ..config.hep };
    // SAFETY: plain allocation from OpenSIPS's shared memory.
    let p = unsafe { sys::siptrace_os_shm_malloc(std::mem::size_of::<Shared>()) } as *mut Shared;
    if p.is_null() {
        return Err("out of shared memory".into());
    }
    // SAFETY: a fresh, suitably aligned shm block that lives until shutdown.
    unsafe { Shared::init_at(p, params.trace_on.unwrap_or(true)) }
        .map_err(|e| format!("cannot set up the shared state: {e}"))?;
    // SAFETY: initialized just above.
    let shared: &'static Shared = unsafe { &*p };
    let queues =
        (0..config.senders.count).map(|_| new_queue(config.senders.queue_bytes)).collect::<Result<_, _>>()?;
    crate::log_info!(
        "{} trace id(s), HEP version {}, {} sender(s) with {} KiB queues",
        ids.len(),
        config.hep.version,
        config.senders.count,
        config.senders.queue_bytes / 1024
    );
    MODULE.set(Module { ids, queues, shared, config }).map_err(|_| "initialized twice".to_string())
}

fn new_queue(bytes: usize) -> Result<Ring, String> {
    // SAFETY: plain allocation from OpenSIPS's shared memory.
    let mem = unsafe { sys::siptrace_os_shm_malloc(bytes) } as *mut u8;
    if mem.is_null() {
        return Err(format!(
            "cannot allocate a {} KiB queue in shared memory; give OpenSIPS more (-m)",
            bytes / 1024
        ));
    }
    // SAFETY: a fresh shm block of `bytes` bytes, 8-byte aligned, kept until exit.
    unsafe { Ring::init(mem, bytes) }.map_err(|e| format!("cannot create a queue: {e}"))
}
