//! End to end: a real Kamailio loads the built module and proxies sipp
//! calls; Kamailio's own sipcapture module decodes the HEP we send, and the
//! sip_trace rows are read back from SQLite.

mod common;

use common::*;
use std::collections::HashMap;

/// Who sent or received a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Role {
    Uac,
    Proxy,
    Uas,
}

/// The 13 messages of one INVITE/ACK/BYE call through the proxy, as
/// (sender, receiver, request method or "status CSeq-method").
const CALL_FLOW: [(Role, Role, &str); 13] = [
    (Role::Uac, Role::Proxy, "INVITE"),
    (Role::Proxy, Role::Uac, "100 INVITE"),
    (Role::Proxy, Role::Uas, "INVITE"),
    (Role::Uas, Role::Proxy, "180 INVITE"),
    (Role::Proxy, Role::Uac, "180 INVITE"),
    (Role::Uas, Role::Proxy, "200 INVITE"),
    (Role::Proxy, Role::Uac, "200 INVITE"),
    (Role::Uac, Role::Proxy, "ACK"),
    (Role::Proxy, Role::Uas, "ACK"),
    (Role::Uac, Role::Proxy, "BYE"),
    (Role::Proxy, Role::Uas, "BYE"),
    (Role::Uas, Role::Proxy, "200 BYE"),
    (Role::Proxy, Role::Uac, "200 BYE"),
];

struct Ports {
    uac: u16,
    proxy: u16,
    uas: u16,
}

impl Ports {
    fn role(&self, port: u16) -> Role {
        match port {
            p if p == self.uac => Role::Uac,
            p if p == self.proxy => Role::Proxy,
            p if p == self.uas => Role::Uas,
            other => panic!("unexpected port {other}"),
        }
    }
}

/// "INVITE" for a request, "200 BYE" for a reply, from sipcapture's columns.
fn kind(p: &Captured) -> String {
    if p.method.chars().all(|c| c.is_ascii_digit()) {
        let cseq_method = p.cseq.split_whitespace().nth(1).unwrap_or_default();
        format!("{} {cseq_method}", p.method)
    } else {
        p.method.clone()
    }
}

/// Checks that the packets of every call are exactly the call flow.
fn assert_call_flows(packets: &[Captured], ports: &Ports, calls: usize) {
    let mut by_call: HashMap<&str, Vec<(Role, Role, String)>> = HashMap::new();
    for p in packets {
        by_call.entry(&p.callid).or_default().push((ports.role(p.src_port), ports.role(p.dst_port), kind(p)));
    }
    assert_eq!(by_call.len(), calls, "distinct Call-IDs at the collector");
    let mut expected: Vec<(Role, Role, String)> =
        CALL_FLOW.iter().map(|(a, b, k)| (*a, *b, k.to_string())).collect();
    expected.sort();
    for (callid, mut seen) in by_call {
        seen.sort();
        assert_eq!(seen, expected, "messages of call {callid}");
    }
}

fn first_line(msg: &[u8]) -> String {
    String::from_utf8_lossy(msg).lines().next().unwrap_or_default().to_string()
}

#[test]
fn core_events_reach_sipcapture_and_sqlite_once_per_message() {
    let dir = TestDir::new("core-events");
    let collector = Sipcapture::start(&dir, "127.0.0.1");
    let (db, db_url) = trace_db(&dir);
    let ports_proxy = free_port();
    let uas = SippUas::start(&dir, "127.0.0.1", free_port());
    let params = [
        modparam("trace_on", 1),
        modparam("trace_mode", 3),
        modparam("trace_to_database", 0),
        modparam("hep_mode_on", 1),
        modparam("hep_version", 3),
        modparam("hep_capture_id", 4242),
        modparam("duplicate_uri", collector.uri()),
        modparam("db_url", &db_url),
    ]
    .concat();
    let proxy = Kamailio::start(
        &dir,
        "proxy",
        &proxy_config(&dir, "127.0.0.1", ports_proxy, uas.port, &params, &Hooks::default()),
    );

    let calls = 5;
    let run = sipp_calls(&dir, "127.0.0.1", &format!("127.0.0.1:{ports_proxy}"), calls, 10);
    assert!(run.ok, "sipp calls failed:\n{}\nproxy log:\n{}", run.output, proxy.log_text());
    let ports = Ports { uac: run.port, proxy: ports_proxy, uas: uas.port };

    // 1. Every message, in each direction, decoded by sipcapture.
    let expected = CALL_FLOW.len() * calls as usize;
    let packets = collector.wait_for_packets(expected);
    assert_eq!(packets.len(), expected, "HEP packets stored by sipcapture");
    assert_call_flows(&packets, &ports, calls as usize);
    for p in &packets {
        assert_eq!((p.src_ip.as_str(), p.dst_ip.as_str()), ("127.0.0.1", "127.0.0.1"));
        assert_eq!(p.proto, 1, "UDP");
        assert_eq!(p.family, 2, "IPv4");
        assert_eq!(p.node, "homer01:4242", "capture id");
        // Without a correlation id of the script's, it is the Call-ID.
        assert_eq!(p.correlation_id, p.callid);
        let text = String::from_utf8_lossy(&p.msg);
        assert!(text.contains(&format!("Call-ID: {}\r\n", p.callid)), "payload of {}", first_line(&p.msg));
        assert!(text.contains("\r\n\r\n"), "complete payload");
    }

    // 2. The same messages in the sip_trace table, column by column.
    let rows = trace_rows(&db);
    assert_eq!(rows.len(), expected, "sip_trace rows");
    let mut by_msg: HashMap<&[u8], Vec<&TraceRow>> = HashMap::new();
    for r in &rows {
        by_msg.entry(&r.msg).or_default().push(r);
    }
    for p in &packets {
        let matches = by_msg.get(p.msg.as_slice()).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(matches.len(), 1, "one row with the payload of {}", first_line(&p.msg));
        let row = matches[0];
        let is_reply = p.method.chars().all(|c| c.is_ascii_digit());
        let expected_row = TraceRow {
            time_stamp: p.date.clone(),
            time_us: p.micro_ts % 1_000_000,
            callid: p.callid.clone(),
            traced_user: String::new(),
            msg: p.msg.clone(),
            method: if is_reply {
                p.cseq.split_whitespace().nth(1).unwrap().to_string()
            } else {
                p.method.clone()
            },
            status: if is_reply { p.method.clone() } else { String::new() },
            fromip: format!("udp:{}:{}", p.src_ip, p.src_port),
            toip: format!("udp:{}:{}", p.dst_ip, p.dst_port),
            fromtag: p.from_tag.clone(),
            totag: p.to_tag.clone(),
            direction: if p.dst_port == ports_proxy { "in".into() } else { "out".into() },
        };
        assert_eq!(row, &expected_row, "row of {}", first_line(&p.msg));
    }

    // Nothing was dropped, and the statistics count what was traced.
    assert_eq!(proxy.stat("dropped"), 0);
    assert_eq!(proxy.stat("hep_sent"), expected as u64);
    assert_eq!(proxy.stat("db_rows"), expected as u64);
    let requests = CALL_FLOW.iter().filter(|(_, _, k)| !k.starts_with(char::is_numeric)).count();
    assert_eq!(proxy.stat("traced_requests"), (requests * calls as usize) as u64);
    assert_eq!(proxy.stat("traced_replies"), ((CALL_FLOW.len() - requests) * calls as usize) as u64);
}
