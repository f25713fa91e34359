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

/// Items that exist only in the module Kamailio loads.
macro_rules! binding {
    ($($item:item)*) => { $( #[cfg(all(feature = "kamailio", not(test)))] $item )* };
}

binding! {
    pub mod host;
    mod call_context;
    mod connections;
    mod db;
    mod dialog;
    mod events;
    mod exports;
    mod kemi;
    mod log_lines;
    mod msg_event;
    mod params;
    mod rest;
    mod rpc;
    mod rpc_trace;
    mod script;
    mod send_socket;
    mod sender;
    mod startup;
    mod state;
    mod stats;
    mod trace_info;
    mod tracer;
    mod transaction;
    mod users;
}
