//! `traced_user_avp`: the users a trace belongs to. Every value of the AVP,
//! when the message is traced, gives the row its own copy with that value in
//! `traced_user`, and makes the message traced even while `trace_on` is off.
//! That is how an operator traces a few users only.

use crate::core::record::pack_traced_user;
use crate::kamailio::{net, shared, sys};
use std::sync::OnceLock;

/// The AVP's parsed name. Its text lives in the pkg memory the config
/// parser gave it before Kamailio forked, so every process has it.
struct Avp {
    name: sys::int_str,
    kind: u16,
}

// SAFETY: written once in mod_init, before fork, and only read afterwards.
unsafe impl Sync for Avp {}
unsafe impl Send for Avp {}

static AVP: OnceLock<Avp> = OnceLock::new();

/// Parses the `traced_user_avp` spec, such as `$avp(traced)`.
pub fn init(spec: &str) -> Result<(), String> {
    let bad = |why: &str| format!("modparam 'traced_user_avp' has a bad value '{spec}': {why}");
    // The parser keeps pointers into the text and the spec: both live on.
    let text: &'static mut [u8] = Box::leak(spec.as_bytes().to_vec().into_boxed_slice());
    let mut s = sys::str_ { s: text.as_mut_ptr() as *mut _, len: text.len() as i32 };
    let parsed: &'static mut sys::pv_spec_t = Box::leak(Box::default());
    // SAFETY: the parser reads `s` and fills `parsed`.
    let end = unsafe { sys::pv_parse_spec2(&mut s, parsed, 1) };
    if end.is_null() || parsed.type_ != sys::_pv_type_PVT_AVP {
        return Err(bad("expected an AVP such as $avp(name)"));
    }
    let mut name = sys::int_str::default();
    let mut kind: u16 = 0;
    // SAFETY: reading the name of a parsed AVP spec; no message is needed.
    if unsafe { sys::pv_get_avp_name(std::ptr::null_mut(), &mut parsed.pvp, &mut name, &mut kind) } != 0 {
        return Err(bad("the AVP name cannot be read"));
    }
    let _ = AVP.set(Avp { name, kind });
    Ok(())
}

/// What the rows of a trace get, and whether to trace at all.
pub enum Users {
    /// Tracing is off and no user asks for it.
    Skip,
    /// One row, with an empty `traced_user`.
    Default,
    /// The packed list of `traced_user` values, one row each.
    List(Vec<u8>),
}

/// The users of a message traced now, from the AVPs of the message or
/// transaction being processed.
pub fn current() -> Users {
    let on = shared::tracing_on();
    let Some(avp) = AVP.get() else {
        return if on { Users::Default } else { Users::Skip };
    };
    let mut packed = Vec::new();
    if on {
        pack_traced_user(&mut packed, b"");
    }
    let mut value = sys::int_str::default();
    let mut state = sys::search_state::default();
    // SAFETY: walking the current AVP list with Kamailio's own search.
    let mut found = unsafe { sys::search_first_avp(avp.kind as u32, avp.name, &mut value, &mut state) };
    let mut users = 0;
    while let Some(a) = unsafe { found.as_ref() } {
        if a.flags & sys::AVP_VAL_STR != 0 {
            // SAFETY: a string AVP's value is a valid str.
            let bytes = unsafe { net::str_bytes(&value.s) };
            pack_traced_user(&mut packed, bytes.unwrap_or_default());
        } else {
            // SAFETY: an integer AVP's value is `n`.
            pack_traced_user(&mut packed, unsafe { value.n }.to_string().as_bytes());
        }
        users += 1;
        found = unsafe { sys::search_next_avp(&mut state, &mut value) };
    }
    match (on, users) {
        (false, 0) => Users::Skip,
        (true, 0) => Users::Default,
        _ => Users::List(packed),
    }
}
