//! Kamailio's modparams: names and types as Kamailio's siptrace exports
//! them, their validation, and the settings they produce. Plain Rust, so
//! that it is unit-tested and fuzzed without a server; the binding's
//! `params` exports the table and feeds Kamailio's values in here.
//!
//! A bad value is refused with an error that names the parameter and the
//! value. So is a value that asks for behaviour this module does not have
//! yet: silently ignoring it would trace differently from what the operator
//! configured.

use crate::core::dest::{DestError, DestUri};
use crate::core::endpoint::{Endpoint, Transport};
use crate::core::noise::{MethodSet, Noise};
use crate::core::rpc_command::CommandFilter;
use crate::core::session;
use crate::core::settings::Settings;
use crate::core::sql::{redact_url, Columns};
use crate::core::wire::MAX_DESTINATIONS;
use std::ffi::CStr;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    Int,
    Str,
}

/// Every parameter of Kamailio 5.6's siptrace, in its order, plus
/// `time_us_column` and the settings of the senders. The names are C
/// strings because hosts export them.
pub const PARAMS: &[(&CStr, ParamType)] = &[
    (c"auth_key", ParamType::Str),
    (c"db_url", ParamType::Str),
    (c"table", ParamType::Str),
    (c"date_column", ParamType::Str),
    (c"callid_column", ParamType::Str),
    (c"traced_user_column", ParamType::Str),
    (c"msg_column", ParamType::Str),
    (c"method_column", ParamType::Str),
    (c"status_column", ParamType::Str),
    (c"fromip_column", ParamType::Str),
    (c"toip_column", ParamType::Str),
    (c"fromtag_column", ParamType::Str),
    (c"totag_column", ParamType::Str),
    (c"direction_column", ParamType::Str),
    (c"time_us_column", ParamType::Str),
    (c"trace_flag", ParamType::Int),
    (c"trace_on", ParamType::Int),
    (c"traced_user_avp", ParamType::Str),
    (c"trace_table_avp", ParamType::Str),
    (c"duplicate_uri", ParamType::Str),
    (c"trace_to_database", ParamType::Int),
    (c"trace_local_ip", ParamType::Str),
    (c"trace_sl_acks", ParamType::Int),
    (c"xheaders_write", ParamType::Int),
    (c"xheaders_read", ParamType::Int),
    (c"hep_mode_on", ParamType::Int),
    (c"force_send_sock", ParamType::Str),
    (c"send_sock_addr", ParamType::Str),
    (c"send_sock_name", ParamType::Str),
    (c"hep_version", ParamType::Int),
    (c"hep_capture_id", ParamType::Int),
    (c"trace_delayed", ParamType::Int),
    (c"trace_db_mode", ParamType::Int),
    (c"trace_init_mode", ParamType::Int),
    (c"trace_mode", ParamType::Int),
    (c"evcb_msg", ParamType::Str),
    // Records beyond SIP that are not tied to one call.
    (c"trace_rpc", ParamType::Int),
    (c"trace_rpc_filter", ParamType::Str),
    (c"trace_net", ParamType::Int),
    // The asynchronous senders.
    (c"senders", ParamType::Int),
    (c"queue_size", ParamType::Int),
    (c"batch_size", ParamType::Int),
    (c"flush_interval", ParamType::Int),
    (c"tls_ca_file", ParamType::Str),
    (c"db_batch_size", ParamType::Int),
    (c"db_flush_interval", ParamType::Int),
    // Kamailio 6.0's siptrace (see LATER_PARAMS).
    (c"data_mode", ParamType::Int),
    (c"trace_dialog_ack", ParamType::Int),
    (c"trace_dialog_spiral", ParamType::Int),
    // 0: rows for sqlite:// and postgres:// also go through the DB API.
    (c"db_native", ParamType::Int),
    // Trace sessions (siptrace.trace_start), and keeping noise out.
    (c"trace_sessions_max", ParamType::Int),
    (c"trace_session_max_seconds", ParamType::Int),
    (c"trace_skip_methods", ParamType::Str),
    (c"trace_sample", ParamType::Int),
    (c"hep_node_name", ParamType::Str),
    // Several collectors, and the disk spool.
    (c"hep_distribution", ParamType::Str),
    (c"failover_return", ParamType::Int),
    (c"spool_dir", ParamType::Str),
    (c"spool_max_size", ParamType::Int),
    (c"spool_replay_rate", ParamType::Int),
];

/// The parameters of a later siptrace than 5.6's, with the Kamailio
/// release (major, minor) this module supports them from: the binding
/// refuses them on an older server, naming the release they need.
pub const LATER_PARAMS: &[(&str, (u8, u8))] =
    &[("data_mode", (6, 0)), ("trace_dialog_ack", (6, 0)), ("trace_dialog_spiral", (6, 0))];

