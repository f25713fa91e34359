//! Logging through OpenSIPS's log machinery, always with the shim's fixed
//! "%.*s" format, so SIP data and user values are never read as a format.

use crate::opensips::sys;
use std::os::raw::{c_char, c_int};

pub const L_ERR: c_int = sys::L_ERR as c_int;
pub const L_WARN: c_int = sys::L_WARN as c_int;
pub const L_INFO: c_int = sys::L_INFO as c_int;
#[allow(dead_code)]
pub const L_DBG: c_int = sys::L_DBG as c_int;

pub fn enabled(level: c_int) -> bool {
    // SAFETY: reads the process's log level.
    unsafe { sys::siptrace_os_log_enabled(level) != 0 }
}

pub fn write(level: c_int, text: &str) {
    let len = c_int::try_from(text.len()).unwrap_or(c_int::MAX);
    // SAFETY: `text` is valid for `len` bytes; the shim prints it with "%.*s".
    unsafe { sys::siptrace_os_log(level, text.as_ptr() as *const c_char, len) }
}

#[macro_export]
macro_rules! log_at {
    ($level:expr, $($arg:tt)*) => {
        if $crate::opensips::log::enabled($level) {
            $crate::opensips::log::write($level, &format!($($arg)*));
        }
    };
}

#[macro_export]
macro_rules! log_error {
    ($($arg:tt)*) => { $crate::log_at!($crate::opensips::log::L_ERR, $($arg)*) };
}

#[macro_export]
macro_rules! log_warn {
    ($($arg:tt)*) => { $crate::log_at!($crate::opensips::log::L_WARN, $($arg)*) };
}

#[macro_export]
macro_rules! log_info {
    ($($arg:tt)*) => { $crate::log_at!($crate::opensips::log::L_INFO, $($arg)*) };
}

#[macro_export]
macro_rules! log_debug {
    ($($arg:tt)*) => { $crate::log_at!($crate::opensips::log::L_DBG, $($arg)*) };
}
