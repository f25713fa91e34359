//! `send_sock_name`, `send_sock_addr` (alias `force_send_sock`): the
//! listen socket of Kamailio's that traces leave from, so that collectors
//! and firewalls see them come from a known address.
//!
//! The sender processes send HEP and SIP copies over UDP through that very
//! socket (their inherited descriptor), and open TCP and TLS connections
//! from its IP address. A name or address that matches no listen socket
//! stops the server at startup.

use crate::core::endpoint::Endpoint;
use crate::kamailio::config::Config;
use crate::kamailio::host::socket::Socket;
use crate::kamailio::state::State;
use std::net::UdpSocket;

/// Finds the configured send socket among Kamailio's listen sockets.
pub fn find(config: &Config) -> Result<Option<Socket>, String> {
    let (param, text, found) = if let Some(name) = &config.send_socket_name {
        ("send_sock_name", name.clone(), Socket::by_name(name))
    } else if let Some(addr) = &config.send_socket_addr {
        let Some(dest) = addr.uri.literal() else {
            return Err(format!("modparam 'send_sock_addr' value '{}': not an IP address", addr.text));
        };
        // The config parser admits only UDP, TCP and TLS here.
        ("send_sock_addr", addr.text.clone(), Socket::by_address(dest.addr, dest.transport))
    } else {
        return Ok(None);
    };
    let Some(socket) = found else {
        return Err(format!("modparam '{param}' value '{text}': no listen socket of Kamailio's matches it"));
    };
    let local = socket.local().map_or_else(|| "?".to_string(), |e| e.to_string());
    crate::log_info!("traces are sent from the listen socket {local} ({param} '{text}')");
    Ok(Some(socket))
}

/// The address traces are sent from, when the config names a send socket.
pub fn source(state: &State) -> Option<Endpoint> {
    state.send_socket.get().and_then(Socket::local)
}

/// In a sender process: a UDP socket that sends from the send socket's
/// address. For a UDP listen socket it is that socket itself (a duplicate
/// of its descriptor); otherwise a new one bound to its IP address.
pub fn udp_socket(state: &State) -> Option<Result<UdpSocket, String>> {
    let socket = state.send_socket.get()?;
    let local = socket.local()?;
    if let Some(duplicate) = socket.duplicate_udp() {
        return Some(duplicate.map_err(|e| format!("cannot use the send socket {local}: {e}")));
    }
    Some(
        UdpSocket::bind((local.addr.ip(), 0))
            .map_err(|e| format!("cannot bind a UDP socket to {}: {e}", local.addr.ip())),
    )
}
