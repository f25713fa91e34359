//! The FFI guard, shared with the other host bindings.

pub use crate::guard::{guard, install_panic_hook};
