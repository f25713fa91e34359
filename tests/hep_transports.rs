//! HEP over TCP and TLS to Kamailio's sipcapture, several destinations and
//! several sender processes, and a collector that restarts.

mod common;

use common::calls::*;
use common::*;
use std::collections::HashMap;
use std::time::Duration;

fn hep_params(uri: &str) -> Vec<String> {
    vec![
        modparam("trace_on", 1),
        modparam("trace_mode", 1),
        modparam("trace_to_database", 0),
        modparam("duplicate_uri", uri),
    ]
}

/// Checks what sipcapture stored for `calls` calls.
fn assert_all_calls_captured(collector: &Sipcapture, ports: &Ports, calls: usize) -> Vec<Captured> {
    let expected = CALL_FLOW.len() * calls;
    let packets = collector.wait_for_packets(expected);
    assert_eq!(packets.len(), expected, "HEP packets stored by sipcapture");
    assert_captured_flows(&packets, ports, calls);
    for p in &packets {
        assert_eq!(p.proto, 1, "the SIP messages went over UDP, whatever carried the HEP");
        assert_eq!(p.correlation_id, p.callid);
    }
    packets
}

#[test]
fn hep_over_tcp_reaches_sipcapture() {
    let dir = TestDir::new("hep-tcp");
    let collector = Sipcapture::start_on(&dir, "127.0.0.1", CollectorTransport::Tcp, free_port());
    let uri = format!("{};transport=tcp", collector.uri());
    let proxy = Proxy::start(&dir, "127.0.0.1", &hep_params(&uri), &Hooks::default());
    let ports = proxy.calls(&dir, 3);
    assert_all_calls_captured(&collector, &ports, 3);
    assert_eq!(proxy.stat("hep_sent"), 3 * CALL_FLOW.len() as u64);
    assert_eq!(proxy.stat("dropped"), 0);
}

#[test]
fn hep_over_tls_to_a_verified_collector() {
    let dir = TestDir::new("hep-tls");
    let collector = Sipcapture::start_on(&dir, "127.0.0.1", CollectorTransport::Tls, free_port());
    let certs = test_certificates(&dir);
    let uri = format!("{};transport=tls", collector.uri());
    let mut params = hep_params(&uri);
    params.push(modparam("tls_ca_file", certs.ca_cert.display()));
    let proxy = Proxy::start(&dir, "127.0.0.1", &params, &Hooks::default());
    let ports = proxy.calls(&dir, 3);
    assert_all_calls_captured(&collector, &ports, 3);
    assert_eq!(proxy.stat("hep_sent"), 3 * CALL_FLOW.len() as u64);
    assert_eq!(proxy.stat("dropped"), 0);
}

#[test]
fn hep_over_tls_refuses_a_certificate_it_cannot_verify() {
    let dir = TestDir::new("hep-tls-untrusted");
    let collector = Sipcapture::start_on(&dir, "127.0.0.1", CollectorTransport::Tls, free_port());
    // The system's CA bundle does not know the test CA.
    let uri = format!("{};transport=tls", collector.uri());
    let proxy = Proxy::start(&dir, "127.0.0.1", &hep_params(&uri), &Hooks::default());
    proxy.calls(&dir, 2);
    let lost = || proxy.stat("dropped_send_failed") + proxy.stat("dropped_not_connected");
    assert!(wait_for(Duration::from_secs(10), || lost() == 2 * CALL_FLOW.len() as u64), "lost {}", lost());
    assert_eq!(proxy.stat("hep_sent"), 0);
    assert_eq!(collector.count(), 0);
    assert!(proxy.kamailio.log_text().contains("UnknownIssuer"), "the log says why");
}

#[test]
fn several_destinations_and_senders_keep_each_call_in_order() {
    let dir = TestDir::new("fan-out");
    let collector = Sipcapture::start(&dir, "127.0.0.1");
    let hepjs = HepJs::start(&dir);
    let mut params = hep_params(&collector.uri());
    params.push(modparam("duplicate_uri", hepjs.uri()));
    params.push(modparam("senders", 2));
    params.push(modparam("batch_size", 8));
    params.push(modparam("flush_interval", 2));
    let proxy = Proxy::start(&dir, "127.0.0.1", &params, &Hooks::default());
    let calls = 8;
    let ports = proxy.calls(&dir, calls);

    let packets = assert_all_calls_captured(&collector, &ports, calls as usize);
    assert_eq!(
        hepjs.wait_for_packets(packets.len()).len(),
        packets.len(),
        "both destinations get every packet"
    );
    // The collector stores packets as they arrive: per call, their times
    // never go back.
    let mut last: HashMap<&str, i64> = HashMap::new();
    for p in &packets {
        let previous = last.insert(&p.callid, p.micro_ts).unwrap_or(0);
        assert!(p.micro_ts >= previous, "call {} arrived out of order", p.callid);
    }
    let out = proxy.kamailio.rpc(&["core.psx"]);
    assert_eq!(out.matches("siptrace sender").count(), 2, "two sender processes:\n{out}");
}

#[test]
fn a_tcp_collector_that_restarts_is_reconnected() {
    let dir = TestDir::new("hep-tcp-restart");
    let port = free_port();
    let collector = Sipcapture::start_on(&dir, "127.0.0.1", CollectorTransport::Tcp, port);
    let uri = format!("{};transport=tcp", collector.uri());
    let proxy = Proxy::start(&dir, "127.0.0.1", &hep_params(&uri), &Hooks::default());
    let per_call = CALL_FLOW.len() as u64;
    proxy.calls(&dir, 2);
    assert_eq!(collector.wait_for_packets(2 * per_call as usize).len(), 2 * per_call as usize);

    drop(collector);
    proxy.calls(&dir, 2);
    let lost = || proxy.stat("dropped_send_failed") + proxy.stat("dropped_not_connected");
    assert!(wait_for(Duration::from_secs(10), || lost() > 0), "traces of the outage are counted");

    let collector = Sipcapture::start_on(&dir, "127.0.0.1", CollectorTransport::Tcp, port);
    assert!(wait_for(Duration::from_secs(15), || proxy.stat("reconnects") >= 1), "reconnected");
    let before = collector.count();
    proxy.calls(&dir, 2);
    let after = collector.wait_for_packets(before + 2 * per_call as usize).len();
    assert_eq!(after - before, 2 * per_call as usize, "everything after the restart arrives");
    assert_eq!(proxy.stat("hep_sent") + lost(), 6 * per_call, "each trace is sent or counted as dropped");
}
