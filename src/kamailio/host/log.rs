//! Logging through Kamailio's log machinery. The text always goes through
//! the shim's fixed "%.*s" format, so SIP data and user values are never
//! read as a format string.

use crate::kamailio::sys;
use std::os::raw::{c_char, c_int};

pub const L_ERR: c_int = sys::L_ERR;
pub const L_WARN: c_int = sys::L_WARN as c_int;
pub const L_INFO: c_int = sys::L_INFO as c_int;
pub const L_DBG: c_int = sys::L_DBG as c_int;

pub fn enabled(level: c_int) -> bool {
    // SAFETY: reads the process's debug level; no arguments to validate.
    unsafe { sys::siptrace_shim_log_enabled(level) != 0 }
}

/// Writes one line. `func` must end with a NUL byte.
pub fn write(level: c_int, func: &'static str, text: &str) {
    debug_assert!(func.ends_with('\0'));
    let len = c_int::try_from(text.len()).unwrap_or(c_int::MAX);
    // SAFETY: `func` is NUL-terminated and static; `text` is valid for `len`
    // bytes, and the shim formats it with "%.*s".
    unsafe {
        sys::siptrace_shim_log(level, func.as_ptr() as *const c_char, text.as_ptr() as *const c_char, len)
    }
}

#[macro_export]
macro_rules! log_at {
    ($level:expr, $($arg:tt)*) => {
        if $crate::kamailio::log::enabled($level) {
            $crate::kamailio::log::write($level, concat!(module_path!(), "\0"), &format!($($arg)*));
        }
    };
}

#[macro_export]
macro_rules! log_error {
    ($($arg:tt)*) => { $crate::log_at!($crate::kamailio::log::L_ERR, $($arg)*) };
}

#[macro_export]
macro_rules! log_warn {
    ($($arg:tt)*) => { $crate::log_at!($crate::kamailio::log::L_WARN, $($arg)*) };
}

#[macro_export]
macro_rules! log_info {
    ($($arg:tt)*) => { $crate::log_at!($crate::kamailio::log::L_INFO, $($arg)*) };
}

#[macro_export]
macro_rules! log_debug {
    ($($arg:tt)*) => { $crate::log_at!($crate::kamailio::log::L_DBG, $($arg)*) };
}
