//! AVPs named by a modparam (`traced_user_avp`, `trace_table_avp`): the
//! name parsed once at startup, the values read for the message being
//! processed.

use super::sys;
use crate::ffi::host_bytes;

/// An AVP's flags, as `pv_get_avp_name` writes them: `avp_flags_t`, 32
/// bits from Kamailio 5.8 on, 16 before.
#[cfg(kamailio_6_0)]
type AvpFlags = std::os::raw::c_uint;
#[cfg(kamailio_5_6)]
type AvpFlags = std::os::raw::c_ushort;

/// The flags `pv_get_avp_name` gave, as `search_first_avp` takes them.
#[cfg(kamailio_6_0)]
fn search_flags(flags: AvpFlags) -> std::os::raw::c_uint {
    flags
}

#[cfg(kamailio_5_6)]
fn search_flags(flags: AvpFlags) -> std::os::raw::c_uint {
    flags.into()
}

/// An AVP's integer value: a `long` from Kamailio 5.8 on (`numstr_ut`),
/// an `int` before.
#[cfg(kamailio_6_0)]
fn avp_int(n: std::os::raw::c_long) -> i64 {
    n
}

#[cfg(kamailio_5_6)]
fn avp_int(n: std::os::raw::c_int) -> i64 {
    n.into()
}

/// An AVP's parsed name. Its text lives in memory leaked before Kamailio
/// forked, so every process has it.
#[derive(Clone, Copy)]
pub struct AvpName {
    name: sys::int_str,
    /// Its flags, as the searches take them.
    flags: std::os::raw::c_uint,
}

/// One value of an AVP.
pub enum AvpValue<'a> {
    Str(&'a [u8]),
    Int(i64),
}

impl AvpName {
    /// Parses `spec`, such as `$avp(name)`; an error says what is wrong.
    pub fn parse(spec: &str) -> Result<AvpName, &'static str> {
        // The parser keeps pointers into the text and the spec: both live on.
        let text: &'static mut [u8] = Box::leak(spec.as_bytes().to_vec().into_boxed_slice());
        let mut s = sys::str_ { s: text.as_mut_ptr() as *mut _, len: text.len() as i32 };
        let parsed: &'static mut sys::pv_spec_t = Box::leak(Box::default());
        // SAFETY: the parser reads `s` and fills `parsed`, both kept.
        let end = unsafe { sys::pv_parse_spec2(&mut s, parsed, 1) };
        if end.is_null() || parsed.type_ != sys::_pv_type_PVT_AVP {
            return Err("expected an AVP such as $avp(name)");
        }
        let mut name = sys::int_str::default();
        let mut kind: AvpFlags = 0;
        // SAFETY: reading the name of a parsed AVP spec; no message is needed.
        if unsafe { sys::pv_get_avp_name(std::ptr::null_mut(), &mut parsed.pvp, &mut name, &mut kind) } != 0 {
            return Err("the AVP name cannot be read");
        }
        Ok(AvpName { name, flags: search_flags(kind) })
    }

    /// Calls `f` with each value the AVP has now, in the AVP list of the
    /// message or transaction being processed, the newest first, until `f`
    /// returns false.
    pub fn for_each_value(&self, mut f: impl FnMut(AvpValue<'_>) -> bool) {
        let mut value = sys::int_str::default();
        let mut state = sys::search_state::default();
        // SAFETY: walking the current AVP list with Kamailio's own search;
        // each found AVP and its value stay valid until the next step.
        let mut found = unsafe { sys::search_first_avp(self.flags, self.name, &mut value, &mut state) };
        // SAFETY: as above.
        while let Some(a) = unsafe { found.as_ref() } {
            let more = if a.flags & sys::AVP_VAL_STR != 0 {
                // SAFETY: a string AVP's value is a valid str.
                f(AvpValue::Str(unsafe { host_bytes(value.s.s, value.s.len) }.unwrap_or_default()))
            } else {
                // SAFETY: an integer AVP's value is `n`.
                f(AvpValue::Int(avp_int(unsafe { value.n })))
            };
            if !more {
                return;
            }
            // SAFETY: as above.
            found = unsafe { sys::search_next_avp(&mut state, &mut value) };
        }
    }
}