/// The release (major, minor) parameter `name` needs, when it is one of
/// [`LATER_PARAMS`].
pub fn needs_release(name: &str) -> Option<(u8, u8)> {
    LATER_PARAMS.iter().find(|(n, _)| *n == name).map(|(_, r)| *r)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamValue<'a> {
    Int(i32),
    Str(&'a str),
}

impl fmt::Display for ParamValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Int(n) => write!(f, "{n}"),
            ParamValue::Str(s) => write!(f, "{s}"),
        }
    }
}

/// Why a parameter value was refused. Its text names the parameter and
/// the value, for the line the server prints before it refuses to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub param: String,
    pub value: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "modparam '{}' has a bad value '{}': {}", self.param, self.value, self.reason)
    }
}

impl ConfigError {
    /// An error about `param`; the values of secret parameters are masked,
    /// as the message goes to the log.
    fn new(param: &str, value: impl fmt::Display, reason: impl Into<String>) -> Self {
        let value = match param {
            "auth_key" => "***".to_string(),
            "db_url" => redact_url(&value.to_string()),
            _ => value.to_string(),
        };
        ConfigError { param: param.to_string(), value, reason: reason.into() }
    }
}

/// The `trace_mode` bits: which outputs trace every message the core
/// receives or sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TraceMode(pub u8);

impl TraceMode {
    pub const HEP: u8 = 1;
    pub const DB: u8 = 2;
    pub const DUPLICATE: u8 = 4;

    pub fn hep(self) -> bool {
        self.0 & Self::HEP != 0
    }
    pub fn db(self) -> bool {
        self.0 & Self::DB != 0
    }
    pub fn duplicate(self) -> bool {
        self.0 & Self::DUPLICATE != 0
    }
    pub fn any(self) -> bool {
        self.0 != 0
    }
}

/// `trace_init_mode`: which hooks the module installs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InitMode {
    /// Core send/receive events and script functions.
    #[default]
    All,
    /// Only the core send/receive events.
    CoreEvents,
    /// Only what the script asks for.
    Script,
}

impl InitMode {
    pub fn core_events(self) -> bool {
        matches!(self, InitMode::All | InitMode::CoreEvents)
    }
}

/// A URI parameter as written, and parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriParam {
    pub text: String,
    pub uri: DestUri,
}

/// The settings the parameters produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `None` keeps the host's default database URL.
    pub db_url: Option<String>,
    pub table: String,
    pub columns: Columns,
    pub trace_on: bool,
    /// Every `duplicate_uri` given; each trace goes to all of them.
    pub duplicate_uri: Vec<UriParam>,
    pub trace_to_database: bool,
    pub hep_mode_on: bool,
    pub init_mode: InitMode,
    pub trace_mode: TraceMode,
    /// The message flag that makes `sip_trace()` without a mode trace the
    /// whole transaction.
    pub trace_flag: Option<u8>,
    /// Whether ACKs that the SL module absorbs are traced.
    pub trace_sl_acks: bool,
    /// The AVP whose values name the users a trace belongs to.
    pub traced_user_avp: Option<String>,
    /// The listen socket traces are sent from: by its name (first), or by
    /// its address (`send_sock_addr`, alias `force_send_sock`).
    pub send_socket_name: Option<String>,
    pub send_socket_addr: Option<UriParam>,
    /// The KEMI function run for each message trace_mode traces, as
    /// event_route[siptrace:msg] is in a native config.
    pub evcb_msg: Option<String>,
    /// The AVP whose value, when set, names the table of a message's rows.
    pub trace_table_avp: Option<String>,
    /// The local address recorded, instead of the socket's, in traces the
    /// script starts.
    pub trace_local_ip: Option<Endpoint>,
    /// trace_db_mode (or trace_delayed): 1 delayed, 2 async inserts. The
    /// senders' batched writes already keep the workers free, so it only
    /// shows in the startup log.
    pub db_mode_asked: u8,
    /// Take the ends, time and direction of what is traced from the
    /// `X-Siptrace-*` headers (`xheaders_write` is in the shared settings).
    pub xheaders_read: bool,
    /// Send a record for each RPC command and its reply to the HEP
    /// collectors of duplicate_uri, for the commands the filter lets by.
    pub trace_rpc: bool,
    pub trace_rpc_filter: CommandFilter,
    /// Send TCP/TLS/WS connection events to the HEP collectors, and mark
    /// SIP records carried by a connection with its id.
    pub trace_net: bool,
    /// `data_mode` flag 1: `trace_mode` records the advertised address of
    /// a listen socket that has one, instead of its own (Kamailio 6.0).
    pub data_mode_advertised: bool,
    /// Dialog tracing traces the ACK that confirms the dialog (6.0's
    /// `trace_dialog_ack`, on by default).
    pub trace_dialog_ack: bool,
    /// Dialog tracing started on a spiraled INVITE (one that came back to
    /// this server) traces the dialog too (6.0's `trace_dialog_spiral`, on
    /// by default).
    pub trace_dialog_spiral: bool,
    /// Rows for `sqlite://` and `postgres://` URLs are written by the
    /// module's own writers (`core::store`), not through the DB API.
    pub db_native: bool,
    /// `trace_sessions_max`: sessions `siptrace.trace_start` may run at
    /// once; 0 turns sessions off.
    pub sessions_max: u32,
    /// `trace_session_max_seconds`: the longest a session may last.
    pub session_max_seconds: u32,
    /// `trace_skip_methods` and `trace_sample`.
    pub noise: Noise,
    /// The sender and HEP settings, shared with the other host.
    pub settings: Settings,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            db_url: None,
            table: "sip_trace".into(),
            columns: Columns::default(),
            trace_on: false,
            duplicate_uri: Vec::new(),
            trace_to_database: true,
            hep_mode_on: false,
            init_mode: InitMode::All,
            trace_mode: TraceMode::default(),
            trace_flag: None,
            trace_sl_acks: true,
            traced_user_avp: None,
            trace_table_avp: None,
            send_socket_name: None,
            evcb_msg: None,
            send_socket_addr: None,
            trace_local_ip: None,
            db_mode_asked: 0,
            xheaders_read: false,
            trace_rpc: false,
            trace_rpc_filter: CommandFilter::default(),
            trace_net: false,
            data_mode_advertised: false,
            trace_dialog_ack: true,
            trace_dialog_spiral: true,
            db_native: true,
            sessions_max: session::DEFAULT_MAX_SESSIONS,
            session_max_seconds: session::DEFAULT_MAX_SECONDS,
            noise: Noise::default(),
            settings: Settings::default(),
        }
    }
}

