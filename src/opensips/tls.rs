//! HEP over TLS to a `hep_id` with `transport=tls`: the collector's
//! certificate is checked against the CA list of the tls_mgm client domain
//! that matches its address, as proto_hep would pick it. The connection
//! itself is made by the sending process with rustls, as on Kamailio.

use crate::core::dest::Destination;
use crate::core::sender::tls;
use crate::opensips::host::tls::client_domain;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use std::path::Path;
use std::sync::Arc;

/// The TLS settings for `dest`: those of its tls_mgm client domain.
pub fn settings_for(dest: Destination) -> Result<(Arc<ClientConfig>, ServerName<'static>), String> {
    let domain = client_domain(dest.addr)?;
    if !domain.verify_cert {
        crate::log_warn!(
            "tls_mgm client domain '{}' has verify_cert off; the collector's certificate is checked anyway",
            domain.name
        );
    }
    let config = if domain.ca.is_empty() {
        tls::client_config(Path::new(tls::SYSTEM_CA_FILE))
    } else if domain.ca_from_db {
        tls::client_config_from_pem(&domain.ca, &format!("the ca_list of domain '{}'", domain.name))
    } else {
        tls::client_config(Path::new(&*String::from_utf8_lossy(&domain.ca)))
    }?;
    let server = tls::server_name(&dest.addr.ip().to_string())?;
    Ok((config, server))
}
