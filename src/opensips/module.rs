//! Module state: the trace ids resolved at startup, the queues and the
//! shared block, set up in mod_init before OpenSIPS forks.

use crate::core::settings::Settings;
use crate::core::dest::{DestUri, Destination};
use crate::core::endpoint::{Endpoint, Transport};
use crate::core::hep::{ChunkLayout, HepSettings};
use crate::core::record::Outputs;
use crate::core::ring::Ring;
use crate::core::shared::Shared;
use crate::core::trace_id::{TraceId, TraceTarget};
use crate::opensips::params::PARAMS;
use crate::opensips::sinks::{Defaults, Sinks};
use crate::opensips::{sys, tracer};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

pub struct Module {
    /// Each trace id name with where its traces go.
    pub ids: Vec<(String, Outputs)>,
    pub queues: Vec<Ring>,
    pub shared: &'static Shared,
    pub settings: Settings,
    /// proto_hep's `homer5_delim` when its `homer5_on` is set: records of
    /// the trace API then join their payload parts with it.
    pub homer5_delimiter: Option<Vec<u8>>,
    /// The hep_ids resolved at startup, by proto_hep's pointer.
    hep_ids: Vec<(usize, Destination)>,
    /// Each trace id's switch (MI `trace id=... mode=...`), in shared memory.
    pub switches: &'static [AtomicBool],
    /// What MI `trace` lists: each destination of each trace id.
    pub listing: Vec<Listing>,
    /// The trace ids MI `trace_start` adds; trace id `ids.len() + n` is
    /// slot `n` of it.
    pub dynamic: &'static crate::opensips::dynamic::Table,
    hep_api: Option<HepApi>,
    /// `trace_local_ip`: stands for this server's end of what it sends
    /// and of the replies its transactions receive.
    pub local_ip: Option<Endpoint>,
    /// The rows' destinations: tables, files and syslog.
    pub sinks: Sinks,
    /// What `file:` and `syslog` destinations take when they do not say.
    pub defaults: Defaults,
}

/// One destination of a trace id, as MI shows it.
pub struct Listing {
    pub id: usize,
    /// "HEP", "SIP" or "Database"; empty for a file or syslog, which MI
    /// lists without a type or uri.
    pub kind: &'static str,
    pub uri: String,
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

    /// Whether tracing to trace id `id` is on: globally and for it.
    pub fn id_on(&self, id: usize) -> bool {
        if !self.shared.trace_on.load(Ordering::Relaxed) {
            return false;
        }
        match self.switches.get(id) {
            Some(switch) => switch.load(Ordering::Relaxed),
            None => self.dynamic.get(id - self.ids.len()).is_some(),
        }
    }

    /// Where trace id `id` sends: a static one's outputs, or a dynamic
    /// one's while it is started.
    pub fn outputs(&self, id: usize) -> Option<std::borrow::Cow<'_, Outputs>> {
        match self.ids.get(id) {
            Some((_, outputs)) => Some(std::borrow::Cow::Borrowed(outputs)),
            None => self.dynamic.get(id - self.ids.len()).map(|e| std::borrow::Cow::Owned(e.outputs(id))),
        }
    }

    /// A destination proto_hep makes of `address` (`ip:port;transport=...`)
    /// for MI `trace_start`; resolved now, never per message.
    pub fn new_hep_destination(&self, name: &str, address: &str) -> Result<Destination, String> {
        let api = self.hep_api.as_ref().ok_or("proto_hep is not loaded")?;
        let (Some(new), Some(release)) = (api.0.new_trace_dest, api.0.release_trace_dest) else {
            return Err("proto_hep cannot make destinations".into());
        };
        let mut n = sys::str_ { s: name.as_ptr() as *mut _, len: name.len() as _ };
        let mut a = sys::str_ { s: address.as_ptr() as *mut _, len: address.len() as _ };
        // SAFETY: valid strs; proto_hep returns its new entry or NULL.
        let dest = unsafe { new(&mut n, &mut a) };
        // SAFETY: the entry proto_hep just made, when not null.
        let hid = unsafe { (dest as *const sys::hid_list_t).as_ref() }
            .ok_or_else(|| format!("proto_hep refused '{address}'"))?;
        let result = hid_destination(hid, true).map(|(d, _)| d);
        // SAFETY: giving back the entry; its destination was copied.
        unsafe { release(dest) };
        result
    }

    /// Where proto_hep's destination `dest` (a `hid_list_t`) sends: one
    /// resolved at startup, or one whose address is an IP.
    pub fn hep_destination_of(&self, dest: sys::trace_dest) -> Option<Destination> {
        if let Some((_, d)) = self.hep_ids.iter().find(|(p, _)| *p == dest as usize) {
            return Some(*d);
        }
        // SAFETY: proto_hep's entry, alive while it is used.
        let hid = unsafe { (dest as *const sys::hid_list_t).as_ref()? };
        hid_destination(hid, false).ok().map(|(d, _)| d)
    }
}