impl Config {
    /// Applies one `modparam`. `name` is one of [`PARAMS`], with its type.
    pub fn set(&mut self, name: &str, value: ParamValue<'_>) -> Result<(), ConfigError> {
        let bad = |reason: &str| ConfigError::new(name, value, reason);
        match (name, value) {
            ("db_url", ParamValue::Str(s)) => self.db_url = Some(non_empty(name, s)?.to_string()),
            ("table", ParamValue::Str(s)) => self.table = sql_identifier(name, s)?,
            (column, ParamValue::Str(s)) if column.ends_with("_column") => {
                let value = sql_identifier(name, s)?;
                *self.column_mut(column).ok_or_else(|| bad("unknown column parameter"))? = value;
            }
            ("trace_on", ParamValue::Int(n)) => self.trace_on = n != 0,
            ("trace_to_database", ParamValue::Int(n)) => self.trace_to_database = n != 0,
            ("hep_mode_on", ParamValue::Int(n)) => self.hep_mode_on = n != 0,
            ("duplicate_uri", ParamValue::Str(s)) => {
                // A queued record counts its destinations in one byte.
                if self.duplicate_uri.len() >= MAX_DESTINATIONS {
                    return Err(bad(&format!("at most {MAX_DESTINATIONS} are supported")));
                }
                let uri = DestUri::parse_supported(s).map_err(|DestError(e)| bad(&e))?;
                self.duplicate_uri.push(UriParam { text: s.to_string(), uri });
            }
            ("hep_version", ParamValue::Int(n)) => match n {
                1..=3 => self.settings.hep.version = n as u8,
                _ => return Err(bad("supported HEP versions are 1, 2 and 3")),
            },
            ("hep_capture_id", ParamValue::Int(n)) => {
                self.settings.hep.capture_id = u32::try_from(n).map_err(|_| bad("must not be negative"))?;
            }
            ("auth_key", ParamValue::Str(s)) => {
                self.settings.hep.auth_key = (!s.is_empty()).then(|| s.as_bytes().to_vec());
            }
            ("trace_init_mode", ParamValue::Int(n)) => {
                self.init_mode = match n {
                    0 => InitMode::All,
                    1 => InitMode::CoreEvents,
                    2 => InitMode::Script,
                    _ => return Err(bad("must be 0 (all), 1 (core events) or 2 (script)")),
                };
            }
            ("trace_mode", ParamValue::Int(n)) => {
                if !(0..=7).contains(&n) {
                    return Err(bad("must combine the bits 1 (HEP), 2 (database) and 4 (SIP duplicate)"));
                }
                self.trace_mode = TraceMode(n as u8);
            }
            ("senders", ParamValue::Int(n)) => self.settings.senders.count = int_in(name, n, 1, 16)? as usize,
            ("queue_size", ParamValue::Int(n)) => {
                self.settings.senders.queue_bytes = int_in(name, n, 64, 1 << 20)? as usize * 1024;
            }
            ("batch_size", ParamValue::Int(n)) => {
                self.settings.senders.batch_size = int_in(name, n, 1, 1024)? as usize
            }
            ("flush_interval", ParamValue::Int(n)) => {
                self.settings.senders.flush_interval_ms = int_in(name, n, 1, 1000)? as u64
            }
            ("tls_ca_file", ParamValue::Str(s)) => {
                self.settings.senders.tls_ca_file = non_empty(name, s)?.to_string()
            }
            ("db_batch_size", ParamValue::Int(n)) => {
                self.settings.senders.db_batch_size = int_in(name, n, 1, 100_000)? as usize
            }
            ("hep_distribution" | "spool_dir", ParamValue::Str(s)) => {
                self.settings.delivery.set_str(name, s).map_err(|e| bad(&e))?
            }
            ("failover_return" | "spool_max_size" | "spool_replay_rate", ParamValue::Int(n)) => {
                self.settings.delivery.set_int(name, n.into()).map_err(|e| bad(&e))?
            }
            ("db_flush_interval", ParamValue::Int(n)) => {
                self.settings.senders.db_flush_interval_ms = int_in(name, n, 1, 10_000)? as u64;
            }
            ("db_native", ParamValue::Int(n)) => self.db_native = int_in(name, n, 0, 1)? == 1,
            ("trace_flag", ParamValue::Int(n)) => {
                // -1 is the C module's "no flag"; Kamailio's flags are 0..=31.
                self.trace_flag = if n == -1 { None } else { Some(int_in(name, n, -1, 31)? as u8) };
            }
            ("trace_sl_acks", ParamValue::Int(n)) => self.trace_sl_acks = n != 0,
            ("traced_user_avp", ParamValue::Str(s)) => {
                if !s.starts_with("$avp(") {
                    return Err(bad("expected an AVP such as $avp(name)"));
                }
                self.traced_user_avp = Some(s.to_string());
            }
            ("trace_table_avp", ParamValue::Str(s)) => {
                if !s.starts_with("$avp(") {
                    return Err(bad("expected an AVP such as $avp(table)"));
                }
                self.trace_table_avp = Some(s.to_string());
            }
            ("trace_local_ip", ParamValue::Str(s)) => {
                let local = Endpoint::parse(s)
                    .ok_or_else(|| bad("expected proto:ip:port, such as udp:192.0.2.10:5060"))?;
                self.trace_local_ip = Some(local);
            }
            // The C module's ways to keep database writes from delaying the
            // workers; rows here are always written by the senders, in
            // batches, so every mode means the same.
            ("trace_db_mode", ParamValue::Int(n)) => {
                if !(0..=2).contains(&n) {
                    return Err(bad("must be 0 (insert), 1 (delayed) or 2 (async)"));
                }
                self.db_mode_asked = n as u8;
            }
            ("trace_delayed", ParamValue::Int(n)) => {
                if n != 0 {
                    self.db_mode_asked = 1;
                }
            }
            ("xheaders_write", ParamValue::Int(n)) => self.settings.xheaders_write = n != 0,
            ("xheaders_read", ParamValue::Int(n)) => self.xheaders_read = n != 0,
            ("send_sock_name", ParamValue::Str(s)) => {
                self.send_socket_name = Some(non_empty(name, s)?.to_string());
            }
            ("send_sock_addr" | "force_send_sock", ParamValue::Str(s)) => {
                let uri = DestUri::parse_supported(s).map_err(|DestError(e)| bad(&e))?;
                if uri.literal().is_none() {
                    return Err(bad("the send socket must be given by its IP address, as in listen"));
                }
                self.send_socket_addr = Some(UriParam { text: s.to_string(), uri });
            }
            ("evcb_msg", ParamValue::Str(s)) => self.evcb_msg = Some(non_empty(name, s)?.to_string()),
            ("trace_rpc", ParamValue::Int(n)) => self.trace_rpc = int_in(name, n, 0, 1)? == 1,
            ("trace_rpc_filter", ParamValue::Str(s)) => {
                self.trace_rpc_filter = CommandFilter::parse(s).map_err(|e| bad(&e))?;
            }
            ("trace_net", ParamValue::Int(n)) => self.trace_net = int_in(name, n, 0, 1)? == 1,
            // A set of flags; 1, the advertised address, is the only one.
            ("data_mode", ParamValue::Int(n)) => {
                if !(0..=1).contains(&n) {
                    return Err(bad("the only flag is 1 (the advertised address in trace_mode records)"));
                }
                self.data_mode_advertised = n == 1;
            }
            ("trace_dialog_ack", ParamValue::Int(n)) => self.trace_dialog_ack = n != 0,
            ("trace_dialog_spiral", ParamValue::Int(n)) => self.trace_dialog_spiral = n != 0,
            ("trace_sessions_max", ParamValue::Int(n)) => {
                self.sessions_max = int_in(name, n, 0, session::LIMIT_MAX_SESSIONS as i32)? as u32;
            }
            ("trace_session_max_seconds", ParamValue::Int(n)) => {
                self.session_max_seconds = int_in(name, n, 1, session::LIMIT_MAX_SECONDS as i32)? as u32;
            }
            ("trace_skip_methods", ParamValue::Str(s)) => {
                self.noise.skip_methods = if s.trim().is_empty() {
                    MethodSet::default()
                } else {
                    MethodSet::parse(s).map_err(|e| bad(&e))?
                };
            }
            ("trace_sample", ParamValue::Int(n)) => {
                self.noise.sample_per_mille = int_in(name, n, 0, 1000)? as u16
            }
            ("hep_node_name", ParamValue::Str(s)) => {
                if s.is_empty() || s.len() > 255 || s.chars().any(char::is_control) {
                    return Err(bad("must be 1 to 255 bytes, without control characters"));
                }
                self.settings.hep.node_name = Some(s.as_bytes().to_vec());
            }
            _ => return Err(bad("unknown parameter or wrong type")),
        }
        Ok(())
    }

