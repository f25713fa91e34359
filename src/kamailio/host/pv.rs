//! Pseudo-variables: a class the module exports (`$siptrace(name)`), and
//! the variables a script function sets (writable specs from the core's
//! cache).

use super::msg::Msg;
use super::sys;
use crate::ffi::guard::guard;
use crate::ffi::host_bytes;
use std::cell::RefCell;
use std::ffi::CStr;
use std::os::raw::{c_char, c_int};
use std::ptr::NonNull;

/// A class of pseudo-variables, `$class(name)`.
pub trait PvClass: 'static {
    /// The index of the name the config gives, or the error to log.
    fn name_index(name: &[u8]) -> Result<usize, String>;
    /// The value of the name with index `index`, now.
    fn value(index: usize) -> PvValue;
}

/// The value of a pseudo-variable.
pub enum PvValue {
    Null,
    Int(i32),
    Text(String),
    /// A text that compares as a number too.
    TextAndInt(&'static str, i32),
}

/// The exported table of one class, closed by an all-zero entry.
pub const fn exports<P: PvClass>(name: &'static CStr) -> [sys::pv_export_t; 2] {
    // SAFETY: all-zero is the table's terminator; the first entry is set.
    let mut table: [sys::pv_export_t; 2] = unsafe { std::mem::zeroed() };
    table[0].name = sys::str_ { s: name.as_ptr() as *mut c_char, len: name.to_bytes().len() as c_int };
    table[0].type_ = sys::_pv_type_PVT_OTHER;
    table[0].getf = Some(get_value::<P>);
    table[0].parse_name = Some(parse_name::<P>);
    table
}

unsafe extern "C" fn parse_name<P: PvClass>(sp: *mut sys::pv_spec_t, name: *mut sys::str_) -> c_int {
    guard("a pseudo-variable name", -1, || {
        // SAFETY: the core passes the spec it builds and the name's text.
        let (Some(sp), Some(name)) = (unsafe { sp.as_mut() }, unsafe { name.as_ref() }) else { return -1 };
        // SAFETY: as above: `len` bytes.
        let text = unsafe { host_bytes(name.s, name.len) }.unwrap_or_default();
        match P::name_index(text) {
            Ok(i) => {
                sp.pvp.pvn.type_ = sys::PV_NAME_INTSTR as c_int;
                sp.pvp.pvn.u.isname.type_ = 0;
                sp.pvp.pvn.u.isname.name.n = i as _;
                0
            }
            Err(e) => {
                crate::log_error!("{e}");
                -1
            }
        }
    })
}

/// An integer value as the core's setters take it: a `long` from
/// Kamailio 5.8 on, an `int` before.
#[cfg(kamailio_6_0)]
fn pv_int(n: i32) -> std::os::raw::c_long {
    n.into()
}

#[cfg(kamailio_5_6)]
fn pv_int(n: i32) -> c_int {
    n
}

/// Values handed to the core stay where they are until reused: a few
/// slots in turn let an expression hold several at once, as the core's
/// own static buffers do.
const RESULT_SLOTS: usize = 4;

thread_local! {
    static RESULTS: RefCell<([Vec<u8>; RESULT_SLOTS], usize)> = RefCell::new(Default::default());
}

unsafe extern "C" fn get_value<P: PvClass>(
    msg: *mut sys::sip_msg,
    param: *mut sys::pv_param_t,
    res: *mut sys::pv_value_t,
) -> c_int {
    guard("a pseudo-variable", -1, || {
        // SAFETY: the core passes the spec's parameter, as parse_name set it.
        let index =
            unsafe { param.as_ref() }.map_or(usize::MAX, |p| unsafe { p.pvn.u.isname.name.n } as usize);
        let text = match P::value(index) {
            // SAFETY: the core's own setters, on the core's result.
            PvValue::Null => return unsafe { sys::pv_get_null(msg, param, res) },
            // SAFETY: as above.
            PvValue::Int(n) => return unsafe { sys::pv_get_sintval(msg, param, res, pv_int(n)) },
            PvValue::TextAndInt(name, n) => {
                let mut s = sys::str_ { s: name.as_ptr() as *mut c_char, len: name.len() as c_int };
                // SAFETY: as above; the name is a static string.
                return unsafe { sys::pv_get_strintval(msg, param, res, &mut s, pv_int(n)) };
            }
            PvValue::Text(text) => text,
        };
        let mut s = RESULTS.with(|r| {
            let mut r = r.borrow_mut();
            r.1 = (r.1 + 1) % RESULT_SLOTS;
            let slot = r.1;
            let buf = &mut r.0[slot];
            buf.clear();
            buf.extend_from_slice(text.as_bytes());
            sys::str_ { s: buf.as_ptr() as *mut c_char, len: buf.len() as c_int }
        });
        // SAFETY: `s` points at a slot that stays as it is until reused.
        unsafe { sys::pv_get_strval(msg, param, res, &mut s) }
    })
}

/// A variable the script named for a function to set, such as `$var(x)`
/// or `$avp(y)`: a spec of the core's cache, kept for the server's life.
#[derive(Clone, Copy)]
pub struct Variable(NonNull<sys::pv_spec_t>);

impl Variable {
    /// The variable `name` names, if it is one that can be set.
    pub(super) fn writable(name: &str) -> Option<Variable> {
        let mut s = sys::str_ { s: name.as_ptr() as *mut c_char, len: name.len() as c_int };
        // SAFETY: the core parses and caches the spec, and keeps it; the
        // name is only read.
        let spec = NonNull::new(unsafe { sys::pv_cache_get(&mut s) })?;
        // SAFETY: a spec from the cache lives as long as the process.
        unsafe { spec.as_ref() }.setf.is_some().then_some(Variable(spec))
    }

    pub(super) fn as_ptr(self) -> *mut sys::pv_spec_t {
        self.0.as_ptr()
    }

    /// # Safety
    /// `p` must be null or a spec [`Variable::as_ptr`] gave.
    pub(super) unsafe fn from_ptr(p: *mut sys::pv_spec_t) -> Option<Variable> {
        NonNull::new(p).map(Variable)
    }

    /// Sets the variable to the string `s` (null for no value), as the
    /// core's assignment does: the setter copies it.
    pub(super) fn set_str(self, msg: Msg<'_>, s: sys::str_) {
        // SAFETY: a cached spec lives as long as the process.
        let spec = unsafe { &mut *self.0.as_ptr() };
        let mut value = sys::pv_value_t { rs: s, ri: 0, flags: sys::PV_VAL_STR as c_int };
        if let Some(set) = spec.setf {
            // SAFETY: a writable spec, set on a live message with a value the
            // setter copies.
            unsafe { set(msg.as_ptr(), &mut spec.pvp, sys::EQ_T as c_int, &mut value) };
        }
    }
}
