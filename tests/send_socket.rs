//! `send_sock_name` and `send_sock_addr`: traces leave from the listen
//! socket the config names, over UDP (the very socket) and TCP (its IP).

mod common;

use common::*;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::time::{Duration, Instant};

/// A proxy that listens on 127.0.0.1 for SIP and on 127.0.0.2, named
/// "trace", for nothing but sending traces.
fn proxy_with_trace_socket(
    dir: &TestDir,
    trace_port: u16,
    params: &str,
) -> Result<(Kamailio, u16, SippUas), String> {
    proxy_with_module(dir, &module_path(), trace_port, params)
}

fn proxy_with_module(
    dir: &TestDir,
    module: &std::path::Path,
    trace_port: u16,
    params: &str,
) -> Result<(Kamailio, u16, SippUas), String> {
    let uas = SippUas::start(dir, "127.0.0.1", free_port());
    let port = free_port();
    let listen = [format!("udp:127.0.0.1:{port}"), format!("udp:127.0.0.2:{trace_port} name \"trace\"")];
    let setup =
        ProxySetup { module, listen: &listen, uas_uri: &format!("sip:127.0.0.1:{}", uas.port), children: 1 };
    let hooks = Hooks { on_request: "sip_trace();", ..Default::default() };
    let config = proxy_config_for(dir, &setup, params, &hooks);
    Kamailio::try_start(dir, "proxy", &config).map(|k| (k, port, uas)).map_err(|(_, log)| log)
}

fn copy_params(collector: &str, socket_param: &str, socket_value: &str) -> String {
    [
        modparam("trace_on", 1),
        modparam("trace_to_database", 0),
        modparam("hep_mode_on", 0),
        modparam("duplicate_uri", collector),
        modparam(socket_param, socket_value),
    ]
    .concat()
}

#[test]
fn udp_copies_leave_from_the_named_socket() {
    for (param, value) in [("send_sock_name", "trace".to_string()), ("send_sock_addr", String::new())] {
        let dir = TestDir::new(&format!("send-sock-{param}"));
        let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
        collector.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let trace_port = free_port();
        let value = if value.is_empty() { format!("sip:127.0.0.2:{trace_port}") } else { value };
        let uri = format!("sip:{}", collector.local_addr().unwrap());
        let (proxy, port, _uas) =
            proxy_with_trace_socket(&dir, trace_port, &copy_params(&uri, param, &value)).unwrap();
        let run = sipp_calls(&dir, "127.0.0.1", &format!("127.0.0.1:{port}"), 1, 10);
        assert!(run.ok, "{}\n{}", run.output, proxy.log_text());
        // INVITE, ACK and BYE were traced; each copy came from the trace socket.
        let expected: SocketAddr = format!("127.0.0.2:{trace_port}").parse().unwrap();
        let mut buf = [0u8; 65536];
        for _ in 0..3 {
            let (n, from) = collector.recv_from(&mut buf).expect("a SIP copy");
            assert_eq!(from, expected, "{param}: {}", String::from_utf8_lossy(&buf[..n]));
        }
    }
}

#[test]
fn tcp_connections_are_made_from_the_named_sockets_address() {
    let dir = TestDir::new("send-sock-tcp");
    let collector = TcpListener::bind("127.0.0.1:0").unwrap();
    let uri = format!("sip:{};transport=tcp", collector.local_addr().unwrap());
    let params = copy_params(&uri, "send_sock_name", "trace")
        .replace(&modparam("hep_mode_on", 0), &modparam("hep_mode_on", 1));
    let trace_port = free_port();
    let (proxy, port, _uas) = proxy_with_trace_socket(&dir, trace_port, &params).unwrap();
    let run = sipp_calls(&dir, "127.0.0.1", &format!("127.0.0.1:{port}"), 1, 10);
    assert!(run.ok, "{}\n{}", run.output, proxy.log_text());
    let (mut conn, peer) = collector.accept().unwrap();
    assert_eq!(peer.ip().to_string(), "127.0.0.2");
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut head = [0u8; 4];
    conn.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HEP3");
}

#[test]
fn a_send_socket_that_is_not_a_listen_socket_stops_the_server() {
    for (param, value) in [("send_sock_name", "nosuch"), ("send_sock_addr", "sip:127.0.0.3:5999")] {
        let dir = TestDir::new(&format!("send-sock-bad-{param}"));
        let params = copy_params("sip:127.0.0.1:9", param, value);
        let log = match proxy_with_trace_socket(&dir, free_port(), &params) {
            Ok(_) => panic!("{param} '{value}' was accepted"),
            Err(log) => log,
        };
        assert!(log.contains(&format!("'{param}' value '{value}'")), "{log}");
        assert!(log.contains("no listen socket"), "{log}");
    }
}

