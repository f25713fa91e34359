//! Event routes: an `event_route[...]` of the config, or the function a
//! KEMI config names in its place, run on a message of their own.

use super::sys;
use std::ffi::CStr;
use std::os::raw::{c_char, c_int};

/// An `event_route[name]` the config has, by its index in the core's
/// table of event routes.
#[derive(Clone, Copy)]
pub struct EventRoute(c_int);

impl EventRoute {
    /// The route `name`, if the config has one. Once the config is parsed.
    pub fn find(name: &CStr) -> Option<EventRoute> {
        let mut name = name.to_bytes_with_nul().to_vec();
        // SAFETY: event_rt is the core's route table, complete once the
        // config is parsed; the name is NUL-terminated and only read.
        let idx = unsafe {
            sys::route_lookup(std::ptr::addr_of_mut!(sys::event_rt), name.as_mut_ptr() as *mut c_char)
        };
        // SAFETY: reading the entry the lookup indexed.
        (idx >= 0 && !unsafe { *sys::event_rt.rlist.add(idx as usize) }.is_null()).then_some(EventRoute(idx))
    }
}

/// What became of a message an event route ran for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RouteOutcome {
    /// Not a SIP message the parser takes; nothing ran.
    Unparsable,
    Kept,
    /// The route called drop().
    Dropped,
}

/// Runs `route`, or else the KEMI function `callback` for event `event`,
/// on the SIP message in `payload`, parsed for it.
pub fn run_on_copy(
    payload: &[u8],
    route: Option<EventRoute>,
    callback: Option<&CStr>,
    event: &CStr,
) -> RouteOutcome {
    // SAFETY: an all-zero sip_msg is the state parse_msg starts from.
    let mut msg: sys::sip_msg = unsafe { std::mem::zeroed() };
    // The parser reads the message through msg.buf as well; it does not
    // write to it, though the fields are not const.
    msg.buf = payload.as_ptr() as *mut c_char;
    msg.len = payload.len() as _;
    // SAFETY: the payload outlives the parsed message, freed below.
    if unsafe { sys::parse_msg(msg.buf, msg.len, &mut msg) } != 0 {
        // SAFETY: frees what the failed parse left.
        unsafe { sys::free_sip_msg(&mut msg) };
        return RouteOutcome::Unparsable;
    }
    // SAFETY: an all-zero context is what init_run_actions_ctx makes.
    let mut ctx: sys::run_act_ctx_t = unsafe { std::mem::zeroed() };
    // SAFETY: the core's route type global of this process, restored below.
    let saved = unsafe { sys::route_type };
    // SAFETY: as above.
    unsafe { sys::route_type = sys::EVENT_ROUTE as c_int };
    match (route, callback) {
        // SAFETY: a route found once the config was parsed, on a parsed message.
        (Some(route), _) => unsafe {
            sys::run_top_route(*sys::event_rt.rlist.add(route.0 as usize), &mut msg, &mut ctx);
        },
        (None, Some(callback)) => {
            let mut function =
                sys::str_ { s: callback.as_ptr() as *mut c_char, len: callback.to_bytes().len() as c_int };
            let mut event =
                sys::str_ { s: event.as_ptr() as *mut c_char, len: event.to_bytes().len() as c_int };
            // SAFETY: the config's KEMI engine, run with our context as the
            // current one (where KSR.drop() marks the drop), then restored;
            // the names are only read.
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
    // SAFETY: as above; the message was parsed here and is freed once.
    unsafe {
        sys::route_type = saved;
        sys::free_sip_msg(&mut msg);
    }
    if ctx.run_flags & sys::DROP_R_F as c_int == 0 {
        RouteOutcome::Kept
    } else {
        RouteOutcome::Dropped
    }
}
