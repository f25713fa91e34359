//! HEP over TLS to a `hep_id` with `transport=tls`: the collector's
//! certificate is checked against the CA list of the tls_mgm client domain
//! that matches its address, as proto_hep would pick it. The connection
//! itself is made by the sending process with rustls, as on Kamailio.

use crate::core::dest::Destination;
use crate::core::sender::tls;
use crate::opensips::sys;
use crate::opensips::tracer::str_bytes;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use std::sync::{Arc, OnceLock};

struct Binds(sys::tls_mgm_binds);
// SAFETY: a table of function pointers, filled once.
unsafe impl Sync for Binds {}
unsafe impl Send for Binds {}

static BINDS: OnceLock<Option<Binds>> = OnceLock::new();

/// Whether tls_mgm is loaded (it is bound later, in the sending process,
/// once every module has read its configuration).
pub fn available() -> bool {
    // SAFETY: looking up another module's export by name.
    unsafe { sys::find_export(c"load_tls_mgm".as_ptr(), 0) }.is_some()
}

fn binds() -> Option<&'static sys::tls_mgm_binds> {
    BINDS
        .get_or_init(|| {
            // SAFETY: looking up tls_mgm's bind function by name.
            let load = unsafe { sys::find_export(c"load_tls_mgm".as_ptr(), 0) }?;
            // SAFETY: tls_mgm's load function has this signature and fills `binds`.
            let load: sys::load_tls_mgm_f = unsafe { std::mem::transmute(load) };
            let mut binds = sys::tls_mgm_binds::default();
            load.is_some_and(|load| unsafe { load(&mut binds) } >= 0).then_some(Binds(binds))
        })
        .as_ref()
        .map(|b| &b.0)
}

/// The TLS settings for `dest`: those of its tls_mgm client domain.
pub fn settings_for(dest: Destination) -> Result<(Arc<ClientConfig>, ServerName<'static>), String> {
    let binds = binds().ok_or("tls_mgm is not loaded")?;
    let (Some(find), Some(release)) = (binds.find_client_domain, binds.release_domain) else {
        return Err("tls_mgm offers no client domains".into());
    };
    let mut ip = ip_addr(dest);
    // SAFETY: a valid address; tls_mgm returns a referenced domain or null.
    let domain = unsafe { find(&mut ip, dest.addr.port()) };
    // SAFETY: a live domain when not null, until released below.
    let Some(d) = (unsafe { domain.as_ref() }) else {
        return Err(format!("no tls_mgm client domain matches {}", dest.addr));
    };
    // SAFETY: the domain's strings are valid while it is referenced.
    let (ca, name) = unsafe { (str_bytes(&d.ca).to_vec(), str_bytes(&d.name).to_vec()) };
    let from_db = d.flags as u32 & sys::DOM_FLAG_DB != 0;
    let verify = d.verify_cert != 0;
    // SAFETY: giving back the reference find_client_domain took.
    unsafe { release(domain) };
    let name = String::from_utf8_lossy(&name).into_owned();
    if !verify {
        crate::log_warn!(
            "tls_mgm client domain '{name}' has verify_cert off; the collector's certificate is checked anyway"
        );
    }
    let config = if ca.is_empty() {
        tls::client_config(std::path::Path::new(tls::SYSTEM_CA_FILE))
    } else if from_db {
        tls::client_config_from_pem(&ca, &format!("the ca_list of domain '{name}'"))
    } else {
        tls::client_config(std::path::Path::new(&*String::from_utf8_lossy(&ca)))
    }?;
    let server = tls::server_name(&dest.addr.ip().to_string())?;
    Ok((config, server))
}

fn ip_addr(dest: Destination) -> sys::ip_addr {
    let mut ip = sys::ip_addr::default();
    match dest.addr.ip() {
        std::net::IpAddr::V4(v4) => {
            ip.af = libc::AF_INET as _;
            ip.len = 4;
            // SAFETY: writing the union's bytes.
            unsafe { ip.u.addr[..4].copy_from_slice(&v4.octets()) };
        }
        std::net::IpAddr::V6(v6) => {
            ip.af = libc::AF_INET6 as _;
            ip.len = 16;
            // SAFETY: as above.
            unsafe { ip.u.addr.copy_from_slice(&v6.octets()) };
        }
    }
    ip
}
