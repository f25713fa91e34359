//! Processes OpenSIPS forks for the module (its `procs` export).

use super::sys;
use crate::ffi::guard::guard;
use std::ffi::CStr;
use std::os::raw::c_int;

pub trait Process {
    const NAME: &'static CStr;
    /// The body of process `index` of its kind.
    fn run(index: i32);
}

/// `count` processes running `P`.
pub const fn export<P: Process>(count: u32) -> sys::proc_export_t {
    sys::proc_export_t {
        name: P::NAME.as_ptr(),
        pre_fork_function: None,
        post_fork_function: None,
        function: Some(run::<P>),
        no: count,
        flags: 0,
    }
}

pub const END: sys::proc_export_t = sys::proc_export_t {
    name: std::ptr::null(),
    pre_fork_function: None,
    post_fork_function: None,
    function: None,
    no: 0,
    flags: 0,
};

unsafe extern "C" fn run<P: Process>(index: c_int) {
    guard(P::NAME.to_str().unwrap_or("process"), (), || P::run(index))
}

/// Ends the process at once: OpenSIPS's own exit path belongs to the main
/// process.
pub fn exit(code: i32) -> ! {
    // SAFETY: leaving the process without running OpenSIPS's exit handlers.
    unsafe { libc::_exit(code) }
}
