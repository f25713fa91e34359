//! The modparams of OpenSIPS's `tracer`, all of them. Each one goes through
//! a function, so that a bad value stops OpenSIPS at startup with a message
//! that names the parameter and the value. exports.rs lists them.

use crate::core::endpoint::Endpoint;
use crate::core::settings::Delivery;
use crate::core::trace_id::{self, TraceId, TraceTarget};
use crate::ffi::lock;
use crate::opensips::host::modparam::{Dependencies, IntSetter, Needs, StrSetter};
use std::ffi::CStr;
use std::os::raw::c_int;
use std::sync::Mutex;

/// What the modparams said, until mod_init takes it.
#[derive(Debug, Default)]
pub struct Params {
    pub trace_ids: Vec<TraceId>,
    pub trace_on: Option<bool>,
    /// `trace_local_ip`: this server's end on what it sends, as traced.
    pub local_ip: Option<Endpoint>,
    /// The `*_column` parameters, in the order of `COLUMN_PARAMS`.
    pub columns: [Option<String>; 14],
    /// `file_mode`: the permissions a `file:` destination is created with.
    pub file_mode: Option<u32>,
    pub syslog_level: Option<i32>,
    pub syslog_facility: Option<c_int>,
    /// `hep_distribution`, `failover_return` and the spool's parameters;
    /// `None` while none is set.
    pub delivery: Option<Delivery>,
}

/// Set while OpenSIPS reads the configuration, before mod_init.
static PARAMS: Mutex<Params> = Mutex::new(Params {
    trace_ids: Vec::new(),
    trace_on: None,
    local_ip: None,
    columns: [const { None }; 14],
    file_mode: None,
    syslog_level: None,
    syslog_facility: None,
    delivery: None,
});

fn with_params<R>(f: impl FnOnce(&mut Params) -> R) -> R {
    f(&mut lock(&PARAMS))
}

/// What the modparams said; from mod_init.
pub fn take() -> Params {
    std::mem::take(&mut lock(&PARAMS))
}

/// The `*_column` parameters, in the order of the row's values (db.rs).
pub const COLUMN_PARAMS: [&CStr; 14] = [
    c"msg_column",
    c"callid_column",
    c"method_column",
    c"status_column",
    c"fromproto_column",
    c"fromip_column",
    c"fromport_column",
    c"toproto_column",
    c"toip_column",
    c"toport_column",
    c"date_column",
    c"direction_column",
    c"fromtag_column",
    c"trace_attrs_column",
];

/// The `*_column` parameter `I` of `COLUMN_PARAMS`.
pub struct Column<const I: usize>;

impl<const I: usize> StrSetter for Column<I> {
    const NAME: &'static CStr = COLUMN_PARAMS[I];

    /// The name goes to the DB layer as a column name: a plain SQL
    /// identifier, as for Kamailio's column parameters.
    fn set(value: Option<&str>) -> bool {
        let name = Self::NAME.to_str().unwrap_or("column");
        match value.map(str::trim) {
            Some(column) if crate::core::sql::is_identifier(column.as_bytes()) => {
                with_params(|p| p.columns[I] = Some(column.to_string()));
                true
            }
            other => {
                crate::log_error!(
                    "modparam '{name}' has a bad value '{}': a column name is letters, digits, _ and .",
                    other.unwrap_or("")
                );
                false
            }
        }
    }
}

/// The delivery's text parameters, in the order of `DeliveryText`'s index.
pub const DELIVERY_TEXT: [&CStr; 2] = [c"hep_distribution", c"spool_dir"];
/// The delivery's integer parameters, in the order of `DeliveryInt`'s index.
pub const DELIVERY_INT: [&CStr; 3] = [c"failover_return", c"spool_max_size", c"spool_replay_rate"];

/// How a trace id's several HEP destinations are used, and the disk spool
/// (the same parameters as on Kamailio, `core::settings::Delivery`): the
/// text parameter `I` of `DELIVERY_TEXT`.
pub struct DeliveryText<const I: usize>;

impl<const I: usize> StrSetter for DeliveryText<I> {
    const NAME: &'static CStr = DELIVERY_TEXT[I];
    fn set(value: Option<&str>) -> bool {
        let name = Self::NAME.to_str().unwrap_or("delivery");
        let text = value.unwrap_or("");
        match with_params(|p| p.delivery.get_or_insert_with(Delivery::default).set_str(name, text)) {
            Ok(()) => true,
            Err(e) => {
                crate::log_error!("modparam '{name}' has a bad value '{text}': {e}");
                false
            }
        }
    }
}