/// proto_hep's trace API, bound in mod_init; it resolves `hep_id` names.
pub struct HepApi(pub sys::trace_proto_t);
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

/// Where proto_hep's `hep_id` called `name` sends, its HEP version, and
/// proto_hep's pointer to it.
fn hep_destination(api: &HepApi, name: &str) -> Result<(Destination, u8, usize, String), String> {
    let get = api.0.get_trace_dest_by_name.ok_or("proto_hep offers no destinations")?;
    let mut s = sys::str_ { s: name.as_ptr() as *mut _, len: name.len() as _ };
    // SAFETY: a valid str; proto_hep returns its hid_list_t or NULL.
    let pointer = unsafe { get(&mut s) };
    // SAFETY: a live entry of proto_hep's list when not null.
    let hid = unsafe { (pointer as *const sys::hid_list_t).as_ref() }
        .ok_or_else(|| format!("no hep_id '{name}' is defined (modparam \"proto_hep\" \"hep_id\")"))?;
    let (dest, version) = hid_destination(hid, true).map_err(|e| format!("hep_id '{name}': {e}"))?;
    // SAFETY: proto_hep's strings are valid for their length.
    let text = |s: &sys::str_| String::from_utf8_lossy(unsafe { tracer::str_bytes(s) }).into_owned();
    Ok((dest, version, pointer as usize, format!("{}:{}", text(&hid.ip), text(&hid.port))))
}

/// The destination of a proto_hep entry; host names are resolved only
/// when `resolve` (at startup), never per message.
fn hid_destination(hid: &sys::hid_list_t, resolve: bool) -> Result<(Destination, u8), String> {
    // SAFETY: proto_hep's strings are valid for their length.
    let ip = String::from_utf8_lossy(unsafe { tracer::str_bytes(&hid.ip) });
    let transport = match hid.transport as u32 {
        sys::sip_protos_PROTO_HEP_UDP | sys::sip_protos_PROTO_UDP => Transport::Udp,
        sys::sip_protos_PROTO_HEP_TCP | sys::sip_protos_PROTO_TCP => Transport::Tcp,
        sys::sip_protos_PROTO_HEP_TLS | sys::sip_protos_PROTO_TLS if crate::opensips::tls::available() => {
            Transport::Tls
        }
        sys::sip_protos_PROTO_HEP_TLS | sys::sip_protos_PROTO_TLS => {
            return Err("transport tls needs the tls_mgm module loaded (its client domain for the \
                        collector gives the CA list)"
                .into())
        }
        other => return Err(format!("transport {other}; UDP, TCP and TLS are implemented")),
    };
    let port = u16::try_from(if hid.port_no == 0 { 9060 } else { hid.port_no }).map_err(|_| "bad port")?;
    let addr = match ip.trim_matches(['[', ']']).parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port),
        Err(_) if resolve => {
            DestUri::parse_supported(&format!("sip:{ip}:{port}"))
                .and_then(|d| d.resolve())
                .map_err(|e| e.to_string())?
                .addr
        }
        Err(_) => return Err(format!("'{ip}' was not resolved at startup")),
    };
    Ok((Destination { addr, transport }, hid.version as u8))
}

/// A modparam of proto_hep, as the pointer it was stored through.
fn proto_hep_param(name: &std::ffi::CStr, kind: u32) -> *mut std::os::raw::c_void {
    // SAFETY: looking up a module's parameter by name.
    unsafe { sys::find_param_export(c"proto_hep".as_ptr(), name.as_ptr(), kind) }
}

/// proto_hep's capture id and Homer 5 settings, which its own packets use.
fn proto_hep_settings() -> (u32, Option<Vec<u8>>) {
    // SAFETY: proto_hep's INT_PARAM storage is an int; its STR_PARAM one a
    // char* to a NUL-terminated string.
    unsafe {
        let capture_id = (proto_hep_param(c"hep_capture_id", sys::INT_PARAM) as *const std::os::raw::c_int)
            .as_ref()
            .map_or(1, |&id| id as u32);
        let homer5_on = (proto_hep_param(c"homer5_on", sys::INT_PARAM) as *const std::os::raw::c_int)
            .as_ref()
            .map_or(1, |&on| on);
        let delimiter = (proto_hep_param(c"homer5_delim", sys::STR_PARAM)
            as *const *const std::os::raw::c_char)
            .as_ref()
            .filter(|p| !p.is_null())
            .map_or_else(|| b":".to_vec(), |&p| std::ffi::CStr::from_ptr(p).to_bytes().to_vec());
        (capture_id, (homer5_on != 0).then_some(delimiter))
    }
}