    /// Checks that the parameters make sense together. Called once, when
    /// all of them are set.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mode = self.trace_mode;
        if (mode.hep() || mode.duplicate()) && self.duplicate_uri.is_empty() {
            return Err(ConfigError::new(
                "trace_mode",
                mode.0,
                "tracing to HEP or as a SIP duplicate needs duplicate_uri, which is not set",
            ));
        }
        if self.settings.hep.version < 3 {
            if let Some(p) = self.duplicate_uri.iter().find(|p| p.uri.transport != Transport::Udp) {
                return Err(ConfigError::new(
                    "duplicate_uri",
                    &p.text,
                    format!(
                        "HEP version {} has no length field to frame it on a stream; use UDP or hep_version 3",
                        self.settings.hep.version
                    ),
                ));
            }
        }
        for (param, on) in [("trace_rpc", self.trace_rpc), ("trace_net", self.trace_net)] {
            if on && (!self.hep_mode_on || self.duplicate_uri.is_empty() || self.settings.hep.version != 3) {
                return Err(ConfigError::new(
                    param,
                    1,
                    "these records are HEPv3 only: set hep_mode_on=1, hep_version=3 and duplicate_uri",
                ));
            }
        }
        if let Some(name) = &self.settings.hep.node_name {
            if self.settings.hep.version != 3 {
                return Err(ConfigError::new(
                    "hep_node_name",
                    String::from_utf8_lossy(name),
                    format!(
                        "HEP version {} has no chunk for it; set hep_version=3",
                        self.settings.hep.version
                    ),
                ));
            }
        }
        if self.init_mode == InitMode::CoreEvents && !mode.any() {
            return Err(ConfigError::new(
                "trace_init_mode",
                1,
                "core event tracing needs trace_mode to select an output",
            ));
        }
        Ok(())
    }

    /// Whether rows go to the database: the script functions store them
    /// when trace_to_database is on, the core events when trace_mode says so.
    pub fn uses_database(&self) -> bool {
        self.trace_to_database || self.trace_mode.db()
    }

    fn column_mut(&mut self, param: &str) -> Option<&mut String> {
        let c = &mut self.columns;
        Some(match param {
            "msg_column" => &mut c.msg,
            "callid_column" => &mut c.callid,
            "method_column" => &mut c.method,
            "status_column" => &mut c.status,
            "fromip_column" => &mut c.fromip,
            "toip_column" => &mut c.toip,
            "date_column" => &mut c.date,
            "direction_column" => &mut c.direction,
            "fromtag_column" => &mut c.fromtag,
            "traced_user_column" => &mut c.traced_user,
            "time_us_column" => &mut c.time_us,
            "totag_column" => &mut c.totag,
            _ => return None,
        })
    }
}

