//! siptrace-rs: a SIP trace module for Kamailio (module `siptrace`) and
//! OpenSIPS (module `tracer`), loaded in place of the servers' own C modules.
//!
//! - [`core`]: everything independent of the host server, unit-tested
//!   without one;
//! - [`ffi`]: the FFI toolbox both bindings share;
//! - `kamailio` and `opensips`: the two bindings, one per build, chosen by
//!   cargo feature. Each has a host layer (the only code that touches the
//!   server's structs), policy code on top of it, and its export tables.
//!   Their modparam surfaces are plain Rust and always built, for unit
//!   tests and fuzzing.
//!
//! doc/architecture.md describes the layers and how a record travels.

pub mod core;
pub mod ffi;
pub mod kamailio;
pub mod opensips;

#[cfg(all(any(feature = "kamailio", feature = "opensips"), not(test)))]
mod supervise;

/// The log of the server this build is for, behind the shared log macros.
#[cfg(all(feature = "kamailio", not(test)))]
use kamailio::host::log as host_log;
#[cfg(all(feature = "opensips", not(test)))]
use opensips::host::log as host_log;
