//! The tables OpenSIPS reads through dlsym when it loads the module, built
//! from the host layer's entries and the policy's handlers, and mod_init.

use crate::ffi::guard::{guard, install_panic_hook};
use crate::ffi::Export;
use crate::opensips::host::{mi, modparam, process, script, stats, sys};
use crate::opensips::mi::{SetGlobal, SetId, ShowAll, ShowId, Start, Stop};
use crate::opensips::params::{
    Column, DeliveryInt, DeliveryText, FileMode, LocalIp, SyslogFacility, SyslogLevel, TraceIdNeeds,
    TraceIdParam, TraceOn,
};
use crate::opensips::{sender, startup, stats as tracer_stats};
use std::os::raw::{c_char, c_int};

static CMDS: Export<[sys::cmd_export_t; 2]> =
    Export([script::export::<crate::opensips::script::TraceFn>(), script::END]);

static PARAMS: Export<[sys::param_export_t; 26]> = Export([
    modparam::string::<TraceIdParam>(),
    modparam::int::<TraceOn>(),
    modparam::string::<LocalIp>(),
    modparam::int::<FileMode>(),
    modparam::int::<SyslogLevel>(),
    modparam::string::<SyslogFacility>(),
    modparam::string::<Column<0>>(),
    modparam::string::<Column<1>>(),
    modparam::string::<Column<2>>(),
    modparam::string::<Column<3>>(),
    modparam::string::<Column<4>>(),
    modparam::string::<Column<5>>(),
    modparam::string::<Column<6>>(),
    modparam::string::<Column<7>>(),
    modparam::string::<Column<8>>(),
    modparam::string::<Column<9>>(),
    modparam::string::<Column<10>>(),
    modparam::string::<Column<11>>(),
    modparam::string::<Column<12>>(),
    modparam::string::<Column<13>>(),
    modparam::string::<DeliveryText<0>>(),
    modparam::string::<DeliveryText<1>>(),
    modparam::int::<DeliveryInt<0>>(),
    modparam::int::<DeliveryInt<1>>(),
    modparam::int::<DeliveryInt<2>>(),
    modparam::END,
]);

static STATS: Export<[sys::stat_export_t; 3]> = Export([
    stats::export::<tracer_stats::TracedRequests>(),
    stats::export::<tracer_stats::TracedReplies>(),
    stats::END,
]);

static MI: Export<[sys::mi_export_t; 4]> = Export([
    mi::export(
        c"trace",
        None,
        true,
        &[
            mi::recipe::<ShowAll>(&[]),
            mi::recipe::<ShowId>(&[c"id"]),
            mi::recipe::<SetGlobal>(&[c"mode"]),
            mi::recipe::<SetId>(&[c"id", c"mode"]),
        ],
    ),
    mi::export(
        c"start",
        Some(c"trace_start"),
        false,
        &[
            mi::recipe::<Start>(&[c"id", c"uri"]),
            mi::recipe::<Start>(&[c"id", c"uri", c"filter"]),
            mi::recipe::<Start>(&[c"id", c"uri", c"filter", c"scope", c"type"]),
        ],
    ),
    mi::export(c"stop", Some(c"trace_stop"), false, &[mi::recipe::<Stop>(&[c"id"])]),
    mi::END,
]);

static PROCS: Export<[sys::proc_export_t; 2]> = Export([process::export::<sender::Senders>(1), process::END]);

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
    params: [modparam::dependency::<TraceIdNeeds>(), modparam::DEPENDENCY_END],
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
        match startup::mod_init() {
            Ok(()) => 0,
            Err(e) => {
                crate::log_error!("{e}");
                -1
            }
        }
    })
}