fn int_in(param: &str, n: i32, min: i32, max: i32) -> Result<i32, ConfigError> {
    if n < min || n > max {
        return Err(ConfigError::new(param, n, format!("must be between {min} and {max}")));
    }
    Ok(n)
}

fn non_empty<'a>(param: &str, s: &'a str) -> Result<&'a str, ConfigError> {
    if s.trim().is_empty() {
        return Err(ConfigError::new(param, s, "must not be empty"));
    }
    Ok(s)
}

/// Table and column names go into SQL built by the DB drivers, so they are
/// held to plain identifiers.
fn sql_identifier(param: &str, s: &str) -> Result<String, ConfigError> {
    if !crate::core::sql::is_identifier(s.as_bytes()) {
        return Err(ConfigError::new(param, s, "must be a plain SQL identifier (letters, digits, '_')"));
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::dest::Host;
    use crate::core::hep::HepSettings;
    use crate::core::settings::Senders;

    fn set(c: &mut Config, name: &str, value: ParamValue<'_>) -> Result<(), ConfigError> {
        let (_, ty) = PARAMS.iter().find(|(n, _)| n.to_str() == Ok(name)).expect("known parameter");
        assert_eq!(
            *ty,
            match value {
                ParamValue::Int(_) => ParamType::Int,
                ParamValue::Str(_) => ParamType::Str,
            }
        );
        c.set(name, value)
    }

    #[test]
    fn every_exported_parameter_is_handled() {
        // Each parameter either takes its value or refuses with its own name;
        // none falls through to "unknown".
        for (name, ty) in PARAMS {
            let name = name.to_str().unwrap();
            let value = match ty {
                ParamType::Int => ParamValue::Int(1),
                ParamType::Str => ParamValue::Str("x"),
            };
            if let Err(e) = Config::default().set(name, value) {
                assert_eq!(e.param, name);
                assert!(!e.reason.contains("unknown parameter"), "{name}: {e}");
            }
        }
        assert_eq!(PARAMS.len(), 60);
    }

    #[test]
    fn working_parameters() {
        let mut c = Config::default();
        set(&mut c, "db_url", ParamValue::Str("sqlite:///tmp/x.db")).unwrap();
        set(&mut c, "table", ParamValue::Str("trace_2026")).unwrap();
        set(&mut c, "callid_column", ParamValue::Str("cid")).unwrap();
        set(&mut c, "trace_on", ParamValue::Int(1)).unwrap();
        set(&mut c, "trace_to_database", ParamValue::Int(0)).unwrap();
        set(&mut c, "hep_mode_on", ParamValue::Int(1)).unwrap();
        set(&mut c, "hep_version", ParamValue::Int(3)).unwrap();
        set(&mut c, "hep_capture_id", ParamValue::Int(4242)).unwrap();
        set(&mut c, "auth_key", ParamValue::Str("secret")).unwrap();
        set(&mut c, "duplicate_uri", ParamValue::Str("sip:capture.example.net:9060")).unwrap();
        set(&mut c, "trace_mode", ParamValue::Int(3)).unwrap();
        set(&mut c, "trace_init_mode", ParamValue::Int(1)).unwrap();
        set(&mut c, "trace_db_mode", ParamValue::Int(0)).unwrap();
        set(&mut c, "trace_sl_acks", ParamValue::Int(0)).unwrap();
        set(&mut c, "trace_flag", ParamValue::Int(22)).unwrap();
        c.validate().unwrap();
        assert_eq!(c.trace_flag, Some(22));
        assert!(!c.trace_sl_acks);
        assert_eq!(c.db_url.as_deref(), Some("sqlite:///tmp/x.db"));
        assert_eq!(c.table, "trace_2026");
        assert_eq!(c.columns.callid, "cid");
        assert!(c.trace_on && !c.trace_to_database && c.hep_mode_on);
        assert_eq!(
            c.settings.hep,
            HepSettings {
                capture_id: 4242,
                auth_key: Some(b"secret".to_vec()),
                version: 3,
                ..Default::default()
            }
        );
        let dup = &c.duplicate_uri[0];
        assert_eq!(dup.text, "sip:capture.example.net:9060");
        assert_eq!(dup.uri.host, Host::Name("capture.example.net".into()));
        assert!(c.trace_mode.hep() && c.trace_mode.db() && !c.trace_mode.duplicate());
        assert_eq!(c.init_mode, InitMode::CoreEvents);
        assert!(c.uses_database());
    }

    #[test]
    fn defaults_match_the_c_module() {
        let c = Config::default();
        assert!(!c.trace_on && c.trace_to_database && !c.hep_mode_on);
        assert_eq!(c.settings.hep.capture_id, 1);
        assert_eq!(c.table, "sip_trace");
        assert_eq!(c.columns.date, "time_stamp");
        assert_eq!(c.init_mode, InitMode::All);
        assert!(!c.trace_mode.any());
        assert!(c.trace_flag.is_none() && c.trace_sl_acks);
        assert!(c.db_native);
        c.validate().unwrap();
    }

    #[test]
    fn db_native_chooses_the_writer() {
        let mut c = Config::default();
        c.set("db_native", ParamValue::Int(0)).unwrap();
        assert!(!c.db_native);
        c.set("db_native", ParamValue::Int(1)).unwrap();
        assert!(c.db_native);
    }

    #[test]
    fn bad_values_name_the_parameter_and_value() {
        let cases: &[(&str, ParamValue<'_>, &str)] = &[
            ("hep_version", ParamValue::Int(7), "supported HEP versions"),
            ("duplicate_uri", ParamValue::Str("!!garbage!!"), "expected a sip: URI"),
            ("duplicate_uri", ParamValue::Str("sip:10.0.0.1:9060;transport=ws"), "transport 'ws'"),
            ("senders", ParamValue::Int(0), "between 1 and 16"),
            ("queue_size", ParamValue::Int(8), "between 64 and"),
            ("batch_size", ParamValue::Int(5000), "between 1 and 1024"),
            ("flush_interval", ParamValue::Int(0), "between 1 and 1000"),
            ("db_flush_interval", ParamValue::Int(0), "between 1 and 10000"),
            ("db_batch_size", ParamValue::Int(0), "between 1 and 100000"),
            ("db_native", ParamValue::Int(2), "between 0 and 1"),
            ("hep_distribution", ParamValue::Str("round-robin"), "expected copy, failover or shard"),
            ("failover_return", ParamValue::Int(-1), "between 0 and 86400"),
            ("spool_dir", ParamValue::Str(" "), "empty"),
            ("spool_max_size", ParamValue::Int(0), "between 1 and"),
            ("spool_replay_rate", ParamValue::Int(0), "between 1 and 1000000"),
            ("hep_capture_id", ParamValue::Int(-1), "negative"),
            ("trace_mode", ParamValue::Int(8), "bits"),
            ("trace_init_mode", ParamValue::Int(3), "must be 0"),
            ("trace_db_mode", ParamValue::Int(5), "must be 0"),
            ("table", ParamValue::Str("sip_trace; DROP TABLE x"), "identifier"),
            ("db_url", ParamValue::Str(""), "empty"),
            ("traced_user_avp", ParamValue::Str("$var(u)"), "expected an AVP"),
            ("trace_table_avp", ParamValue::Str("$var(t)"), "expected an AVP"),
            ("trace_local_ip", ParamValue::Str("10.0.0.1"), "expected proto:ip:port"),
            ("trace_flag", ParamValue::Int(32), "between -1 and 31"),
            ("send_sock_name", ParamValue::Str(""), "empty"),
            ("send_sock_addr", ParamValue::Str("sip:lan.example.com:5060"), "IP address"),
            ("evcb_msg", ParamValue::Str(""), "empty"),
            ("data_mode", ParamValue::Int(2), "the only flag is 1"),
        ];
        for (name, value, reason) in cases {
            let e = set(&mut Config::default(), name, *value).unwrap_err();
            let text = e.to_string();
            assert!(text.contains(&format!("'{name}'")), "{text}");
            assert!(text.contains(&format!("'{value}'")), "{text}");
            assert!(text.contains(reason), "{text}");
        }
    }

    #[test]
    fn database_insert_modes_are_accepted() {
        let mut c = Config::default();
        for n in 0..=2 {
            c.set("trace_db_mode", ParamValue::Int(n)).unwrap();
            assert_eq!(c.db_mode_asked, n as u8);
        }
        let mut c = Config::default();
        c.set("trace_delayed", ParamValue::Int(1)).unwrap();
        assert_eq!(c.db_mode_asked, 1);
    }

    #[test]
    fn several_destinations_and_sender_settings() {
        let mut c = Config::default();
        c.set("duplicate_uri", ParamValue::Str("sip:10.0.0.1:9060")).unwrap();
        c.set("duplicate_uri", ParamValue::Str("sip:10.0.0.2:9061;transport=tcp")).unwrap();
        c.set("duplicate_uri", ParamValue::Str("sips:homer.example.com:9062")).unwrap();
        assert_eq!(c.duplicate_uri.len(), 3);
        c.set("senders", ParamValue::Int(2)).unwrap();
        c.set("queue_size", ParamValue::Int(1024)).unwrap();
        c.set("batch_size", ParamValue::Int(128)).unwrap();
        c.set("flush_interval", ParamValue::Int(5)).unwrap();
        c.set("tls_ca_file", ParamValue::Str("/etc/homer/ca.pem")).unwrap();
        c.set("db_batch_size", ParamValue::Int(50)).unwrap();
        c.set("db_flush_interval", ParamValue::Int(1000)).unwrap();
        assert_eq!(
            c.settings.senders,
            Senders {
                count: 2,
                queue_bytes: 1 << 20,
                batch_size: 128,
                flush_interval_ms: 5,
                tls_ca_file: "/etc/homer/ca.pem".into(),
                db_batch_size: 50,
                db_flush_interval_ms: 1000,
            }
        );
        // Each record names its destinations in the queue with a one-byte count.
        let mut c = Config::default();
        for _ in 0..MAX_DESTINATIONS {
            c.set("duplicate_uri", ParamValue::Str("sip:10.0.0.1:9060")).unwrap();
        }
        let e = c.set("duplicate_uri", ParamValue::Str("sip:10.0.0.1:9060")).unwrap_err();
        assert!(e.to_string().contains("at most 255"), "{e}");
        assert_eq!(c.duplicate_uri.len(), 255);
        let d = Senders::default();
        assert_eq!((d.count, d.queue_bytes, d.batch_size, d.flush_interval_ms), (1, 4 << 20, 64, 20));
    }

    #[test]
    fn errors_about_secrets_do_not_show_them() {
        let e = ConfigError::new("auth_key", "hep-secret", "bad");
        assert!(!e.to_string().contains("hep-secret"), "{e}");
        let e = ConfigError::new("db_url", "postgres://u:pw-secret@db/k", "bad");
        assert!(!e.to_string().contains("pw-secret"), "{e}");
        assert!(ConfigError::new("trace_mode", 9, "bad").to_string().contains("'9'"));
    }

    #[test]
    fn combinations_are_checked() {
        let mut c = Config::default();
        c.set("trace_mode", ParamValue::Int(1)).unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("duplicate_uri"));
        let mut c = Config::default();
        c.set("trace_init_mode", ParamValue::Int(1)).unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("trace_mode"));
        for param in ["trace_rpc", "trace_net"] {
            let mut c = Config::default();
            c.set(param, ParamValue::Int(1)).unwrap();
            assert!(c.validate().unwrap_err().to_string().contains("hep_mode_on"), "{param}");
            c.set("hep_mode_on", ParamValue::Int(1)).unwrap();
            c.set("duplicate_uri", ParamValue::Str("sip:127.0.0.1:9060")).unwrap();
            c.validate().unwrap();
            c.set("hep_version", ParamValue::Int(2)).unwrap();
            assert!(c.validate().is_err());
        }
    }

    #[test]
    fn kamailio_6_0_parameters() {
        let c = Config::default();
        assert!(!c.data_mode_advertised && c.trace_dialog_ack && c.trace_dialog_spiral, "6.0's defaults");
        let mut c = Config::default();
        set(&mut c, "data_mode", ParamValue::Int(1)).unwrap();
        set(&mut c, "trace_dialog_ack", ParamValue::Int(0)).unwrap();
        set(&mut c, "trace_dialog_spiral", ParamValue::Int(0)).unwrap();
        assert!(c.data_mode_advertised && !c.trace_dialog_ack && !c.trace_dialog_spiral);
        for (name, _) in LATER_PARAMS {
            assert!(PARAMS.iter().any(|(n, _)| n.to_str() == Ok(*name)), "{name} is exported");
            assert_eq!(needs_release(name), Some((6, 0)));
        }
        assert_eq!(needs_release("trace_mode"), None);
    }

    #[test]
    fn session_and_noise_parameters() {
        let c = Config::default();
        assert_eq!((c.sessions_max, c.session_max_seconds), (16, 3600));
        assert!(c.noise.is_off() && c.settings.hep.node_name.is_none());
        let mut c = Config::default();
        c.set("trace_sessions_max", ParamValue::Int(0)).unwrap();
        c.set("trace_session_max_seconds", ParamValue::Int(600)).unwrap();
        c.set("trace_skip_methods", ParamValue::Str("OPTIONS|notify")).unwrap();
        c.set("trace_sample", ParamValue::Int(100)).unwrap();
        c.set("hep_node_name", ParamValue::Str("proxy-eu-1")).unwrap();
        c.validate().unwrap();
        assert_eq!((c.sessions_max, c.session_max_seconds), (0, 600));
        assert_eq!(c.noise.skip_methods.to_string(), "OPTIONS|NOTIFY");
        assert_eq!(c.noise.sample_per_mille, 100);
        assert_eq!(c.settings.hep.node_name.as_deref(), Some(&b"proxy-eu-1"[..]));
        c.set("trace_skip_methods", ParamValue::Str("")).unwrap();
        assert!(c.noise.skip_methods.is_empty());
        c.set("hep_version", ParamValue::Int(2)).unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("'hep_node_name'") && e.contains("'proxy-eu-1'") && e.contains("hep_version=3"),
            "{e}"
        );
        for (name, value, why) in [
            ("trace_sessions_max", ParamValue::Int(257), "between 0 and 256"),
            ("trace_sessions_max", ParamValue::Int(-1), "between 0 and 256"),
            ("trace_session_max_seconds", ParamValue::Int(0), "between 1 and 604800"),
            ("trace_skip_methods", ParamValue::Str("OPTIONS;NOTIFY"), "not a SIP method"),
            ("trace_skip_methods", ParamValue::Str("OPTIONS||NOTIFY"), "empty method"),
            ("trace_sample", ParamValue::Int(1001), "between 0 and 1000"),
            ("hep_node_name", ParamValue::Str(""), "1 to 255 bytes"),
            ("hep_node_name", ParamValue::Str("a\nb"), "control"),
        ] {
            let e = Config::default().set(name, value).unwrap_err().to_string();
            assert!(e.contains(&format!("'{name}'")) && e.contains(why), "{e}");
        }
    }

    #[test]
    fn rpc_parameters_are_checked() {
        let mut c = Config::default();
        let e = c.set("trace_rpc_filter", ParamValue::Str("allow")).unwrap_err().to_string();
        assert!(e.contains("trace_rpc_filter") && e.contains("allow"), "{e}");
        assert!(c.set("trace_rpc", ParamValue::Int(2)).is_err());
    }

    #[test]
    fn cluster_and_spool_parameters() {
        let mut c = Config::default();
        assert_eq!(c.settings.delivery, crate::core::settings::Delivery::default());
        c.set("hep_distribution", ParamValue::Str(" Shard ")).unwrap();
        c.set("failover_return", ParamValue::Int(5)).unwrap();
        let dir = std::env::temp_dir().join(format!("siptrace-config-spool-{}", std::process::id()));
        c.set("spool_dir", ParamValue::Str(dir.to_str().unwrap())).unwrap();
        c.set("spool_max_size", ParamValue::Int(2)).unwrap();
        c.set("spool_replay_rate", ParamValue::Int(200)).unwrap();
        let d = &c.settings.delivery;
        assert_eq!(d.distribution, crate::core::settings::Distribution::Shard);
        assert_eq!((d.failover_return_s, d.spool_max_bytes, d.spool_replay_rate), (5, 2 << 20, 200));
        assert_eq!(d.spool_dir.as_deref(), dir.to_str());
        // Checked at startup (startup.rs, through Delivery::check_spool_dir),
        // not here: validate() touches no disk.
        c.validate().unwrap();
        assert!(!dir.exists());
    }
}
