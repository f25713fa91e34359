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

/// Items that exist only in the module OpenSIPS loads.
macro_rules! binding {
    ($($item:item)*) => { $( #[cfg(all(feature = "opensips", not(test)))] $item )* };
}

binding! {
    pub mod host;
    mod b2b;
    mod db;
    mod dialog;
    mod exports;
    mod hep;
    mod mi;
    mod params;
    mod script;
    mod sender;
    mod sinks;
    mod startup;
    mod state;
    mod stats;
    mod tls;
    mod trace_api;
    mod tracer;
    mod transaction;
}
