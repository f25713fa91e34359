//! Kamailio's log, for the shared log macros (`crate::ffi::log`). The text
//! always goes through the shim's fixed "%.*s" format.

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
    // SAFETY: reads the process's debug level; no arguments to validate.
    unsafe { sys::siptrace_shim_log_enabled(level(at)) != 0 }
}

/// Writes one line. `func` (the Rust module path) must end with a NUL byte.
pub fn write(at: Level, func: &'static str, text: &str) {
    debug_assert!(func.ends_with('\0'));
    let len = c_int::try_from(text.len()).unwrap_or(c_int::MAX);
    // SAFETY: `func` is NUL-terminated and static; `text` is valid for `len`
    // bytes, and the shim formats it with "%.*s".
    unsafe {
        sys::siptrace_shim_log(level(at), func.as_ptr() as *const c_char, text.as_ptr() as *const c_char, len)
    }
}
