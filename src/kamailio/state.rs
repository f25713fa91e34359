//! What mod_init settles, read-only afterwards and inherited by every
//! process Kamailio forks; and the parameters gathered before it, while
//! the config is read. Each entry point fetches the state once ([`get`])
//! and passes it down. This file imports only the layers below the
//! policy: the modparam surface and the host layer.

use crate::core::dest::{DestUri, Destination};
use crate::core::endpoint::Transport;
use crate::core::ring::Ring;
use crate::core::sender::tls;
use crate::core::session::table::SessionTable;
use crate::core::shared::Shared;
use crate::core::store::StoreSettings;
use crate::ffi::{lock, Settled};
use crate::kamailio::config::{Config, ConfigError, ParamValue};
use crate::kamailio::host::avp::AvpName;
use crate::kamailio::host::db::Db;
use crate::kamailio::host::dialog::Dialogs;
use crate::kamailio::host::http::HttpClient;
use crate::kamailio::host::route::EventRoute;
use crate::kamailio::host::socket::Socket;
use crate::kamailio::host::tm::Tm;
use smallvec::SmallVec;
use std::collections::HashMap;
use std::ffi::CStr;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, OnceLock};

pub struct State {
    pub config: Config,
    /// The `duplicate_uri` destinations, resolved at startup.
    pub duplicates: SmallVec<[Destination; 2]>,
    /// Destinations resolved at startup, for the script's URIs too.
    pub resolved: Mutex<Resolved>,
    /// One queue per sender process, in shared memory.
    pub queues: Vec<Ring>,
    /// The switch, counters and limits all processes share.
    pub shared: &'static Shared,
    /// The APIs of the modules the binding works with, when loaded.
    pub tm: Option<Tm>,
    pub dialogs: Option<Dialogs>,
    pub http: Option<HttpClient>,
    /// The DB API's driver, when rows go through it.
    pub db: Option<Db>,
    /// The module's own row writer, when rows go through it
    /// (`sqlite://`, `postgres://`, `db_native=1`).
    pub native_rows: Option<StoreSettings>,
    /// `send_sock_name` / `send_sock_addr`: the listen socket traces
    /// leave from.
    pub send_socket: Settled<Socket>,
    pub traced_user_avp: Settled<AvpName>,
    pub table_avp: Settled<AvpName>,
    /// `event_route[siptrace:msg]`, or the `evcb_msg` KEMI function.
    pub msg_route: Option<EventRoute>,
    pub msg_callback: Option<&'static CStr>,
    /// With trace_net: the connections announced, in shared memory.
    pub announced: Option<&'static [AtomicI32]>,
    /// The trace sessions `siptrace.trace_start` runs, in shared memory;
    /// none with `trace_sessions_max` 0.
    pub sessions: Option<&'static SessionTable>,
}

/// A host value settled in mod_init, or none.
pub fn settled<T: Copy>(value: Option<T>) -> Settled<T> {
    let settled = Settled::new();
    if let Some(value) = value {
        settled.set(value);
    }
    settled
}

static STATE: OnceLock<State> = OnceLock::new();

/// The state, once mod_init has run.
pub fn get() -> Option<&'static State> {
    STATE.get()
}

pub fn settle(state: State) -> Result<(), String> {
    STATE.set(state).map_err(|_| "initialized twice".to_string())
}

impl State {
    pub fn tracing_on(&self) -> bool {
        self.shared.trace_on.load(Ordering::Relaxed)
    }

    /// Resolves a URI the config gives a script function; see
    /// [`Resolved::resolve`].
    pub fn resolve_at_startup(&self, text: &str) -> Result<Destination, String> {
        lock(&self.resolved).resolve(text, &self.config.settings.senders.tls_ca_file)
    }

    /// The destination for a URI given at run time: one resolved at
    /// startup, or an IP literal. Host names are never looked up per
    /// message.
    pub fn destination(&self, text: &str) -> Result<Destination, String> {
        if let Some(dest) = lock(&self.resolved).by_text.get(text) {
            return Ok(*dest);
        }
        let uri =
            DestUri::parse_supported(text).map_err(|e| format!("bad destination URI '{text}': {}", e.0))?;
        uri.literal().ok_or_else(|| {
            format!("destination '{text}' names a host that was not resolved at startup; use an IP address")
        })
    }

    /// The name a TLS collector's certificate must carry: the one of a
    /// destination resolved at startup, else of a trace session's.
    pub fn tls_name(&self, dest: Destination) -> String {
        lock(&self.resolved)
            .tls_names
            .get(&dest)
            .cloned()
            .or_else(|| self.sessions.and_then(|t| t.tls_name(dest)))
            .unwrap_or_else(|| dest.addr.ip().to_string())
    }
}

/// Destinations resolved at startup: by the URI text, and for TLS the name
/// the collector's certificate must carry.
#[derive(Default)]
pub struct Resolved {
    by_text: HashMap<String, Destination>,
    tls_names: HashMap<Destination, String>,
}

impl Resolved {
    /// Parses and resolves a destination URI while the server starts; it
    /// is then found without another lookup. A TLS destination also needs
    /// a usable CA file, `ca_file`.
    pub fn resolve(&mut self, text: &str, ca_file: &str) -> Result<Destination, String> {
        let uri = DestUri::parse_supported(text).map_err(|e| e.0)?;
        let dest = uri.resolve().map_err(|e| e.0)?;
        if dest.transport == Transport::Tls {
            tls::server_name(&uri.host_text())?;
            tls::client_config(Path::new(ca_file))?;
        }
        crate::log_debug!("destination {text} resolved to {}", dest.addr);
        self.by_text.insert(text.to_string(), dest);
        if dest.transport == Transport::Tls {
            self.tls_names.insert(dest, uri.host_text());
        }
        Ok(dest)
    }
}

/// Parameters as Kamailio reads them from the config, before mod_init.
static PENDING: Mutex<Option<Config>> = Mutex::new(None);

pub fn set_param(name: &str, value: ParamValue<'_>) -> Result<(), ConfigError> {
    lock(&PENDING).get_or_insert_with(Config::default).set(name, value)
}

/// The parameters the config gave, for mod_init.
pub fn take_params() -> Config {
    lock(&PENDING).take().unwrap_or_default()
}
