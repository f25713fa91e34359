//! The host-agnostic core: everything that does not need a running server.
//! It is plain Rust and is unit-tested without one.

pub mod counters;
pub mod dest;
pub mod endpoint;
pub mod event;
pub mod hep;
pub mod noise;
pub mod ratelimit;
pub mod record;
pub mod ring;
pub mod rpc_command;
pub mod sender;
pub mod session;
pub mod settings;
pub mod shared;
pub mod shmlock;
pub mod sip;
pub mod sql;
pub mod store;
pub mod trace_id;
pub mod trace_text;
pub mod wire;
pub mod xheaders;