/// The first connection made to `listener` within 10 s, and its peer.
fn accept_within(listener: &TcpListener) -> Option<(std::net::TcpStream, SocketAddr)> {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok((conn, peer)) = listener.accept() {
            conn.set_nonblocking(false).unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            return Some((conn, peer));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Kamailio's own C module beside ours: HEP over UDP leaves from the named
/// socket with both, on 5.6.3 as on 6.0.1 (the socket name for HEP came
/// to 5.6.x before 5.6.3). A SIP copy over TCP is sent from the named
/// socket's address by ours on every server, and by the C module from
/// 6.0 on (SND_F_FORCE_SOCKET, a 6.0 fix); 5.6's C module connects from
/// whatever address the kernel picks, 127.0.0.1 here.
#[test]
fn the_c_module_and_ours_send_from_the_named_socket() {
    for (side, module) in [("C", diff::c_module()), ("ours", module_path())] {
        let dir = TestDir::new(&format!("send-sock-{side}-hep"));
        let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
        collector.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let uri = format!("sip:{}", collector.local_addr().unwrap());
        let params = copy_params(&uri, "send_sock_name", "trace").replace(
            &modparam("hep_mode_on", 0),
            &(modparam("hep_mode_on", 1) + &modparam("hep_version", 3)),
        );
        let trace_port = free_port();
        let (proxy, port, _uas) = proxy_with_module(&dir, &module, trace_port, &params).unwrap();
        let run = sipp_calls(&dir, "127.0.0.1", &format!("127.0.0.1:{port}"), 1, 10);
        assert!(run.ok, "{side}: {}\n{}", run.output, proxy.log_text());
        let mut buf = [0u8; 65536];
        let (n, from) = collector.recv_from(&mut buf).unwrap_or_else(|e| panic!("{side}: no HEP: {e}"));
        assert_eq!(&buf[..4], b"HEP3", "{side}: {n} bytes");
        assert_eq!(from.to_string(), format!("127.0.0.2:{trace_port}"), "{side}: HEP over UDP");
        drop(proxy);

        let dir = TestDir::new(&format!("send-sock-{side}-tcp"));
        let collector = TcpListener::bind("127.0.0.1:0").unwrap();
        let uri = format!("sip:{};transport=tcp", collector.local_addr().unwrap());
        let params = copy_params(&uri, "send_sock_name", "trace");
        let (proxy, port, _uas) = proxy_with_module(&dir, &module, free_port(), &params).unwrap();
        let run = sipp_calls(&dir, "127.0.0.1", &format!("127.0.0.1:{port}"), 1, 10);
        assert!(run.ok, "{side}: {}\n{}", run.output, proxy.log_text());
        let (_, peer) = accept_within(&collector)
            .unwrap_or_else(|| panic!("{side}: no SIP copy over TCP; log:\n{}", proxy.log_text()));
        let expected = if side == "C" && cfg!(not(kamailio_6_0)) { "127.0.0.1" } else { "127.0.0.2" };
        assert_eq!(peer.ip().to_string(), expected, "{side}: the SIP copy's connection");
    }
}

/// A `duplicate_uri` with `;transport=tcp` takes HEP over TCP with
/// Kamailio's C module as with ours, on 5.6.3 as on 6.0.1: the C module
/// stopped forcing it to UDP in 5.6.x, before 5.6.3. It connects through
/// Kamailio's TCP, which needs a TCP listen socket (ours needs none).
#[test]
fn the_c_module_and_ours_send_hep_over_tcp() {
    for (side, module) in [("C", diff::c_module()), ("ours", module_path())] {
        let dir = TestDir::new(&format!("hep-tcp-{side}"));
        let collector = TcpListener::bind("127.0.0.1:0").unwrap();
        let uri = format!("sip:{};transport=tcp", collector.local_addr().unwrap());
        let params = [
            modparam("trace_on", 1),
            modparam("trace_to_database", 0),
            modparam("hep_mode_on", 1),
            modparam("hep_version", 3),
            modparam("duplicate_uri", &uri),
        ]
        .concat();
        let uas = SippUas::start(&dir, "127.0.0.1", free_port());
        let port = free_port();
        let listen = [format!("udp:127.0.0.1:{port}"), format!("tcp:127.0.0.1:{port}")];
        let setup = ProxySetup {
            module: &module,
            listen: &listen,
            uas_uri: &format!("sip:127.0.0.1:{}", uas.port),
            children: 1,
        };
        let hooks = Hooks { on_request: "sip_trace();", ..Default::default() };
        let proxy = Kamailio::start(&dir, "proxy", &proxy_config_for(&dir, &setup, &params, &hooks));
        let run = sipp_calls(&dir, "127.0.0.1", &format!("127.0.0.1:{port}"), 1, 10);
        assert!(run.ok, "{side}: {}\n{}", run.output, proxy.log_text());
        let (mut conn, _) = accept_within(&collector)
            .unwrap_or_else(|| panic!("{side}: no connection; log:\n{}", proxy.log_text()));
        let mut head = [0u8; 4];
        conn.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HEP3", "{side}");
    }
}
