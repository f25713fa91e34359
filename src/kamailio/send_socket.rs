//! `send_sock_name`, `send_sock_addr` (alias `force_send_sock`): the
//! listen socket of Kamailio's that traces leave from, so that collectors
//! and firewalls see them come from a known address.
//!
//! The sender processes send HEP and SIP copies over UDP through that very
//! socket (their inherited descriptor), and open TCP and TLS connections
//! from its IP address. A name or address that matches no listen socket
//! stops the server at startup.

use crate::kamailio::config::Config;
use crate::core::endpoint::{Endpoint, Transport};
use crate::kamailio::{net, sys};
use std::net::UdpSocket;
use std::os::fd::FromRawFd;
use std::sync::OnceLock;

/// Kamailio's socket_info of the send socket; it lives as long as the
/// server and is inherited by every process.
struct SendSocket(*const sys::socket_info);

// SAFETY: set once in mod_init, before fork; the socket list is not
// changed afterwards.
unsafe impl Sync for SendSocket {}
unsafe impl Send for SendSocket {}

static SOCKET: OnceLock<SendSocket> = OnceLock::new();

/// Finds the configured send socket among Kamailio's listen sockets.
pub fn mod_init(config: &Config) -> Result<(), String> {
    let (param, text, found) = if let Some(name) = &config.send_socket_name {
        let mut s = sys::str_ { s: name.as_ptr() as *mut _, len: name.len() as i32 };
        // SAFETY: a lookup in the socket list by name; `s` outlives it.
        ("send_sock_name", name.clone(), unsafe { sys::ksr_get_socket_by_name(&mut s) })
    } else if let Some(addr) = &config.send_socket_addr {
        let Some(dest) = addr.uri.literal() else {
            return Err(format!("modparam 'send_sock_addr' value '{}': not an IP address", addr.text));
        };
        let host = dest.addr.ip().to_string();
        let mut s = sys::str_ { s: host.as_ptr() as *mut _, len: host.len() as i32 };
        // The config parser admits only UDP, TCP and TLS here.
        let proto = net::proto_number(dest.transport);
        // SAFETY: a lookup in the socket list by address; `s` outlives it.
        ("send_sock_addr", addr.text.clone(), unsafe {
            sys::grep_sock_info(&mut s, dest.addr.port(), proto as u16)
        })
    } else {
        return Ok(());
    };
    if found.is_null() {
        return Err(format!("modparam '{param}' value '{text}': no listen socket of Kamailio's matches it"));
    }
    let _ = SOCKET.set(SendSocket(found));
    let local = source().map_or_else(|| "?".to_string(), |e| e.to_string());
    crate::log_info!("traces are sent from the listen socket {local} ({param} '{text}')");
    Ok(())
}

fn socket() -> Option<&'static sys::socket_info> {
    // SAFETY: a socket_info Kamailio keeps for its lifetime.
    SOCKET.get().and_then(|s| unsafe { s.0.as_ref() })
}

/// The address traces are sent from, when the config names a send socket.
pub fn source() -> Option<Endpoint> {
    socket().and_then(net::local)
}

/// In a sender process: a UDP socket that sends from the send socket's
/// address. For a UDP listen socket it is that socket itself (a duplicate
/// of its descriptor); otherwise a new one bound to its IP address.
pub fn udp_socket() -> Option<Result<UdpSocket, String>> {
    let si = socket()?;
    let local = net::local(si)?;
    if local.transport == Transport::Udp && si.socket >= 0 {
        // SAFETY: the listen socket's descriptor, inherited from the main
        // process; the duplicate is ours to own and close.
        let fd = unsafe { libc::dup(si.socket) };
        if fd < 0 {
            return Some(Err(format!(
                "cannot use the send socket {local}: {}",
                std::io::Error::last_os_error()
            )));
        }
        // SAFETY: a fresh descriptor of a UDP socket, owned from here on.
        return Some(Ok(unsafe { UdpSocket::from_raw_fd(fd) }));
    }
    Some(
        UdpSocket::bind((local.addr.ip(), 0))
            .map_err(|e| format!("cannot bind a UDP socket to {}: {e}", local.addr.ip())),
    )
}
