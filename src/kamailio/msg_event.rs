//! `event_route[siptrace:msg]` and `$siptrace(name)`: a route the config
//! runs for each message `trace_mode` is about to trace, where `drop()`
//! keeps that message out of the traces, and where `$siptrace(...)` gives
//! its ends and direction.
//!
//! As in the C module, the route runs for the core's network events (the
//! `trace_mode` traces), on a copy of the message parsed for it. A config
//! in a KEMI language names a function instead (`evcb_msg`), which runs
//! the same way. A config without either pays one check per message.

use crate::core::endpoint::Endpoint;
use crate::core::record::{Direction, TraceRecord};
use crate::ffi::guard::guard;
use crate::kamailio::{net, sys};
use std::cell::{Cell, RefCell};
use std::os::raw::{c_char, c_int};
use std::sync::OnceLock;

/// The route's index in the core's event route table.
static ROUTE: OnceLock<c_int> = OnceLock::new();

/// `evcb_msg`: the KEMI function run in place of the route, its name kept
/// for the life of the process.
struct Callback(sys::str_);
// SAFETY: set once in mod_init, before fork; the text is leaked.
unsafe impl Sync for Callback {}
unsafe impl Send for Callback {}
static CALLBACK: OnceLock<Callback> = OnceLock::new();

thread_local! {
    // What the route is running for; Kamailio's processes are single-threaded.
    static CURRENT: Cell<Option<(Endpoint, Endpoint, Direction)>> = const { Cell::new(None) };
}

/// Finds the route, if the config has one, or takes the `evcb_msg` KEMI
/// function, which the route wins over. Called in mod_init.
pub fn init(evcb_msg: Option<&str>) {
    if let Some(name) = evcb_msg {
        // NUL-terminated as well: engines take the name as a C string.
        let text = std::ffi::CString::new(name).unwrap_or_default();
        let len = text.as_bytes().len() as c_int;
        let _ = CALLBACK.set(Callback(sys::str_ { s: text.into_raw(), len }));
    }
    let mut name = *b"siptrace:msg\0";
    // SAFETY: event_rt is the core's route table, complete once the config
    // is parsed; the name is NUL-terminated.
    let idx =
        unsafe { sys::route_lookup(std::ptr::addr_of_mut!(sys::event_rt), name.as_mut_ptr() as *mut c_char) };
    // SAFETY: reading the table the lookup indexed.
    if idx >= 0 && !unsafe { *sys::event_rt.rlist.add(idx as usize) }.is_null() {
        let _ = ROUTE.set(idx);
    }
}

/// Whether `record` is to be traced: false when the route dropped it.
pub fn keeps(record: &TraceRecord<'_>) -> bool {
    let route = ROUTE.get().copied();
    if route.is_none() && CALLBACK.get().is_none() {
        return true;
    }
    // SAFETY: an all-zero sip_msg is the state parse_msg starts from.
    let mut msg: sys::sip_msg = unsafe { std::mem::zeroed() };
    // The parser reads the message through msg.buf as well; it does not
    // write to it, though the fields are not const.
    msg.buf = record.payload.as_ptr() as *mut c_char;
    msg.len = record.payload.len() as _;
    // SAFETY: the payload outlives the parsed message, freed below.
    let parsed = unsafe { sys::parse_msg(msg.buf, msg.len as u32, &mut msg) };
    if parsed != 0 {
        // A message the route cannot parse is traced without running it;
        // the C module traces nothing of it then (see the guide).
        // SAFETY: frees what the failed parse left.
        unsafe { sys::free_sip_msg(&mut msg) };
        return true;
    }
    // SAFETY: an all-zero context is what init_run_actions_ctx makes.
    let mut ctx: sys::run_act_ctx_t = unsafe { std::mem::zeroed() };
    // SAFETY: the core's route type global, restored below.
    let saved = unsafe { sys::route_type };
    unsafe { sys::route_type = sys::EVENT_ROUTE as c_int };
    CURRENT.with(|c| c.set(Some((record.src, record.dst, record.direction))));
    match (route, CALLBACK.get()) {
        // SAFETY: the route found at startup, on a parsed message.
        (Some(idx), _) => unsafe {
            sys::run_top_route(*sys::event_rt.rlist.add(idx as usize), &mut msg, &mut ctx);
        },
        (None, Some(callback)) => {
            let mut function = callback.0;
            let mut event = sys::str_ { s: c"siptrace:msg".as_ptr() as *mut c_char, len: 12 };
            // SAFETY: the config's KEMI engine, run with our context as the
            // current one (where KSR.drop() marks the drop), then restored.
            unsafe {
                let engine = sys::sr_kemi_eng_get();
                if !engine.is_null() {
                    let saved_ctx = sys::sr_kemi_act_ctx_get();
                    sys::sr_kemi_act_ctx_set(&mut ctx);
                    sys::sr_kemi_route(
                        engine,
                        &mut msg,
                        sys::EVENT_ROUTE as c_int,
                        &mut function,
                        &mut event,
                    );
                    sys::sr_kemi_act_ctx_set(saved_ctx);
                }
            }
        }
        (None, None) => {}
    }
    CURRENT.with(|c| c.set(None));
    unsafe {
        sys::route_type = saved;
        sys::free_sip_msg(&mut msg);
    }
    ctx.run_flags & sys::DROP_R_F as c_int == 0
}

