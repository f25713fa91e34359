//! Bad input reaching a real Kamailio that traces it: malformed SIP, huge
//! messages, IPv6 and mixed-family calls, forged `X-Siptrace-*` headers,
//! and secrets that must stay out of the log. The server must survive
//! each, and each message must be traced or counted as dropped.

mod common;

use common::calls::*;
use common::*;
use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

const REACHED: &str = "probe reached the script";

/// A server that traces every request it gets to a HEP listener and to
/// the database, and answers nothing.
fn tracing_server(dir: &TestDir, port: u16, hep_uri: &str, db_url: &str, extra: &[String]) -> Kamailio {
    let listen = format!("udp:127.0.0.1:{port}\nlisten=tcp:127.0.0.1:{port}\nlisten=udp:[::1]:{port}");
    let params = [
        modparam("trace_on", 1),
        modparam("db_url", db_url),
        modparam("trace_to_database", 1),
        modparam("duplicate_uri", hep_uri),
        modparam("hep_mode_on", 1),
    ]
    .concat()
        + &extra.concat();
    let config = config_head(dir, "target", &listen)
        + RECEIVE_LIMIT
        + &format!(
            "tcp_rd_buf_size=262144\n\
             loadmodule \"sl.so\"\nloadmodule \"pv.so\"\nloadmodule \"xlog.so\"\nloadmodule \"kex.so\"\n\
             loadmodule \"db_sqlite.so\"\nloadmodule \"{module}\"\n{params}\
             request_route {{\n    xlog(\"L_NOTICE\", \"{REACHED}\\n\");\n    sip_trace();\n    exit;\n}}\n",
            module = module_path().display(),
        );
    Kamailio::start(dir, "target", &config)
}

/// An OPTIONS request with the given header lines and body.
fn request(start: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut m = format!("{start}\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-probe\r\n").into_bytes();
    for h in headers {
        m.extend_from_slice(h.as_bytes());
        m.extend_from_slice(b"\r\n");
    }
    m.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    m.extend_from_slice(body);
    m
}

const WELL_FORMED: [&str; 5] = [
    "From: <sip:probe@127.0.0.1>;tag=p1",
    "To: <sip:target@127.0.0.1>",
    "Call-ID: probe-call",
    "CSeq: 1 OPTIONS",
    "Max-Forwards: 70",
];

