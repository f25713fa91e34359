//! The one guard every `extern "C"` entry point runs its body in: a panic
//! becomes a logged error and a failure value for the host server, never an
//! unwind into C or an abort of the server. Every host binding uses it.

use std::panic::{self, AssertUnwindSafe};

/// Runs `body`; if it panics, logs it and returns `on_panic`.
pub fn guard<R>(entry: &str, on_panic: R, body: impl FnOnce() -> R) -> R {
    match panic::catch_unwind(AssertUnwindSafe(body)) {
        Ok(result) => result,
        Err(_) => {
            crate::log_error!("recovered from an internal error in {entry}; the operation was abandoned");
            on_panic
        }
    }
}

/// Sends panic messages to the server's log instead of stderr, which a
/// daemonized server does not have.
pub fn install_panic_hook() {
    panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        crate::log_error!("internal error at {location}: {message}");
    }));
}
