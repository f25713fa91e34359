//! The OpenSIPS binding: module `tracer`, in place of OpenSIPS's own. The
//! same core as on Kamailio: script calls copy records into shared-memory
//! queues, and a sender process delivers them.
//!
//! Implemented: every modparam of the tracer (`trace_id` with `hep:`, `sip:`,
//! database, `file:` and `syslog` destinations; the column names;
//! `trace_local_ip`), `trace()` in the message, transaction, dialog and B2B
//! scopes, for SIP and for the kinds of records the trace API carries
//! (xlog, rest), the MI commands, and the statistics.
//!
//! `host/` is the only code that touches OpenSIPS; `state.rs` holds what
//! mod_init (`startup.rs`) settles; the other files are policy on top of
//! the host layer. Everything here links against OpenSIPS, so it is built
//! only for the module itself, not for unit tests or fuzzing.

// What follows exists only in the module OpenSIPS loads: it links against
// the server. (An attribute on each line, so that rustfmt still finds the
// files.)
#[cfg(all(feature = "opensips", not(test)))]
mod b2b;
#[cfg(all(feature = "opensips", not(test)))]
mod db;
#[cfg(all(feature = "opensips", not(test)))]
mod dialog;
#[cfg(all(feature = "opensips", not(test)))]
mod exports;
#[cfg(all(feature = "opensips", not(test)))]
mod hep;
#[cfg(all(feature = "opensips", not(test)))]
pub mod host;
#[cfg(all(feature = "opensips", not(test)))]
mod mi;
#[cfg(all(feature = "opensips", not(test)))]
mod params;
#[cfg(all(feature = "opensips", not(test)))]
mod script;
#[cfg(all(feature = "opensips", not(test)))]
mod sender;
#[cfg(all(feature = "opensips", not(test)))]
mod sinks;
#[cfg(all(feature = "opensips", not(test)))]
mod startup;
#[cfg(all(feature = "opensips", not(test)))]
mod state;
#[cfg(all(feature = "opensips", not(test)))]
mod stats;
#[cfg(all(feature = "opensips", not(test)))]
mod tls;
#[cfg(all(feature = "opensips", not(test)))]
mod trace_api;
#[cfg(all(feature = "opensips", not(test)))]
mod tracer;
#[cfg(all(feature = "opensips", not(test)))]
mod transaction;
