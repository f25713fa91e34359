//! siptrace-rs: a SIP trace module for Kamailio, loaded in place of the C
//! `siptrace` module.
//!
//! [`core`] holds what is independent of the host server; [`kamailio`] is
//! the thin binding that Kamailio loads.

pub mod core;

#[cfg(all(feature = "kamailio", not(test)))]
mod kamailio;
