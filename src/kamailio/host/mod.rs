//! The Kamailio host layer: the only code that reads Kamailio's structs or
//! calls its C API (`sys`) and the C shim (wrapper/kamailio/). Policy code
//! above it sees safe wrappers, one file per concern; the `extern "C"`
//! entry points Kamailio calls are here too, each running in
//! `ffi::guard::guard`, and hand the policy's handlers (traits it
//! implements, or functions it registers) these wrappers. A difference
//! between Kamailio releases is handled in the one wrapper that reads what
//! changed, selected by the cfgs build.rs emits for the tree it builds
//! against.

pub mod avp;
pub mod cmd;
pub mod db;
pub mod dialog;
pub mod events;
pub mod http;
pub mod kemi;
pub mod log;
pub mod log_hook;
pub mod modparam;
pub mod msg;
pub mod net;
pub mod process;
pub mod pv;
pub mod route;
pub mod rpc;
pub mod rpc_interpose;
pub mod script_cb;
pub mod shm;
pub mod sl;
pub mod socket;
pub mod stats;
pub mod sys;
pub mod tcp;
pub mod tm;
pub mod version;