pub fn mod_init() -> Result<(), String> {
    let params = std::mem::take(&mut *PARAMS.lock().unwrap_or_else(|e| e.into_inner()));
    let mut settings = Settings::default();
    let api = bind_proto_hep();
    let mut ids: Vec<(String, Outputs)> = Vec::new();
    let mut hep_version = None;
    let mut hep_ids = Vec::new();
    let mut listing = Vec::new();
    let mut sinks = Sinks::default();
    // SAFETY: reads two of the core's settings.
    let defaults = Defaults {
        file_mode: params.file_mode.unwrap_or(0o600),
        syslog_facility: params.syslog_facility.unwrap_or_else(|| unsafe { sys::siptrace_os_log_facility() }),
        syslog_level: params.syslog_level.unwrap_or_else(|| unsafe { sys::siptrace_os_log_level() }),
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
                let api = api.as_ref().ok_or_else(|| {
                    format!(
                        "trace_id '[{name}]' sends to hep:{id}, but proto_hep is not loaded before tracer"
                    )
                })?;
                let (dest, version, pointer, uri) = hep_destination(api, id)?;
                hep_ids.push((pointer, dest));
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
                sinks.add(at, target, &defaults).map_err(|e| format!("trace_id '[{name}]': {e}"))?;
                let uri = crate::core::sql::redact_url(url);
                listing.push(Listing { id: at, kind: "Database", uri });
            }
            TraceTarget::File(_) | TraceTarget::Syslog(_) => {
                sinks.add(at, target, &defaults).map_err(|e| format!("trace_id '[{name}]': {e}"))?;
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
        let columns = std::array::from_fn(|i| {
            params.columns[i].clone().unwrap_or_else(|| crate::opensips::db::COLUMNS[i].to_string())
        });
        crate::opensips::db::bind(&sinks.databases, &columns)?;
    }
    crate::opensips::transaction::init()?;
    crate::opensips::dialog::init();
    crate::opensips::b2b::init()?;
    if let Some(api) = &api {
        crate::opensips::trace_api::init(api)?;
    }
    let (capture_id, homer5_delimiter) = proto_hep_settings();
    settings.hep = HepSettings {
        version: hep_version.unwrap_or(3),
        layout: ChunkLayout::OpenSips,
        capture_id,
        ..settings.hep
    };
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
        (0..settings.senders.count).map(|_| new_queue(settings.senders.queue_bytes)).collect::<Result<_, _>>()?;
    crate::log_info!(
        "{} trace id(s), HEP version {}, {} sender(s) with {} KiB queues",
        ids.len(),
        settings.hep.version,
        settings.senders.count,
        settings.senders.queue_bytes / 1024
    );
    let switches = shared_switches(ids.len(), params.trace_on.unwrap_or(true))?;
    let dynamic = crate::opensips::dynamic::Table::new_in_shm()?;
    crate::opensips::script::init_dynamic()?;
    let module = Module {
        ids,
        queues,
        shared,
        settings,
        homer5_delimiter,
        hep_ids,
        switches,
        listing,
        dynamic,
        hep_api: api,
        local_ip: params.local_ip,
        sinks,
        defaults,
    };
    MODULE.set(module).map_err(|_| "initialized twice".to_string())
}

/// One switch per trace id, in shared memory, all `on` at first.
fn shared_switches(count: usize, on: bool) -> Result<&'static [AtomicBool], String> {
    let bytes = std::mem::size_of::<AtomicBool>() * count.max(1);
    // SAFETY: plain allocation from OpenSIPS's shared memory.
    let p = unsafe { sys::siptrace_os_shm_malloc(bytes) } as *mut AtomicBool;
    if p.is_null() {
        return Err("out of shared memory".into());
    }
    for i in 0..count {
        // SAFETY: within the fresh block.
        unsafe { p.add(i).write(AtomicBool::new(on)) };
    }
    // SAFETY: `count` initialized switches that live until exit.
    Ok(unsafe { std::slice::from_raw_parts(p, count) })
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
