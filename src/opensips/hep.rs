//! Where proto_hep's destinations send: the `hep_id`s of the trace ids,
//! resolved at startup, the ones MI `trace_start` has proto_hep make, and
//! those the trace API's callers name.

use crate::core::dest::{DestUri, Destination};
use crate::core::endpoint::Transport;
use crate::opensips::host::hep::{self, HepId, HepTransport};
use crate::opensips::host::tls;
use crate::opensips::state::State;
use std::net::{IpAddr, SocketAddr};

/// proto_hep's `hep_id` called `name`: where it sends, its HEP version,
/// proto_hep's key of it, and its address as MI lists it.
pub fn by_name(name: &str) -> Result<(Destination, u8, usize, String), String> {
    let id = hep::by_name(name)
        .ok_or_else(|| format!("no hep_id '{name}' is defined (modparam \"proto_hep\" \"hep_id\")"))?;
    let (dest, version) = destination(id, true).map_err(|e| format!("hep_id '{name}': {e}"))?;
    let text = |s: &[u8]| String::from_utf8_lossy(s).into_owned();
    Ok((dest, version, id.key(), format!("{}:{}", text(id.host()), text(id.port_text()))))
}

/// A destination proto_hep makes of `address` (`ip:port;transport=...`)
/// for MI `trace_start`; resolved now, never per message.
pub fn new_dynamic(name: &str, address: &str) -> Result<Destination, String> {
    hep::with_new(name, address, |id| destination(id, true).map(|(d, _)| d))?
}

/// Where proto_hep's destination `id` sends: one resolved at startup, or
/// one whose address is an IP.
pub fn destination_of(state: &State, id: HepId<'_>) -> Option<Destination> {
    if let Some((_, d)) = state.hep_ids.iter().find(|(key, _)| *key == id.key()) {
        return Some(*d);
    }
    destination(id, false).ok().map(|(d, _)| d)
}

/// The destination of a proto_hep entry, and its HEP version; host names
/// are resolved only when `resolve` (at startup), never per message.
fn destination(id: HepId<'_>, resolve: bool) -> Result<(Destination, u8), String> {
    let transport = match id.transport() {
        Ok(HepTransport::Tls) if !tls::loaded() => {
            return Err("transport tls needs the tls_mgm module loaded (its client domain for the \
                        collector gives the CA list)"
                .into())
        }
        Ok(t) => Transport::from(t),
        Err(other) => return Err(format!("transport {other}; UDP, TCP and TLS are implemented")),
    };
    let port = u16::try_from(if id.port() == 0 { 9060 } else { id.port() }).map_err(|_| "bad port")?;
    let ip = String::from_utf8_lossy(id.host());
    let addr = match ip.trim_matches(['[', ']']).parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port),
        Err(_) if resolve => {
            DestUri::parse_supported(&format!("sip:{ip}:{port}"))
                .and_then(|d| d.resolve())
                .map_err(|e| e.to_string())?
                .addr
        }
        Err(_) => return Err(format!("'{ip}' was not resolved at startup")),
    };
    Ok((Destination { addr, transport }, id.version()))
}