/// The integer parameter `I` of `DELIVERY_INT`.
pub struct DeliveryInt<const I: usize>;

impl<const I: usize> IntSetter for DeliveryInt<I> {
    const NAME: &'static CStr = DELIVERY_INT[I];
    fn set(value: isize) -> bool {
        let name = Self::NAME.to_str().unwrap_or("delivery");
        match with_params(|p| p.delivery.get_or_insert_with(Delivery::default).set_int(name, value as i64)) {
            Ok(()) => true,
            Err(e) => {
                crate::log_error!("modparam '{name}' has a bad value '{value}': {e}");
                false
            }
        }
    }
}

pub struct FileMode;

impl IntSetter for FileMode {
    const NAME: &'static CStr = c"file_mode";
    fn set(value: isize) -> bool {
        match value {
            mode @ 0..=0o7777 => {
                with_params(|p| p.file_mode = Some(mode as u32));
                true
            }
            mode => {
                crate::log_error!(
                    "modparam 'file_mode' has a bad value '{mode:o}' (octal): it is 0 to 07777"
                );
                false
            }
        }
    }
}

pub struct SyslogLevel;

impl IntSetter for SyslogLevel {
    const NAME: &'static CStr = c"syslog_default_level";
    fn set(value: isize) -> bool {
        match crate::core::trace_text::parse_level(&value.to_string()) {
            Ok(level) => {
                with_params(|p| p.syslog_level = Some(level));
                true
            }
            Err(e) => {
                crate::log_error!("modparam 'syslog_default_level' has a bad value: {e}");
                false
            }
        }
    }
}

pub struct SyslogFacility;

impl StrSetter for SyslogFacility {
    const NAME: &'static CStr = c"syslog_default_facility";
    fn set(value: Option<&str>) -> bool {
        let name = value.unwrap_or("");
        match crate::core::trace_text::facility(name) {
            Some(facility) => {
                with_params(|p| p.syslog_facility = Some(facility));
                true
            }
            None => {
                crate::log_error!(
                    "modparam 'syslog_default_facility' has a bad value '{name}': it is a syslog facility \
                     such as LOG_LOCAL0"
                );
                false
            }
        }
    }
}

pub struct TraceIdParam;

impl StrSetter for TraceIdParam {
    const NAME: &'static CStr = c"trace_id";
    fn set(value: Option<&str>) -> bool {
        let Some(text) = value else {
            crate::log_error!("modparam 'trace_id' has a value that is not text");
            return false;
        };
        match trace_id::parse(text) {
            Ok(id) => {
                with_params(|p| p.trace_ids.push(id));
                true
            }
            Err(e) => {
                crate::log_error!(
                    "modparam 'trace_id' has a bad value '{}': {e}",
                    crate::core::sql::redact_url(text)
                );
                false
            }
        }
    }
}

pub struct LocalIp;

impl StrSetter for LocalIp {
    const NAME: &'static CStr = c"trace_local_ip";
    fn set(value: Option<&str>) -> bool {
        let Some(text) = value else {
            crate::log_error!("modparam 'trace_local_ip' has a value that is not text");
            return false;
        };
        // Empty leaves the real addresses, as in OpenSIPS's tracer.
        if text.trim().is_empty() {
            with_params(|p| p.local_ip = None);
            return true;
        }
        match trace_id::parse_local_ip(text) {
            Ok(end) => {
                with_params(|p| p.local_ip = Some(end));
                true
            }
            Err(e) => {
                crate::log_error!("modparam 'trace_local_ip' has a bad value '{text}': {e}");
                false
            }
        }
    }
}

pub struct TraceOn;

impl IntSetter for TraceOn {
    const NAME: &'static CStr = c"trace_on";
    fn set(value: isize) -> bool {
        match value {
            v @ (0 | 1) => {
                with_params(|p| p.trace_on = Some(v == 1));
                true
            }
            v => {
                crate::log_error!("modparam 'trace_on' has a bad value '{v}': it is 0 or 1");
                false
            }
        }
    }
}

/// The modules `trace_id` needs initialized first: proto_hep for a hep:
/// destination, a database driver for a database one (the first of either
/// kind decides, as in OpenSIPS's tracer).
pub struct TraceIdNeeds;

impl Dependencies for TraceIdNeeds {
    const PARAM: &'static CStr = c"trace_id";
    fn needs() -> Option<Needs> {
        with_params(|p| {
            p.trace_ids.iter().find_map(|id| match &id.target {
                TraceTarget::Hep(_) => Some(Needs::Module(c"proto_hep")),
                TraceTarget::Db { .. } => Some(Needs::SqlDriver),
                _ => None,
            })
        })
    }
}
