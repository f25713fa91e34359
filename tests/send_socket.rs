//! `send_sock_name` and `send_sock_addr`: traces leave from the listen
//! socket the config names, over UDP (the very socket) and TCP (its IP).

mod common;

use common::*;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::time::Duration;

/// A proxy that listens on 127.0.0.1 for SIP and on 127.0.0.2, named
/// "trace", for nothing but sending traces.
fn proxy_with_trace_socket(
    dir: &TestDir,
    trace_port: u16,
    params: &str,
) -> Result<(Kamailio, u16, SippUas), String> {
    let uas = SippUas::start(dir, "127.0.0.1", free_port());
    let port = free_port();
    let listen = [format!("udp:127.0.0.1:{port}"), format!("udp:127.0.0.2:{trace_port} name \"trace\"")];
    let setup = ProxySetup {
        module: &module_path(),
        listen: &listen,
        uas_uri: &format!("sip:127.0.0.1:{}", uas.port),
        children: 1,
    };
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
