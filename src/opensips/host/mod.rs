//! The OpenSIPS host layer: the only code that reads OpenSIPS's structs or
//! calls its C API (`sys`). Policy code above it sees safe wrappers. A
//! difference between OpenSIPS releases is handled here, selected by the
//! cfgs build.rs emits for the tree it builds against.

pub mod log;
pub mod sys;
