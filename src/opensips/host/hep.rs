//! proto_hep's API: its `hep_id` destinations, the numbers it gives the
//! kinds of trace records, and its settings.

use super::sys;
use crate::core::endpoint::Transport;
use crate::ffi::Settled;
use std::marker::PhantomData;
use std::os::raw::{c_char, c_int};
use std::ptr::NonNull;

static HEP: Settled<sys::trace_proto_t> = Settled::new();

/// Binds proto_hep's trace API, if proto_hep is loaded; whether it is. From
/// mod_init.
pub fn bind() -> bool {
    let mut api = sys::trace_proto_t::default();
    // SAFETY: the module name is a NUL-terminated string; proto_hep's
    // binder fills `api`.
    let rc = unsafe { sys::trace_prot_bind(c"proto_hep".as_ptr() as *mut c_char, &mut api) };
    rc >= 0 && api.get_trace_dest_by_name.is_some() && HEP.set(api)
}

/// proto_hep's API, once bound.
pub(super) fn api() -> Option<&'static sys::trace_proto_t> {
    HEP.get()
}

/// A destination of proto_hep (a `hep_id`, or one made for MI).
#[derive(Clone, Copy)]
pub struct HepId<'a>(NonNull<sys::hid_list_t>, PhantomData<&'a sys::hid_list_t>);

impl<'a> HepId<'a> {
    /// # Safety
    /// `p` must be null or an entry of proto_hep that lives for `'a`.
    pub(super) unsafe fn from_ptr(p: sys::trace_dest) -> Option<HepId<'a>> {
        NonNull::new(p as *mut sys::hid_list_t).map(|p| HepId(p, PhantomData))
    }

    fn hid(&self) -> &'a sys::hid_list_t {
        // SAFETY: a live entry (see from_ptr).
        unsafe { self.0.as_ref() }
    }

    /// What tells this entry from others, as proto_hep hands it around.
    pub fn key(&self) -> usize {
        self.0.as_ptr() as usize
    }

    /// The address as written: an IP (IPv6 maybe in brackets) or a name.
    pub fn host(&self) -> &'a [u8] {
        // SAFETY: proto_hep's string, valid while the entry is.
        unsafe { super::bytes(&self.hid().ip) }.unwrap_or_default()
    }

    /// The port as written.
    pub fn port_text(&self) -> &'a [u8] {
        // SAFETY: as above.
        unsafe { super::bytes(&self.hid().port) }.unwrap_or_default()
    }

    /// The port; 0 when not given.
    pub fn port(&self) -> u32 {
        self.hid().port_no
    }

    /// The transport, or proto_hep's number of one it does not name here.
    pub fn transport(&self) -> Result<HepTransport, i32> {
        match self.hid().transport as u32 {
            sys::sip_protos_PROTO_HEP_UDP | sys::sip_protos_PROTO_UDP => Ok(HepTransport::Udp),
            sys::sip_protos_PROTO_HEP_TCP | sys::sip_protos_PROTO_TCP => Ok(HepTransport::Tcp),
            sys::sip_protos_PROTO_HEP_TLS | sys::sip_protos_PROTO_TLS => Ok(HepTransport::Tls),
            other => Err(other as i32),
        }
    }

    pub fn version(&self) -> u8 {
        self.hid().version as u8
    }
}

/// The transports of a `hep_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HepTransport {
    Udp,
    Tcp,
    Tls,
}

impl From<HepTransport> for Transport {
    fn from(t: HepTransport) -> Transport {
        match t {
            HepTransport::Udp => Transport::Udp,
            HepTransport::Tcp => Transport::Tcp,
            HepTransport::Tls => Transport::Tls,
        }
    }
}

/// proto_hep's `hep_id` called `name`, which lives until the server exits.
pub fn by_name(name: &str) -> Option<HepId<'static>> {
    let get = api()?.get_trace_dest_by_name?;
    let mut s = super::str_of(name.as_bytes());
    // SAFETY: a valid str; proto_hep returns an entry of its list, which
    // it keeps, or NULL.
    unsafe { HepId::from_ptr(get(&mut s)) }
}

/// Has proto_hep make a destination called `name` of `address`
/// (`ip:port;transport=...`), reads it with `read`, and gives it back.
pub fn with_new<R>(name: &str, address: &str, read: impl FnOnce(HepId<'_>) -> R) -> Result<R, String> {
    let api = api().ok_or("proto_hep is not loaded")?;
    let (Some(new), Some(release)) = (api.new_trace_dest, api.release_trace_dest) else {
        return Err("proto_hep cannot make destinations".into());
    };
    let (mut n, mut a) = (super::str_of(name.as_bytes()), super::str_of(address.as_bytes()));
    // SAFETY: valid strs; proto_hep returns its new entry or NULL.
    let dest = unsafe { new(&mut n, &mut a) };
    // SAFETY: the entry proto_hep just made, alive until released below.
    let id = unsafe { HepId::from_ptr(dest) }.ok_or_else(|| format!("proto_hep refused '{address}'"))?;
    let result = read(id);
    // SAFETY: giving back the entry, which `read` no longer holds.
    unsafe { release(dest) };
    Ok(result)
}

/// The number proto_hep gives the kind of record called `name`.
pub(super) fn message_id(name: &std::ffi::CStr) -> Option<c_int> {
    let get = api()?.get_message_id?;
    // SAFETY: a NUL-terminated name, which proto_hep only reads.
    Some(unsafe { get(name.as_ptr() as *mut c_char) })
}