fn well_formed_but(replace: &str, with: &str) -> Vec<String> {
    WELL_FORMED
        .iter()
        .map(|h| if h.starts_with(replace) { with.to_string() } else { h.to_string() })
        .collect()
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The message `make` builds with a body that brings it to `total` bytes,
/// starting from `empty`, its size without a body.
fn sized(empty: usize, total: usize, make: impl Fn(usize) -> Vec<u8>) -> Vec<u8> {
    let mut body = total - empty;
    loop {
        let m = make(body);
        match m.len().cmp(&total) {
            std::cmp::Ordering::Equal => return m,
            std::cmp::Ordering::Greater => body -= m.len() - total,
            std::cmp::Ordering::Less => body += total - m.len(),
        }
    }
}

fn stat(k: &Kamailio, name: &str) -> u64 {
    k.stat(name)
}

#[test]
fn malformed_huge_and_odd_messages_never_crash_and_are_traced_or_counted() {
    let dir = TestDir::new("bad-input");
    let hepjs = HepJs::start(&dir);
    let (db, db_url) = trace_db(&dir);
    let port = free_port();
    let target = tracing_server(&dir, port, &hepjs.uri(), &db_url, &[]);
    let start = "OPTIONS sip:target@127.0.0.1 SIP/2.0";
    let long_callid = format!("Call-ID: {}", "c".repeat(10_000));
    let binary = {
        let mut h = WELL_FORMED.to_vec();
        h.push("A header line without a colon");
        h
    };
    let mut with_bytes =
        request(start, &refs(&binary.iter().map(|s| s.to_string()).collect::<Vec<_>>()), b"");
    // Raw bytes in a header value, which no text parser expects.
    let at = with_bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    with_bytes.splice(at..at, b"\r\nX-Binary: \x00\xff\xfe\x01".iter().copied());
    let udp_probes: Vec<(&str, Vec<u8>)> = vec![
        ("no Call-ID", request(start, &refs(&well_formed_but("Call-ID", "Subject: none")), b"")),
        ("no From, To or CSeq", request(start, &["Call-ID: probe-bare"], b"")),
        ("a line without a colon and raw bytes", with_bytes),
        ("a 10 KB Call-ID", request(start, &refs(&well_formed_but("Call-ID", &long_callid)), b"")),
        ("an unknown method and a bad URI", request("FOO ::: SIP/2.0", &WELL_FORMED, b"")),
        ("a bad CSeq", request(start, &refs(&well_formed_but("CSeq", "CSeq: many OPTIONS")), b"")),
        // Near the largest UDP datagram: no room left for the HEP header.
        (
            "a 65,480-byte datagram",
            sized(request(start, &WELL_FORMED, b"").len(), 65_480, |n| {
                request(start, &WELL_FORMED, &vec![b'x'; n])
            }),
        ),
    ];
    let v4 = UdpSocket::bind("127.0.0.1:0").unwrap();
    for (what, bytes) in &udp_probes {
        v4.send_to(bytes, ("127.0.0.1", port)).unwrap_or_else(|e| panic!("{what}: {e}"));
        std::thread::sleep(Duration::from_millis(100));
    }
    let v6 = UdpSocket::bind("[::1]:0").unwrap();
    v6.send_to(&request("OPTIONS sip:target@[::1] SIP/2.0", &WELL_FORMED, b""), ("::1", port)).unwrap();
    // Over TCP a message may be larger than any datagram.
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.write_all(&request(
        start,
        &refs(&well_formed_but("Call-ID", "Call-ID: probe-huge")),
        &vec![b'y'; 100_000],
    ))
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));

    assert!(target.try_rpc(&["core.uptime"]).is_ok(), "the server still answers");
    let log = target.log_text();
    assert!(!log.contains("exited by a signal") && !log.contains("core was"), "{log}");
    let reached = log.matches(REACHED).count() as u64;
    assert!(reached >= 5, "most probes reach the script: {reached}\n{log}");
    // Each message that reached sip_trace() has two outputs: HEP and a row.
    let outputs = 2 * reached;
    let received = || hepjs.packets().len() as u64 + count_trace_rows(&db) as u64;
    wait_for(Duration::from_secs(10), || received() + stat(&target, "dropped") >= outputs);
    std::thread::sleep(Duration::from_millis(500));
    let (got, dropped) = (received(), stat(&target, "dropped"));
    assert_eq!(got + dropped, outputs, "{got} delivered and {dropped} counted, of {outputs}");
    assert_eq!(stat(&target, "dropped_oversize"), 2, "the two huge messages cannot go in a HEP datagram");

    let rows = trace_rows(&db);
    assert!(rows.iter().any(|r| r.msg.len() > 100_000 && r.callid == "probe-huge"), "the huge message's row");
    assert!(rows.iter().any(|r| r.callid.len() == 10_000), "the long Call-ID's row");
    assert!(rows.iter().any(|r| r.fromip.starts_with("udp:[::1]:")), "the IPv6 message's row");
    println!(
        "figures: bad input: {} probes, {reached} reached the script; {got} outputs delivered, {dropped} \
         dropped and counted ({})",
        udp_probes.len() + 2,
        target
            .rpc(&["siptrace.stats"])
            .lines()
            .filter(|l| l.contains("dropped_") && !l.ends_with(": 0"))
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// Kamailio's core drops a request without a Call-ID before the script
/// (both 5.6 and 6.0), so only `trace_mode`, which sees the datagram as it
/// arrives, traces it. It has nothing to correlate by: its HEP packet goes
/// without chunk 0x0011 (doc/admin.md), and still goes.
#[test]
fn a_message_without_a_call_id_is_traced_without_a_correlation_chunk() {
    let dir = TestDir::new("no-callid");
    let hepjs = HepJs::start(&dir);
    let (_db, db_url) = trace_db(&dir);
    let port = free_port();
    let target = tracing_server(&dir, port, &hepjs.uri(), &db_url, &[modparam("trace_mode", 1)]);
    let start = "OPTIONS sip:target@127.0.0.1 SIP/2.0";
    let probes = [
        request(start, &refs(&well_formed_but("Call-ID", "Subject: none")), b""),
        request(start, &WELL_FORMED, b""),
    ];
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    for probe in &probes {
        udp.send_to(probe, ("127.0.0.1", port)).unwrap();
    }
    let received = |needle: &str| {
        hepjs
            .packets()
            .into_iter()
            .find(|p| p["decoded"]["payload"].as_str().is_some_and(|sip| sip.contains(needle)))
    };
    wait_for(Duration::from_secs(10), || {
        received("Subject: none").is_some() && received("probe-call").is_some()
    });
    let without = received("Subject: none").expect("the HEP packet of the message without a Call-ID");
    let correlation = &without["decoded"]["rcinfo"]["correlation_id"];
    assert!(correlation.is_null() || correlation == "", "no correlation chunk: {without}");
    let with = received("probe-call").expect("the HEP packet of the well-formed message");
    assert_eq!(with["decoded"]["rcinfo"]["correlation_id"], "probe-call", "{with}");
    assert_eq!(target.log_text().matches(REACHED).count(), 1, "only the well-formed one reaches the script");
    assert_eq!(stat(&target, "dropped"), 0);
}

#[test]
fn a_call_from_ipv4_to_ipv6_is_traced_whole() {
    let dir = TestDir::new("mixed-family");
    let hepjs = HepJs::start(&dir);
    let (db, db_url) = trace_db(&dir);
    let uas = SippUas::start(&dir, "::1", free_port());
    let port = free_port();
    let setup = ProxySetup {
        module: &module_path(),
        listen: &[format!("udp:127.0.0.1:{port}"), format!("udp:[::1]:{port}")],
        uas_uri: &format!("sip:[::1]:{}", uas.port),
        children: 2,
    };
    let params = [
        modparam("trace_on", 1),
        modparam("trace_mode", 3),
        modparam("trace_to_database", 0),
        modparam("db_url", &db_url),
        modparam("duplicate_uri", hepjs.uri()),
    ]
    .concat();
    let proxy = Kamailio::start(&dir, "proxy", &proxy_config_for(&dir, &setup, &params, &Hooks::default()));
    let calls = 3;
    let run = sipp_calls(&dir, "127.0.0.1", &format!("127.0.0.1:{port}"), calls, 10);
    assert!(run.ok, "calls failed:\n{}\n{}", run.output, proxy.log_text());

    let expected = CALL_FLOW.len() * calls as usize;
    wait_for(Duration::from_secs(10), || {
        count_trace_rows(&db) >= expected && hepjs.packets().len() >= expected
    });
    std::thread::sleep(Duration::from_millis(500));
    let ports = Ports { uac: run.port, proxy: port, uas: uas.port };
    let port_of = |end: &str| end.rsplit(':').next().unwrap().parse::<u16>().unwrap();
    let rows = trace_rows(&db);
    assert_flows(
        rows.iter().map(|r| {
            (
                r.callid.clone(),
                ports.role(port_of(&r.fromip)),
                ports.role(port_of(&r.toip)),
                kind_of_text(&String::from_utf8_lossy(&r.msg)),
            )
        }),
        &CALL_FLOW,
        calls as usize,
    );
    for r in &rows {
        let v6 = r.fromip.contains('[');
        assert_eq!(v6, r.toip.contains('['), "one family per message: {} -> {}", r.fromip, r.toip);
        let uas_side = port_of(&r.fromip) == uas.port || port_of(&r.toip) == uas.port;
        assert_eq!(v6, uas_side, "IPv6 on the UAS side only: {} -> {}", r.fromip, r.toip);
    }
    assert_eq!(hepjs.packets().len(), expected, "every message in HEP too");
    assert_eq!(proxy.stat("dropped"), 0);
}

#[test]
fn forged_xheaders_are_refused_and_counted() {
    let dir = TestDir::new("forged-xheaders");
    let hepjs = HepJs::start(&dir);
    let (db, db_url) = trace_db(&dir);
    let port = free_port();
    let target = tracing_server(&dir, port, &hepjs.uri(), &db_url, &[modparam("xheaders_read", 1)]);
    let start = "OPTIONS sip:target@127.0.0.1 SIP/2.0";
    let forged = |x: &[&str]| {
        let mut h: Vec<&str> = WELL_FORMED.to_vec();
        h.extend_from_slice(x);
        request(start, &h, b"")
    };
    let genuine = [
        "X-Siptrace-Fromip: udp:192.0.2.1:5060",
        "X-Siptrace-Toip: udp:192.0.2.2:5060",
        "X-Siptrace-Time: 1700000000 123456",
        "X-Siptrace-Method: OPTIONS",
        "X-Siptrace-Dir: in",
    ];
    let but = |i: usize, line: &'static str| {
        let mut v = genuine.to_vec();
        v[i] = line;
        v
    };
    let refused: Vec<Vec<u8>> = vec![
        forged(&but(0, "X-Siptrace-Fromip: not an address")),
        forged(&but(1, "X-Siptrace-Toip: udp:192.0.2.2:5060 X-Evil: 1")),
        forged(&but(2, "X-Siptrace-Time: 99999999999999999999999 1")),
        forged(&but(4, "X-Siptrace-Dir: sideways")),
        forged(&[genuine[0], genuine[0], genuine[1], genuine[2], genuine[3], genuine[4]]),
        forged(&genuine[..4]),
    ];
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for m in &refused {
        socket.send_to(m, ("127.0.0.1", port)).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    socket.send_to(&forged(&genuine), ("127.0.0.1", port)).unwrap();
    wait_for(Duration::from_secs(10), || count_trace_rows(&db) >= 1);
    std::thread::sleep(Duration::from_millis(500));

    assert!(target.try_rpc(&["core.uptime"]).is_ok(), "the server still answers");
    assert_eq!(target.log_text().matches(REACHED).count(), refused.len() + 1);
    assert_eq!(stat(&target, "dropped_unparsable"), refused.len() as u64, "each forged message is counted");
    let rows = trace_rows(&db);
    assert_eq!(rows.len(), 1, "only the genuine one is stored");
    assert_eq!(
        (rows[0].fromip.as_str(), rows[0].toip.as_str()),
        ("udp:192.0.2.1:5060", "udp:192.0.2.2:5060")
    );
    assert!(!String::from_utf8_lossy(&rows[0].msg).contains("X-Siptrace"), "the headers leave the message");
}

#[test]
fn secrets_never_appear_in_logs() {
    let dir = TestDir::new("secrets");
    let dead = free_port();
    // A database and a collector that are both down, so that every error
    // path that mentions them is taken.
    let db_url = format!("postgres://kamailio:pw-SECRET-1@127.0.0.1:{dead}/kamailio");
    let params = [
        modparam("trace_on", 1),
        modparam("trace_mode", 3),
        modparam("trace_to_database", 0),
        modparam("db_url", &db_url),
        modparam("auth_key", "hep-SECRET-2"),
        modparam("duplicate_uri", format!("sip:127.0.0.1:{dead};transport=tcp")),
    ];
    let proxy = Proxy::start(&dir, "127.0.0.1", &params, &Hooks::default());
    proxy.calls(&dir, 2);
    wait_for(Duration::from_secs(10), || proxy.stat("dropped") >= 2 * 2 * CALL_FLOW.len() as u64);
    proxy.kamailio.rpc(&["siptrace.stats"]);
    let log = proxy.kamailio.log_text();
    assert!(log.contains("does not answer") || log.contains("database"), "the database errors are logged");
    for secret in ["pw-SECRET-1", "hep-SECRET-2"] {
        assert!(!log.contains(secret), "{secret} is in the log:\n{log}");
    }

    // The same secrets in a refused configuration.
    let mut bad = params.to_vec();
    bad.push(modparam("trace_mode", 99));
    let refused = Kamailio::try_start(
        &dir,
        "refused",
        &proxy_config(&dir, "127.0.0.1", free_port(), free_port(), &bad.concat(), &Hooks::default()),
    );
    let Err((_, log)) = refused else { panic!("a bad trace_mode must refuse the start") };
    assert!(log.contains("trace_mode"), "{log}");
    for secret in ["pw-SECRET-1", "hep-SECRET-2"] {
        assert!(!log.contains(secret), "{secret} is in the log:\n{log}");
    }
}
