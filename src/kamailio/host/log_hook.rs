//! The log hook (wrapper/kamailio/log_hook.c): every line Kamailio prints
//! passes through it, and while a traced call asks for its log lines, the
//! hook hands each to the handler installed here.

use super::sys;
use crate::ffi::guard::guard;
use crate::ffi::host_bytes;
use std::ffi::CStr;
use std::os::raw::{c_char, c_int};
use std::sync::OnceLock;

/// A printed log line, in its parts.
pub struct LogLine<'a> {
    /// The level's name, such as "ERROR".
    pub level: &'a [u8],
    /// The location prefix ("<core> [core/...]: ").
    pub location: &'a [u8],
    pub function: &'a [u8],
    /// The text, with its newline.
    pub text: &'a [u8],
}

static HANDLER: OnceLock<fn(&LogLine<'_>)> = OnceLock::new();

/// Puts the hook in place, with `handler` for the lines of traced calls;
/// the lines keep going where they went. In mod_init: a process forked
/// later cannot get it from another.
pub fn install(handler: fn(&LogLine<'_>)) {
    let _ = HANDLER.set(handler);
    // SAFETY: reads and sets the core's log function in the main process
    // before it forks, while no other thread logs; the hook prints as the
    // core would, through the function it replaces when there was one.
    unsafe {
        let hook = sys::siptrace_shim_log_hook();
        let current = sys::_ksr_slog_func;
        if current.map(|f| f as usize) == hook.map(|f| f as usize) {
            return;
        }
        sys::siptrace_shim_log_hook_chain(current);
        set_slog_func(hook);
    }
}

/// Makes `f` the core's structured-log function: through the setter
/// Kamailio 6.0 has for it, and by writing the global on 5.6, which has
/// none.
///
/// # Safety
/// In the main process before it forks, with no other thread logging.
#[cfg(kamailio_6_0)]
unsafe fn set_slog_func(f: sys::ksr_slog_f) {
    // SAFETY: per the contract.
    unsafe { sys::km_slog_func_set(f) };
}

/// See the 6.0 version.
///
/// # Safety
/// As there.
#[cfg(kamailio_5_6)]
unsafe fn set_slog_func(f: sys::ksr_slog_f) {
    // SAFETY: per the contract; the core reads the global at each line.
    unsafe { sys::_ksr_slog_func = f };
}

/// Whether this process's lines go to the handler now.
pub fn set_traced(on: bool) {
    // SAFETY: a plain int of this process, read by the hook.
    unsafe { sys::siptrace_shim_log_traced = c_int::from(on) };
}

/// From the hook: one printed line, while the lines are traced.
///
/// # Safety
/// The strings are null or NUL-terminated, `text` holds `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn siptrace_log_line(
    _level: c_int,
    lname: *const c_char,
    loc: *const c_char,
    func: *const c_char,
    text: *const c_char,
    len: c_int,
) {
    guard("the log line hook", (), || {
        let Some(handler) = HANDLER.get() else { return };
        let cstr = |p: *const c_char| {
            // Null reads as empty.
            if p.is_null() {
                &[][..]
            } else {
                // SAFETY: per the contract, a NUL-terminated string.
                unsafe { CStr::from_ptr(p) }.to_bytes()
            }
        };
        let Ok(len) = usize::try_from(len) else { return };
        if text.is_null() {
            return;
        }
        // SAFETY: per the contract.
        let text = if len == 0 { &[][..] } else { unsafe { host_bytes(text, len) }.unwrap_or_default() };
        handler(&LogLine { level: cstr(lname), location: cstr(loc), function: cstr(func), text });
    })
}
