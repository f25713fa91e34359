//! OpenSIPS's log: for the shared log macros (`crate::ffi::log`), for
//! `syslog` trace destinations, and the core's log settings they default
//! to. Text always goes through the shim's fixed "%.*s" format.

use super::sys;
use crate::ffi::log::Level;
use std::os::raw::{c_char, c_int};

fn level(level: Level) -> c_int {
    match level {
        Level::Error => sys::L_ERR as c_int,
        Level::Warn => sys::L_WARN as c_int,
        Level::Info => sys::L_INFO as c_int,
        Level::Debug => sys::L_DBG as c_int,
    }
}

pub fn enabled(at: Level) -> bool {
    // SAFETY: reads the process's log level.
    unsafe { sys::siptrace_os_log_enabled(level(at)) != 0 }
}

/// Writes one line; OpenSIPS's log prefix names the module, not the
/// function, so `_func` is not printed.
pub fn write(at: Level, _func: &'static str, text: &str) {
    let len = c_int::try_from(text.len()).unwrap_or(c_int::MAX);
    // SAFETY: `text` is valid for `len` bytes; the shim prints it with "%.*s".
    unsafe { sys::siptrace_os_log(level(at), text.as_ptr() as *const c_char, len) }
}

/// The core's `log_facility`, the default of `syslog` destinations.
pub fn core_facility() -> c_int {
    // SAFETY: reads a core setting.
    unsafe { sys::siptrace_os_log_facility() }
}

/// The core's `log_level`, the default level of `syslog` destinations.
pub fn core_level() -> c_int {
    // SAFETY: reads a core setting.
    unsafe { sys::siptrace_os_log_level() }
}

/// Logs `text` as it is, at OpenSIPS log level `level` with syslog
/// `facility`, through every log output OpenSIPS has: a `syslog` trace.
pub fn write_to(facility: c_int, level: c_int, text: &[u8]) {
    let len = c_int::try_from(text.len()).unwrap_or(c_int::MAX);
    // SAFETY: `text` is valid for `len` bytes; the shim logs it with "%.*s".
    unsafe { sys::siptrace_os_log_to(facility, level, text.as_ptr() as *const c_char, len) }
}
