//! Records beyond SIP that belong to a traced call: the log lines its
//! script prints and the REST queries it makes, checked as hep-js decodes
//! them. Half of the calls are traced, the other half must leave nothing.

mod common;

use common::calls::*;
use common::http::HttpServer;
use common::*;
use serde_json::Value;
use std::time::Duration;

fn payload_json(p: &Value) -> Value {
    let text = p["decoded"]["payload"].as_str().unwrap_or_default();
    serde_json::from_str(text).unwrap_or(Value::Null)
}

fn rcinfo<'a>(p: &'a Value, key: &str) -> &'a Value {
    &p["decoded"]["rcinfo"][key]
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

#[test]
fn log_lines_and_rest_queries_of_traced_calls() {
    let dir = TestDir::new("call_events");
    let http = HttpServer::start();
    let collector = HepJs::start(&dir);
    let params = [
        "loadmodule \"http_client.so\"\nloadmodule \"xlog.so\"\n".to_string(),
        modparam("trace_on", 1),
        modparam("hep_mode_on", 1),
        modparam("trace_to_database", 0),
        modparam("duplicate_uri", collector.uri()),
        // Routes the hooks cannot hold: tm's reply route of traced calls.
        "onreply_route[TRACED] { xlog(\"L_INFO\", \"reply $rs for $ci\\n\"); }\n".to_string(),
    ];
    // sipp numbers its Call-IDs from 1: odd calls are traced.
    let on_request = format!(
        r#"if (is_method("INVITE") && !has_totag()) {{
        if ($ci =~ "^[13579]-") {{
            sip_trace_types("sip|xlog|rest");
            sip_trace_mode("t");
            t_on_reply("TRACED");
        }}
        xlog("L_INFO", "routing $rm of $ci\n");
        sip_trace_http_query("http://127.0.0.1:{port}/lookup?ci=$(ci{{s.escape.param}})", "$var(rest)");
        xlog("L_INFO", "rest said $var(rest) for $ci\n");
    }}"#,
        port = http.port
    );
    let hooks = Hooks { on_request: &on_request, on_reply: "", on_send: "" };
    let proxy = Proxy::start(&dir, "127.0.0.1", &params, &hooks);
    proxy.calls(&dir, 4);
    // Per traced call: 7 SIP messages of the INVITE transaction, 4 log lines
    // (routing, rest said, reply 180, reply 200), 2 REST records.
    let packets = collector.wait_for_packets(2 * (7 + 4 + 2));
    let log = proxy.kamailio.log_text();

    let by_type =
        |t: u64| packets.iter().filter(|p| rcinfo(p, "payloadType").as_u64() == Some(t)).collect::<Vec<_>>();
    let (sip, logs, rest) = (by_type(1), by_type(100), by_type(0x58));
    assert_eq!(sip.len(), 14, "SIP records of 2 traced INVITE transactions; log:\n{log}");
    assert_eq!(packets.len(), sip.len() + logs.len() + rest.len(), "no other record types");

    // The traced calls' Call-IDs, from the SIP records.
    let mut traced: Vec<String> =
        sip.iter().map(|p| str_of(rcinfo(p, "correlation_id")).to_string()).collect();
    traced.sort();
    traced.dedup();
    assert_eq!(traced.len(), 2, "{traced:?}");
    assert!(traced.iter().all(|c| c.starts_with('1') || c.starts_with('3')), "{traced:?}");

    for call in &traced {
        let sip_correlation = serde_json::json!({ "sip": call }).to_string();
        let lines: Vec<(String, String)> = logs
            .iter()
            .filter(|p| str_of(rcinfo(p, "correlation_id")) == call)
            .map(|p| {
                assert_eq!(str_of(rcinfo(p, "extra_correlation")), sip_correlation);
                let j = payload_json(p);
                (str_of(&j["Event"]).to_string(), str_of(&j["text"]).to_string())
            })
            .collect();
        let texts: Vec<&str> = lines.iter().map(|(_, t)| t.as_str()).collect();
        for expected in [
            format!("routing INVITE of {call}"),
            format!("rest said pong for {call}"),
            format!("reply 180 for {call}"),
            format!("reply 200 for {call}"),
        ] {
            assert!(texts.iter().any(|t| t.ends_with(&expected)), "'{expected}' in {texts:?}");
        }
        assert!(lines.iter().all(|(level, _)| level == "INFO"), "{lines:?}");

        let queries: Vec<&&Value> =
            rest.iter().filter(|p| str_of(rcinfo(p, "extra_correlation")) == sip_correlation).collect();
        assert_eq!(queries.len(), 2, "request and reply of {call}");
        let ids: Vec<&str> = queries.iter().map(|p| str_of(rcinfo(p, "correlation_id"))).collect();
        assert!(ids[0].starts_with("rest-") && ids[0] == ids[1], "{ids:?}");
        assert_ne!(ids[0], call.as_str());
        let request = queries.iter().find(|p| payload_json(p)["method"] == "GET").expect("request record");
        let reply = queries.iter().find(|p| payload_json(p)["status"] == "200").expect("reply record");
        let url = str_of(&payload_json(request)["url"]).to_string();
        assert!(url.starts_with(&format!("http://127.0.0.1:{}/lookup?ci=", http.port)), "{url}");
        assert_eq!(payload_json(request)["first_line"], format!("GET {url} HTTP/1.1"));
        assert_eq!(rcinfo(request, "dstPort").as_u64(), Some(u64::from(http.port)));
        assert_eq!(rcinfo(reply, "srcPort").as_u64(), Some(u64::from(http.port)));
        assert_eq!(payload_json(reply)["payload"], "pong");
        assert_eq!(payload_json(reply)["first_line"], "HTTP/1.1 200");
    }
    // The untraced calls made the same log lines and queries: nothing of
    // theirs was sent.
    let mut untraced: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split("routing INVITE of ").nth(1))
        .filter(|c| !traced.iter().any(|t| t == c))
        .collect();
    untraced.dedup();
    assert_eq!(untraced.len(), 2, "untraced calls ran the same script:\n{log}");
    for p in &packets {
        let text = p.to_string();
        assert!(untraced.iter().all(|c| !text.contains(c)), "a record of an untraced call: {p}");
    }
    // The log kept its lines: the hook printed them as before.
    assert!(log.contains("INFO: <script>: routing INVITE of 1-"), "{log}");
}

