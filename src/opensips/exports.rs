//! The tables OpenSIPS reads through dlsym when it loads the module, and
//! the life-cycle entry points they name.

use crate::ffi::guard::{guard, install_panic_hook};
use crate::ffi::Export;
use crate::opensips::{mi, module, params, script, sender, stats, sys};
use std::os::raw::{c_char, c_int};

static CMDS: Export<[sys::cmd_export_t; script::CMD_COUNT + 1]> = Export(script::cmd_exports());
static PARAMS: Export<[sys::param_export_t; params::PARAM_COUNT + 1]> = Export(params::param_exports());
static STATS: Export<[sys::stat_export_t; 3]> = Export(stats::stat_exports());
static MI: Export<[sys::mi_export_t; 4]> = Export(mi::mi_exports());
static PROCS: Export<[sys::proc_export_t; 2]> = Export([
    sys::proc_export_t {
        name: c"siptrace sender".as_ptr(),
        pre_fork_function: None,
        post_fork_function: None,
        function: Some(sender::run),
        no: 1,
        flags: 0,
    },
    sys::proc_export_t {
        name: std::ptr::null(),
        pre_fork_function: None,
        post_fork_function: None,
        function: None,
        no: 0,
        flags: 0,
    },
]);

/// OpenSIPS's dep_export_t: fixed module dependencies (none), then the
/// modparam ones, each list ending with an empty entry.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Deps {
    modules: [sys::module_dependency_t; sys::MAX_MOD_DEPS as usize],
    params: [sys::modparam_dependency_t; 2],
}

const NO_MODULE: sys::module_dependency_t = sys::module_dependency_t {
    mod_type: sys::module_type_MOD_TYPE_NULL,
    mod_name: std::ptr::null_mut(),
    type_: 0,
};

static DEPS: Export<Deps> = Export(Deps {
    modules: [NO_MODULE; sys::MAX_MOD_DEPS as usize],
    params: [
        sys::modparam_dependency_t {
            script_param: c"trace_id".as_ptr() as *mut c_char,
            get_deps_f: Some(params::trace_id_deps),
        },
        sys::modparam_dependency_t { script_param: std::ptr::null_mut(), get_deps_f: None },
    ],
});

#[no_mangle]
pub static exports: Export<sys::module_exports> = Export(sys::module_exports {
    name: c"tracer".as_ptr(),
    type_: sys::module_type_MOD_TYPE_DEFAULT,
    ver_info: sys::module_exports__bindgen_ty_1 {
        version: std::ptr::addr_of!(sys::siptrace_os_version) as *const c_char,
        compile_flags: std::ptr::addr_of!(sys::siptrace_os_compile_flags) as *const c_char,
        scm: sys::scm_version {
            type_: std::ptr::addr_of!(sys::siptrace_os_scm_type) as *const c_char,
            rev: std::ptr::addr_of!(sys::siptrace_os_scm_rev) as *const c_char,
        },
    },
    dlflags: 0,
    load_f: None,
    deps: std::ptr::addr_of!(DEPS.0) as *const sys::dep_export_t,
    cmds: CMDS.0.as_ptr(),
    acmds: std::ptr::null(),
    params: PARAMS.0.as_ptr(),
    stats: STATS.0.as_ptr(),
    mi_cmds: MI.0.as_ptr(),
    items: std::ptr::null(),
    trans: std::ptr::null(),
    procs: PROCS.0.as_ptr(),
    preinit_f: None,
    init_f: Some(mod_init),
    response_f: None,
    destroy_f: None,
    init_child_f: None,
    reload_ack_f: None,
});

unsafe extern "C" fn mod_init() -> c_int {
    guard("mod_init", -1, || {
        install_panic_hook();
        match module::mod_init() {
            Ok(()) => 0,
            Err(e) => {
                crate::log_error!("{e}");
                -1
            }
        }
    })
}
