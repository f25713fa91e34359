//! The Kamailio binding (module `siptrace`).
//!
//! - `config`: the modparam surface of Kamailio's siptrace, plain Rust, so
//!   that it is unit-tested and fuzzed without a server;
//! - `host`: the host layer, the only code that touches Kamailio's structs
//!   and C API;
//! - `state`: what mod_init settles; `startup`: mod_init and child_init;
//! - the policy files (what to trace, where, in which scope), which use the
//!   host layer's safe wrappers;
//! - `exports`: the tables Kamailio reads when it loads the module.
//!
//! Everything but `config` links against Kamailio, so it is built only for
//! the module itself, not for unit tests or fuzzing.

pub mod config;

// The host layer's formatting of RPC values, unit-tested against the C
// library.
#[cfg(any(test, feature = "kamailio"))]
mod c_format;

// What follows exists only in the module Kamailio loads: it links against
// the server. (An attribute on each line, so that rustfmt still finds the
// files.)
#[cfg(all(feature = "kamailio", not(test)))]
mod call_context;
#[cfg(all(feature = "kamailio", not(test)))]
mod connections;
#[cfg(all(feature = "kamailio", not(test)))]
mod db;
#[cfg(all(feature = "kamailio", not(test)))]
mod dialog;
#[cfg(all(feature = "kamailio", not(test)))]
mod events;
#[cfg(all(feature = "kamailio", not(test)))]
mod exports;
#[cfg(all(feature = "kamailio", not(test)))]
pub mod host;
#[cfg(all(feature = "kamailio", not(test)))]
mod kemi;
#[cfg(all(feature = "kamailio", not(test)))]
mod log_lines;
#[cfg(all(feature = "kamailio", not(test)))]
mod msg_event;
#[cfg(all(feature = "kamailio", not(test)))]
mod params;
#[cfg(all(feature = "kamailio", not(test)))]
mod rest;
#[cfg(all(feature = "kamailio", not(test)))]
mod row_writer;
#[cfg(all(feature = "kamailio", not(test)))]
mod rpc;
#[cfg(all(feature = "kamailio", not(test)))]
mod rpc_trace;
#[cfg(all(feature = "kamailio", not(test)))]
mod script;
#[cfg(all(feature = "kamailio", not(test)))]
mod send_socket;
#[cfg(all(feature = "kamailio", not(test)))]
mod sender;
#[cfg(all(feature = "kamailio", not(test)))]
mod sessions;
#[cfg(all(feature = "kamailio", not(test)))]
mod startup;
#[cfg(all(feature = "kamailio", not(test)))]
mod state;
#[cfg(all(feature = "kamailio", not(test)))]
mod stats;
#[cfg(all(feature = "kamailio", not(test)))]
mod trace_info;
#[cfg(all(feature = "kamailio", not(test)))]
mod trace_msg;
#[cfg(all(feature = "kamailio", not(test)))]
mod tracer;
#[cfg(all(feature = "kamailio", not(test)))]
mod transaction;
#[cfg(all(feature = "kamailio", not(test)))]
mod users;
