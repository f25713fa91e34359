//! The tables and strings Kamailio reads through dlsym when it loads the
//! module, and the life-cycle entry points they name. The only policy-side
//! file that names `sys` types: the tables' own.

use crate::ffi::guard::{guard, install_panic_hook};
use crate::ffi::Export;
use crate::kamailio::config::PARAMS;
use crate::kamailio::host::modparam::{self, setter, Setter};
use crate::kamailio::host::{cmd, kemi as host_kemi, pv, rpc as host_rpc, sys};
use crate::kamailio::params::Modparams;
use crate::kamailio::rest::HttpQuery;
use crate::kamailio::script::{Hlog, SipTrace, SipTraceMode, SipTraceTypes};
use crate::kamailio::trace_msg::{KemiSipTraceMsg, SipTraceMsg};
use crate::kamailio::{kemi, msg_event, rpc, sessions, startup};
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

static CMDS: Export<[sys::cmd_export_t; 13]> = Export([
    cmd::export::<SipTrace, 0>(),
    cmd::export::<SipTrace, 1>(),
    cmd::export::<SipTrace, 2>(),
    cmd::export::<SipTrace, 3>(),
    cmd::export::<SipTraceMode, 1>(),
    cmd::export::<SipTraceTypes, 1>(),
    cmd::export::<Hlog, 1>(),
    cmd::export::<Hlog, 2>(),
    cmd::export::<HttpQuery, 2>(),
    cmd::export::<HttpQuery, 3>(),
    cmd::export::<HttpQuery, 4>(),
    // Kamailio 6.0's; its fixup refuses it on 5.6, naming the release.
    cmd::export::<SipTraceMsg, 5>(),
    cmd::end(),
]);

#[rustfmt::skip]
const SETTERS: [Setter; PARAMS.len()] = [
    setter::<Modparams, 0>, setter::<Modparams, 1>, setter::<Modparams, 2>, setter::<Modparams, 3>,
    setter::<Modparams, 4>, setter::<Modparams, 5>, setter::<Modparams, 6>, setter::<Modparams, 7>,
    setter::<Modparams, 8>, setter::<Modparams, 9>, setter::<Modparams, 10>, setter::<Modparams, 11>,
    setter::<Modparams, 12>, setter::<Modparams, 13>, setter::<Modparams, 14>, setter::<Modparams, 15>,
    setter::<Modparams, 16>, setter::<Modparams, 17>, setter::<Modparams, 18>, setter::<Modparams, 19>,
    setter::<Modparams, 20>, setter::<Modparams, 21>, setter::<Modparams, 22>, setter::<Modparams, 23>,
    setter::<Modparams, 24>, setter::<Modparams, 25>, setter::<Modparams, 26>, setter::<Modparams, 27>,
    setter::<Modparams, 28>, setter::<Modparams, 29>, setter::<Modparams, 30>, setter::<Modparams, 31>,
    setter::<Modparams, 32>, setter::<Modparams, 33>, setter::<Modparams, 34>, setter::<Modparams, 35>,
    setter::<Modparams, 36>, setter::<Modparams, 37>, setter::<Modparams, 38>, setter::<Modparams, 39>,
    setter::<Modparams, 40>, setter::<Modparams, 41>, setter::<Modparams, 42>, setter::<Modparams, 43>,
    setter::<Modparams, 44>, setter::<Modparams, 45>, setter::<Modparams, 46>, setter::<Modparams, 47>,
    setter::<Modparams, 48>, setter::<Modparams, 49>, setter::<Modparams, 50>, setter::<Modparams, 51>,
    setter::<Modparams, 52>, setter::<Modparams, 53>, setter::<Modparams, 54>, setter::<Modparams, 55>,
    setter::<Modparams, 56>, setter::<Modparams, 57>, setter::<Modparams, 58>, setter::<Modparams, 59>,
];

static PARAMS_TABLE: Export<[sys::param_export_t; PARAMS.len() + 1]> = Export({
    let mut table = [modparam::end(); PARAMS.len() + 1];
    let mut i = 0;
    while i < PARAMS.len() {
        table[i] = modparam::export(PARAMS[i].0, PARAMS[i].1, SETTERS[i]);
        i += 1;
    }
    table
});

static RPCS: Export<[sys::rpc_export_t; 6]> = Export([
    host_rpc::export::<rpc::Status>(&rpc::STATUS_DOC),
    host_rpc::export::<rpc::Stats>(&rpc::STATS_DOC),
    host_rpc::export::<sessions::TraceStart>(&sessions::TRACE_START_DOC),
    host_rpc::export::<sessions::TraceStop>(&sessions::TRACE_STOP_DOC),
    host_rpc::export::<sessions::TraceList>(&sessions::TRACE_LIST_DOC),
    host_rpc::end(),
]);

static PVS: Export<[sys::pv_export_t; 2]> = Export(pv::exports::<msg_event::SiptracePv>(c"siptrace"));

/// `KSR.siptrace.*`, closed by an empty entry.
static KEMI: Export<[sys::sr_kemi_t; 10]> = Export([
    host_kemi::export::<kemi::SipTrace, 0>(c"siptrace"),
    host_kemi::export::<kemi::SipTraceDst, 1>(c"siptrace"),
    host_kemi::export::<kemi::SipTraceDstCid, 2>(c"siptrace"),
    host_kemi::export::<kemi::SipTraceDstCidType, 3>(c"siptrace"),
    host_kemi::export::<kemi::SipTraceMode, 1>(c"siptrace"),
    host_kemi::export::<kemi::SipTraceTypes, 1>(c"siptrace"),
    host_kemi::export::<kemi::Hlog, 1>(c"siptrace"),
    host_kemi::export::<kemi::HlogCid, 2>(c"siptrace"),
    host_kemi::export::<KemiSipTraceMsg, 5>(c"siptrace"),
    host_kemi::end(),
]);

#[no_mangle]
pub static exports: Export<sys::module_exports> = Export(sys::module_exports {
    name: c"siptrace".as_ptr() as *mut c_char,
    dlflags: 0,
    cmds: CMDS.0.as_ptr() as *mut sys::cmd_export_t,
    params: PARAMS_TABLE.0.as_ptr() as *mut sys::param_export_t,
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
        match host_kemi::register(&KEMI.0) {
            Ok(()) => 0,
            Err(e) => {
                crate::log_error!("{e}");
                -1
            }
        }
    })
}

unsafe extern "C" fn mod_init() -> c_int {
    guard("mod_init", -1, || match startup::mod_init() {
        Ok(()) => 0,
        Err(e) => {
            crate::log_error!("{e}");
            -1
        }
    })
}

unsafe extern "C" fn child_init(rank: c_int) -> c_int {
    guard("child_init", -1, || match startup::child_init(rank) {
        Ok(()) => 0,
        Err(e) => {
            crate::log_error!("process rank {rank}: {e}");
            -1
        }
    })
}
