//! The tables and strings Kamailio reads through dlsym when it loads the
//! module, and the life-cycle entry points they name.

use crate::ffi::guard::{guard, install_panic_hook};
use crate::ffi::Export;
use crate::kamailio::{kemi, module, msg_event, params, rpc, script, sys};
use std::os::raw::{c_char, c_int, c_void};

/// Compared by Kamailio with its own `SER_FULL_VERSION`, at load time.
#[no_mangle]
pub static module_version: Export<*const c_char> =
    Export(std::ptr::addr_of!(sys::siptrace_shim_module_version) as *const c_char);

/// Compared by Kamailio with its own `SER_COMPILE_FLAGS`, at load time.
#[no_mangle]
pub static module_flags: Export<*const c_char> =
    Export(std::ptr::addr_of!(sys::siptrace_shim_module_flags) as *const c_char);

#[no_mangle]
pub static module_interface_ver: Export<u32> = Export(sys::MODULE_INTERFACE_VER);

static CMDS: Export<[sys::cmd_export_t; script::CMD_COUNT + 1]> = Export(script::cmd_exports());
static PARAMS: Export<[sys::param_export_t; params::PARAM_COUNT + 1]> = Export(params::param_exports());
static RPCS: Export<[sys::rpc_export_t; rpc::RPC_COUNT + 1]> = Export(rpc::rpc_exports());
static PVS: Export<[sys::pv_export_t; 2]> = Export(msg_event::pv_exports());

#[no_mangle]
pub static exports: Export<sys::module_exports> = Export(sys::module_exports {
    name: c"siptrace".as_ptr() as *mut c_char,
    dlflags: 0,
    cmds: CMDS.0.as_ptr() as *mut sys::cmd_export_t,
    params: PARAMS.0.as_ptr() as *mut sys::param_export_t,
    rpc_methods: RPCS.0.as_ptr() as *mut sys::rpc_export_t,
    pv_items: PVS.0.as_ptr() as *mut sys::pv_export_t,
    response_f: None,
    init_mod_f: Some(mod_init),
    init_child_f: Some(child_init),
    // Nothing to free: the shared state outlives the senders' last work.
    destroy_mod_f: None,
});

/// Called by Kamailio right after loading the module, before any parameter.
#[no_mangle]
pub unsafe extern "C" fn mod_register(
    _path: *mut c_char,
    _dlflags: *mut c_int,
    _p1: *mut c_void,
    _p2: *mut c_void,
) -> c_int {
    guard("mod_register", -1, || {
        install_panic_hook();
        match kemi::register() {
            Ok(()) => 0,
            Err(e) => {
                crate::log_error!("{e}");
                -1
            }
        }
    })
}

unsafe extern "C" fn mod_init() -> c_int {
    guard("mod_init", -1, || match module::mod_init() {
        Ok(()) => 0,
        Err(e) => {
            crate::log_error!("{e}");
            -1
        }
    })
}

unsafe extern "C" fn child_init(rank: c_int) -> c_int {
    guard("child_init", -1, || match module::child_init(rank) {
        Ok(()) => 0,
        Err(e) => {
            crate::log_error!("process rank {rank}: {e}");
            -1
        }
    })
}
