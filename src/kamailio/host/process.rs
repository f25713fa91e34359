//! Kamailio's processes: the ranks child_init runs with, the processes a
//! module forks, its process table, and the config framework each process
//! joins.

use super::sys;
use std::ffi::CString;
use std::os::raw::{c_char, c_int};

/// Which process child_init runs in.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Rank {
    /// The main process, after every mod_init and before any fork.
    Init,
    /// The main process, where modules fork their own processes.
    Main,
    /// Any other.
    Other,
}

pub fn rank(rank: c_int) -> Rank {
    match rank {
        sys::PROC_INIT => Rank::Init,
        r if r == sys::PROC_MAIN as c_int => Rank::Main,
        _ => Rank::Other,
    }
}

/// Announces `count` processes the module forks, and their place in the
/// config framework. In mod_init.
pub fn register_children(count: usize) -> Result<(), String> {
    let count = c_int::try_from(count).map_err(|_| "too many sender processes")?;
    // SAFETY: plain registration calls, made from mod_init as required.
    unsafe {
        if sys::register_procs(count) < 0 {
            return Err("cannot register the sender processes".into());
        }
        sys::cfg_register_child(count);
    }
    Ok(())
}

/// Which side of a fork this is.
pub enum Forked {
    Parent,
    Child,
}

/// Forks a process of the module, listed as `desc`. From child_init in
/// the main process. `None` when the fork failed.
pub fn fork(desc: &str) -> Option<Forked> {
    let desc = CString::new(desc).unwrap_or_default();
    // SAFETY: forking from child_init(PROC_MAIN), as the process API
    // requires; the description outlives the call.
    match unsafe { sys::fork_process(sys::PROC_NOCHLDINIT, desc.as_ptr() as *mut c_char, 0) } {
        pid if pid < 0 => None,
        0 => Some(Forked::Child),
        _ => Some(Forked::Parent),
    }
}

/// Joins the config framework, in a process `fork` made.
pub fn cfg_child_init() -> bool {
    // SAFETY: a process forked by fork_process after register_children.
    unsafe { sys::cfg_child_init() == 0 }
}

/// For a process forked by a module process: takes a config reference of
/// its own.
pub fn cfg_worker_init() {
    // SAFETY: forgets the reference inherited over fork, which belongs to
    // the parent, and takes this process's own.
    unsafe { sys::siptrace_shim_cfg_worker_init() };
}

/// Lets config changes reach a long-running process; called now and then.
pub fn cfg_update() {
    // SAFETY: the cfg_update macro, in a process that joined the framework.
    unsafe { sys::siptrace_shim_cfg_update() };
}

/// Leaves a process the module forked, at once: unwinding back into the
/// code that forked it would run the parent's paths in the child.
pub fn exit(code: c_int) -> ! {
    // SAFETY: ends this process; nothing of it is used afterwards.
    unsafe { libc::_exit(code) }
}

/// The description Kamailio gives the current process ("ctl handler",
/// "JSONRPCS FIFO", ...).
pub fn description() -> String {
    // SAFETY: the process table is in shared memory for the server's life;
    // process_no is this process's index in it.
    unsafe {
        let table = sys::pt;
        let index = sys::process_no;
        if table.is_null() || index < 0 {
            return String::new();
        }
        let desc = &(*table.add(index as usize)).desc;
        let bytes: &[u8] = std::slice::from_raw_parts(desc.as_ptr() as *const u8, desc.len());
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        String::from_utf8_lossy(&bytes[..end]).into_owned()
    }
}
