//! siptrace-rs: a SIP trace module for Kamailio, loaded in place of the C
//! `siptrace` module.
//!
//! [`core`] holds what is independent of the host server; `kamailio` is the
//! thin binding that Kamailio loads, and `opensips` the one OpenSIPS loads
//! (one per build, chosen by cargo feature).

pub mod core;

#[cfg(all(any(feature = "kamailio", feature = "opensips"), not(test)))]
mod guard;

#[cfg(all(any(feature = "kamailio", feature = "opensips"), not(test)))]
mod supervise;

#[cfg(all(feature = "kamailio", not(test)))]
mod kamailio;

#[cfg(all(feature = "opensips", not(test)))]
mod opensips;
