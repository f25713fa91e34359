//! tls_mgm's client domains: the one that matches a collector's address,
//! as proto_hep would pick it for a `hep_id` over TLS.

use super::sys;
use crate::ffi::Settled;
use std::net::SocketAddr;

/// tls_mgm's API, bound in the sending process on first use, once every
/// module has read its configuration; `None` when it cannot be bound.
static TLS_MGM: Settled<Option<sys::tls_mgm_binds>> = Settled::new();

const LOAD: &std::ffi::CStr = c"load_tls_mgm";

/// Whether tls_mgm is loaded.
pub fn loaded() -> bool {
    super::exported(LOAD)
}

fn api() -> Option<&'static sys::tls_mgm_binds> {
    if TLS_MGM.get().is_none() {
        // SAFETY: tls_mgm's `load_tls_mgm` fills a `tls_mgm_binds`.
        TLS_MGM.set(unsafe { super::bind::<sys::tls_mgm_binds>(LOAD) }.ok().flatten());
    }
    TLS_MGM.get()?.as_ref()
}

/// What the module uses of a client domain.
pub struct ClientDomain {
    pub name: String,
    /// The CA list: a file's path, or PEM text for a domain from the database.
    pub ca: Vec<u8>,
    pub ca_from_db: bool,
    pub verify_cert: bool,
}

/// The client domain for a collector at `addr`.
pub fn client_domain(addr: SocketAddr) -> Result<ClientDomain, String> {
    let api = api().ok_or("tls_mgm is not loaded")?;
    let (Some(find), Some(release)) = (api.find_client_domain, api.release_domain) else {
        return Err("tls_mgm offers no client domains".into());
    };
    let mut ip = super::msg::ip_addr(addr.ip());
    // SAFETY: a valid address; tls_mgm returns a referenced domain or null.
    let domain = unsafe { find(&mut ip, addr.port()) };
    // SAFETY: a live domain when not null, until released below.
    let Some(d) = (unsafe { domain.as_ref() }) else {
        return Err(format!("no tls_mgm client domain matches {addr}"));
    };
    // SAFETY: the domain's strings are valid while it is referenced.
    let (name, ca) = unsafe { (super::bytes(&d.name), super::bytes(&d.ca)) };
    let found = ClientDomain {
        name: String::from_utf8_lossy(name.unwrap_or_default()).into_owned(),
        ca: ca.unwrap_or_default().to_vec(),
        ca_from_db: d.flags as u32 & sys::DOM_FLAG_DB != 0,
        verify_cert: d.verify_cert != 0,
    };
    // SAFETY: giving back the reference find_client_domain took.
    unsafe { release(domain) };
    Ok(found)
}