#[test]
fn tcp_connections_are_traced_and_linked_to_their_messages() {
    let dir = TestDir::new("net_events");
    let collector = HepJs::start(&dir);
    let uas = SippUas::start(&dir, "127.0.0.1", free_port());
    let port = free_port();
    let params = [
        modparam("trace_on", 1),
        modparam("hep_mode_on", 1),
        modparam("trace_to_database", 0),
        modparam("trace_net", 1),
        modparam("duplicate_uri", collector.uri()),
    ]
    .concat();
    let setup = ProxySetup {
        module: &module_path(),
        listen: &[format!("tcp:127.0.0.1:{port}"), format!("udp:127.0.0.1:{port}")],
        uas_uri: &format!("sip:127.0.0.1:{}", uas.port),
        children: 2,
    };
    let hooks = Hooks { on_request: "sip_trace_mode(\"t\");", on_reply: "", on_send: "" };
    let config = proxy_config_for(&dir, &setup, &params, &hooks);
    let proxy = Kamailio::start(&dir, "proxy", &config);
    let uac_port = free_port();
    let run = sipp_uac(
        &dir,
        "127.0.0.1",
        &format!("127.0.0.1:{port}"),
        uac_port,
        &["-sn", "uac", "-t", "t1", "-r", "10", "-d", "10"],
        2,
        "60s",
    );
    assert!(run.ok, "sipp over TCP:\n{}\n{}", run.output, proxy.log_text());

    let is_net = |p: &Value| rcinfo(p, "payloadType").as_u64() == Some(0x59);
    let closed = |ps: &[Value]| ps.iter().any(|p| is_net(p) && payload_json(p)["Event"] == "CLOSED");
    assert!(
        wait_for(Duration::from_secs(10), || closed(&collector.packets())),
        "no CLOSED record; log:\n{}",
        proxy.log_text()
    );
    let packets = collector.packets();
    let net: Vec<&Value> = packets.iter().filter(|p| is_net(p)).collect();
    let events: Vec<String> = net.iter().map(|p| str_of(&payload_json(p)["Event"]).to_string()).collect();
    assert_eq!(events, ["ACCEPTED", "CLOSED"], "{net:?}");
    let id = str_of(rcinfo(net[0], "correlation_id")).to_string();
    assert!(id.parse::<u32>().is_ok(), "a connection id: {id}");
    for p in &net {
        assert_eq!(str_of(rcinfo(p, "correlation_id")), id);
        assert_eq!(payload_json(p)["Protocol"], "TCP");
        assert_eq!(payload_json(p)["Status"], "SUCCESS");
        assert_eq!(rcinfo(p, "srcPort").as_u64(), Some(u64::from(uac_port)), "the peer's end first");
        assert_eq!(rcinfo(p, "dstPort").as_u64(), Some(u64::from(port)));
    }
    assert!(str_of(&payload_json(net[1])["Message"]).contains("EOF"), "{}", net[1]);

    // Every SIP record between the UAC and the proxy names the connection;
    // those to and from the UAS, over UDP, name none.
    let net_correlation = serde_json::json!({ "net": id }).to_string();
    let sip: Vec<&Value> = packets.iter().filter(|p| rcinfo(p, "payloadType").as_u64() == Some(1)).collect();
    let uac_side = |p: &Value| {
        [rcinfo(p, "srcPort"), rcinfo(p, "dstPort")].iter().any(|v| v.as_u64() == Some(u64::from(uac_port)))
    };
    let (over_tcp, over_udp): (Vec<&&Value>, Vec<&&Value>) = sip.iter().partition(|p| uac_side(p));
    // Per call: INVITE, 100, 180, 200, ACK, BYE, 200 on the UAC side.
    assert_eq!(over_tcp.len(), 2 * 7, "{over_tcp:?}");
    assert!(!over_udp.is_empty());
    for p in over_tcp {
        assert_eq!(str_of(rcinfo(p, "extra_correlation")), net_correlation, "{p}");
    }
    for p in over_udp {
        assert!(rcinfo(p, "extra_correlation").is_null(), "{p}");
    }
}