/// The names `$siptrace(...)` takes.
const NAMES: [&str; 11] = [
    "src_addr",
    "dst_addr",
    "src_host",
    "dst_host",
    "src_port",
    "dst_port",
    "src_proto",
    "dst_proto",
    "src_hostip",
    "dst_hostip",
    "direction",
];

unsafe extern "C" fn parse_name(sp: *mut sys::pv_spec_t, name: *mut sys::str_) -> c_int {
    guard("$siptrace() name", -1, || {
        // SAFETY: the core passes the spec it builds and the name's text.
        let (Some(sp), Some(name)) = (unsafe { sp.as_mut() }, unsafe { name.as_ref() }) else { return -1 };
        let text = unsafe { net::str_bytes(name) }.unwrap_or_default();
        let Some(i) = NAMES.iter().position(|n| n.as_bytes() == text) else {
            crate::log_error!(
                "$siptrace({}): unknown name; expected one of {}",
                String::from_utf8_lossy(text),
                NAMES.join(", ")
            );
            return -1;
        };
        sp.pvp.pvn.type_ = sys::PV_NAME_INTSTR as c_int;
        sp.pvp.pvn.u.isname.type_ = 0;
        sp.pvp.pvn.u.isname.name.n = i as _;
        0
    })
}

unsafe extern "C" fn get_value(
    msg: *mut sys::sip_msg,
    param: *mut sys::pv_param_t,
    res: *mut sys::pv_value_t,
) -> c_int {
    guard("$siptrace()", -1, || {
        // SAFETY: the core passes the parsed spec's parameter.
        let index =
            unsafe { param.as_ref() }.map_or(usize::MAX, |p| unsafe { p.pvn.u.isname.name.n } as usize);
        let Some((src, dst, direction)) = CURRENT.with(Cell::get) else {
            // Outside the route there is no traced message.
            return unsafe { sys::pv_get_null(msg, param, res) };
        };
        let end = if index % 2 == 0 { src } else { dst };
        let text = match index {
            0 | 1 => end.to_string(),
            2 | 3 => match end.addr.ip() {
                std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                ip => ip.to_string(),
            },
            4 | 5 => {
                // SAFETY: the core's own setter for an integer value.
                return unsafe { sys::pv_get_sintval(msg, param, res, end.addr.port() as c_int) };
            }
            6 | 7 => {
                // The name, with Kamailio's protocol number as the integer
                // value, so that both `== "udp"` and `== 1` compare.
                let name = end.transport.name();
                let mut s = sys::str_ { s: name.as_ptr() as *mut c_char, len: name.len() as c_int };
                // SAFETY: the name is a static string.
                return unsafe {
                    sys::pv_get_strintval(msg, param, res, &mut s, net::proto_number(end.transport))
                };
            }
            8 | 9 => end.addr.ip().to_string(),
            10 => direction.as_str().to_string(),
            _ => return unsafe { sys::pv_get_null(msg, param, res) },
        };
        // pv_get_strval points the result at the text, which must outlive
        // the call, as the core's own static buffers do; a few slots in
        // turn let an expression hold several values at once.
        let s = RESULTS.with(|r| {
            let mut r = r.borrow_mut();
            r.1 = (r.1 + 1) % RESULT_SLOTS;
            let slot = r.1;
            let buf = &mut r.0[slot];
            buf.clear();
            buf.extend_from_slice(text.as_bytes());
            sys::str_ { s: buf.as_ptr() as *mut c_char, len: buf.len() as c_int }
        });
        let mut s = s;
        // SAFETY: `s` points at a slot that stays as it is until reused.
        unsafe { sys::pv_get_strval(msg, param, res, &mut s) }
    })
}

/// Values of `$siptrace()` kept alive at once.
const RESULT_SLOTS: usize = 4;

thread_local! {
    static RESULTS: RefCell<([Vec<u8>; RESULT_SLOTS], usize)> = RefCell::new(Default::default());
}

/// The exported pv_export_t table, NULL-terminated.
pub const fn pv_exports() -> [sys::pv_export_t; 2] {
    // SAFETY: all-zero is the table's terminator; the first entry is set.
    let mut table: [sys::pv_export_t; 2] = unsafe { std::mem::zeroed() };
    table[0].name = sys::str_ { s: c"siptrace".as_ptr() as *mut c_char, len: 8 };
    table[0].type_ = sys::_pv_type_PVT_OTHER;
    table[0].getf = Some(get_value);
    table[0].parse_name = Some(parse_name);
    table
}
