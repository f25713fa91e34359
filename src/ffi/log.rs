//! The log macros of both bindings. They format the line in Rust and hand
//! it to the log of the host this build is for (`crate::host_log`, which
//! each binding's host layer provides), which prints it through a fixed
//! `"%.*s"` format: SIP data and user values are never read as a format.

/// A log level, mapped by each host layer to its server's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

#[macro_export]
macro_rules! log_at {
    ($level:expr, $($arg:tt)*) => {
        if $crate::host_log::enabled($level) {
            $crate::host_log::write($level, concat!(module_path!(), "\0"), &format!($($arg)*));
        }
    };
}

#[macro_export]
macro_rules! log_error {
    ($($arg:tt)*) => { $crate::log_at!($crate::ffi::log::Level::Error, $($arg)*) };
}

#[macro_export]
macro_rules! log_warn {
    ($($arg:tt)*) => { $crate::log_at!($crate::ffi::log::Level::Warn, $($arg)*) };
}

#[macro_export]
macro_rules! log_info {
    ($($arg:tt)*) => { $crate::log_at!($crate::ffi::log::Level::Info, $($arg)*) };
}

#[macro_export]
macro_rules! log_debug {
    ($($arg:tt)*) => { $crate::log_at!($crate::ffi::log::Level::Debug, $($arg)*) };
}
