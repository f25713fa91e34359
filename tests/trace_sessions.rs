//! Trace on demand (issue 18): `siptrace.trace_start`, `trace_stop` and
//! `trace_list` over kamcmd (ctl) and jsonrpcs, with filters, URIs,
//! scopes and an end; `trace_skip_methods`, `trace_sample` and
//! `hep_node_name`. Real Kamailio proxies, sipp calls and pings, and
//! hep-js decoding what the collectors receive (chunk 0x0013 included).

mod common;

use common::calls::{assert_flows, header, kind_of_text, Role};
use common::*;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A SIP message a collector received, as hep-js decoded it.
#[derive(Debug, Clone)]
struct Rec {
    call_id: String,
    /// "INVITE", or "200 BYE" for a reply.
    kind: String,
    src_ip: String,
    src_port: u16,
    dst_ip: String,
    dst_port: u16,
    node: Option<String>,
    /// The (vendor, type) of each chunk, in order.
    chunks: Vec<(u64, u64)>,
}

fn records(collector: &HepJs) -> Vec<Rec> {
    collector.packets().iter().map(record).collect()
}

/// The source and destination IPs of a packet, from its chunks 3 and 4
/// (IPv4) or 5 and 6 (IPv6): hep-js decodes only the IPv4 ones.
fn addresses(raw: &[u8]) -> (String, String) {
    let (mut src, mut dst) = (String::new(), String::new());
    let mut at = 6;
    while at + 6 <= raw.len() {
        let kind = u16::from_be_bytes([raw[at + 2], raw[at + 3]]);
        let len = u16::from_be_bytes([raw[at + 4], raw[at + 5]]) as usize;
        let data = &raw[at + 6..at + len];
        let ip = match data.len() {
            4 => std::net::IpAddr::from(<[u8; 4]>::try_from(data).unwrap()).to_string(),
            16 => std::net::IpAddr::from(<[u8; 16]>::try_from(data).unwrap()).to_string(),
            _ => String::new(),
        };
        match kind {
            3 | 5 => src = ip,
            4 | 6 => dst = ip,
            _ => {}
        }
        at += len.max(6);
    }
    (src, dst)
}

fn record(p: &Value) -> Rec {
    let payload = p["decoded"]["payload"].as_str().unwrap_or_default();
    let rc = &p["decoded"]["rcinfo"];
    let (src_ip, dst_ip) = addresses(&common::calls::hex_decode(p["raw"].as_str().unwrap_or_default()));
    Rec {
        call_id: header(payload, "Call-ID").to_string(),
        kind: kind_of_text(payload),
        src_ip,
        src_port: rc["srcPort"].as_u64().unwrap_or_default() as u16,
        dst_ip,
        dst_port: rc["dstPort"].as_u64().unwrap_or_default() as u16,
        node: rc["hepNodeName"].as_str().map(str::to_string),
        chunks: p["chunks"]
            .as_array()
            .map(|a| a.iter().map(|c| (c[0].as_u64().unwrap(), c[1].as_u64().unwrap())).collect())
            .unwrap_or_default(),
    }
}

fn call_ids(recs: &[Rec]) -> BTreeSet<String> {
    recs.iter().map(|r| r.call_id.clone()).collect()
}

/// Waits for `n` records at `collector`, then a little longer for any
/// extra ones.
fn wait_records(collector: &HepJs, n: usize) -> Vec<Rec> {
    collector.wait_for_packets(n).iter().map(record).collect()
}

/// The test's own copy of the documented sampling hash: FNV-1a 64.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A proxy for these tests: tm, sl, rr and (with `dialog`) the dialog
/// module, jsonrpcs over a FIFO, the module under test with `params`.
/// OPTIONS get a stateless 200 (an explicit `sip_trace()` first when they
/// carry `X-Trace: yes`), MESSAGE a stateful 202; calls go to `next`.
struct Proxy {
    kamailio: Kamailio,
    port: u16,
    fifo: PathBuf,
}

fn proxy(
    dir: &TestDir,
    name: &str,
    listen: &[String],
    port: u16,
    next: &str,
    dialog: bool,
    params: &[String],
) -> Proxy {
    let fifo = dir.file(&format!("{name}.fifo"));
    let config = config_head(dir, name, &listen.join("\nlisten="))
        + &format!(
            r#"loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "siputils.so"
loadmodule "textops.so"
loadmodule "kex.so"
loadmodule "jsonrpcs.so"
{dialog_module}loadmodule "{module}"
modparam("jsonrpcs", "transport", 2)
modparam("jsonrpcs", "fifo_name", "{fifo}")
modparam("jsonrpcs", "fifo_reply_dir", "{reply_dir}/")
{params}
request_route {{
    if (is_method("OPTIONS")) {{
        if ($hdr(X-Trace) == "yes") {{ sip_trace(); }}
        sl_send_reply("200", "OK");
        exit;
    }}
    if (is_method("MESSAGE")) {{
        t_newtran();
        t_reply("202", "Accepted");
        exit;
    }}
    if (has_totag()) {{
        if (!loose_route()) {{ $du = "{next}"; }}
        t_relay();
        exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    {manage}
    record_route();
    $du = "{next}";
    t_relay();
}}
"#,
            dialog_module = if dialog { "loadmodule \"dialog.so\"\n" } else { "" },
            module = module_path().display(),
            fifo = fifo.display(),
            reply_dir = dir.path.display(),
            params = params.concat(),
            manage = if dialog { "if (is_method(\"INVITE\")) { dlg_manage(); }" } else { "" },
        );
    Proxy { kamailio: Kamailio::start(dir, name, &config), port, fifo }
}

/// A proxy on 127.0.0.1 in front of a sipp UAS.
fn simple_proxy(dir: &TestDir, uas: &SippUas, dialog: bool, params: &[String]) -> Proxy {
    let port = free_port();
    let next = format!("sip:127.0.0.1:{}", uas.port);
    proxy(dir, "proxy", &[format!("udp:127.0.0.1:{port}")], port, &next, dialog, params)
}

/// A sipp UAC scenario: one INVITE/ACK/BYE call from `user`.
fn call_scenario(dir: &TestDir, user: &str) -> PathBuf {
    let path = dir.file(&format!("call-{user}.xml"));
    let xml = include_str!("fixtures/uac-call.xml")
        .replace("sip:uac@siptrace-rs.test", &format!("sip:{user}@siptrace-rs.test"));
    std::fs::write(&path, xml).unwrap();
    path
}

/// A sipp UAC scenario: one `method` request from `user`, answered with
/// `code`; `extra` is added as a header line.
fn request_scenario(dir: &TestDir, method: &str, user: &str, code: u16, extra: &str) -> PathBuf {
    let path = dir.file(&format!("{method}-{user}-{}.xml", extra.len()));
    let extra = if extra.is_empty() { String::new() } else { format!("{extra}\n") };
    let xml = format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="one {method}">
  <send retrans="500"><![CDATA[

{method} sip:service@siptrace-rs.test SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{user}@siptrace-rs.test>;tag=[call_number]
To: <sip:service@siptrace-rs.test>
Call-ID: [call_id]
CSeq: 1 {method}
Max-Forwards: 70
{extra}Content-Length: 0

]]></send>
  <recv response="{code}"/>
</scenario>
"#
    );
    std::fs::write(&path, xml).unwrap();
    path
}

/// Runs `calls` runs of `scenario` from `ip` to the proxy; returns the
/// UAC's port.
fn run(dir: &TestDir, ip: &str, proxy: &Proxy, scenario: &Path, calls: u32) -> u16 {
    let to = format!("{}:{}", host_in_uri(ip), proxy.port);
    let sf = ["-sf", scenario.to_str().unwrap(), "-r", "20"];
    let r = sipp_uac(dir, ip, &to, free_port(), &sf, calls, "30s");
    assert!(r.ok, "sipp {}:\n{}\nproxy log:\n{}", scenario.display(), r.output, proxy.kamailio.log_text());
    r.port
}

/// The members of each session in a kamcmd reply, in order: a session
/// starts at its `name:` line.
fn kamcmd_sessions(text: &str) -> Vec<HashMap<String, String>> {
    let mut sessions: Vec<HashMap<String, String>> = Vec::new();
    for line in text.lines() {
        let Some((key, value)) = line.trim().split_once(": ") else { continue };
        if key == "name" {
            sessions.push(HashMap::new());
        }
        if let Some(s) = sessions.last_mut() {
            s.insert(key.to_string(), value.trim().to_string());
        }
    }
    sessions
}

fn list(k: &Kamailio) -> Vec<HashMap<String, String>> {
    kamcmd_sessions(&k.rpc(&["siptrace.trace_list"]))
}

fn member<'a>(s: &'a HashMap<String, String>, key: &str) -> &'a str {
    s.get(key).map(String::as_str).unwrap_or_else(|| panic!("no {key} in {s:?}"))
}

/// Runs one JSON-RPC request through jsonrpcs's FIFO; the reply.
fn fifo_rpc(dir: &TestDir, fifo: &Path, method: &str, params: Value) -> Value {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let reply_name = format!("reply_{}", N.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let reply_path = dir.file(&reply_name);
    assert!(Command::new("mkfifo").arg(&reply_path).status().expect("mkfifo").success());
    let reader = {
        let path = reply_path.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            std::fs::File::open(&path).and_then(|mut f| f.read_to_string(&mut text)).map(|_| text)
        })
    };
    let request =
        json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1, "reply_name": reply_name});
    let mut f = std::fs::OpenOptions::new().write(true).open(fifo).expect("open the jsonrpcs FIFO");
    f.write_all(format!("{request}\n").as_bytes()).unwrap();
    drop(f);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !reader.is_finished() {
        assert!(Instant::now() < deadline, "no reply on {}", reply_path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = reader.join().unwrap().expect("read the reply FIFO");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("reply {text:?}: {e}"))
}

fn hep_params(collector: &HepJs) -> Vec<String> {
    vec![
        modparam("hep_mode_on", 1),
        modparam("hep_version", 3),
        modparam("trace_to_database", 0),
        modparam("duplicate_uri", collector.uri()),
    ]
}

/// The messages of a call traced in the dialog scope, as `sip_trace()`
/// with "d" traces them: all of [`CALL_FLOW`](common::calls::CALL_FLOW)
/// but the ACK the proxy forwards, which belongs to no transaction.
fn dialog_flow() -> Vec<(Role, Role, &'static str)> {
    common::calls::CALL_FLOW.iter().copied().filter(|hop| *hop != (Role::Proxy, Role::Uas, "ACK")).collect()
}

/// Roles by port, for the flows of calls through one proxy.
fn roles(uac: &[u16], proxy: u16, uas: u16) -> impl Fn(u16) -> Role + '_ {
    move |port| match port {
        p if p == proxy => Role::Proxy,
        p if p == uas => Role::Uas,
        p if uac.contains(&p) => Role::Uac,
        other => panic!("unexpected port {other}"),
    }
}

fn flows(recs: &[Rec], role: &impl Fn(u16) -> Role) -> Vec<(String, Role, Role, String)> {
    recs.iter().map(|r| (r.call_id.clone(), role(r.src_port), role(r.dst_port), r.kind.clone())).collect()
}

/// With `trace_on` 0 and no `sip_trace()` in the config: a session with
/// `from=alice` traces exactly alice's calls, whole (its default scope is
/// `d` with the dialog module), counts them, and ends by itself; calls
/// after its end are not traced.
#[test]
fn a_user_session_traces_exactly_her_calls_and_ends_by_itself() {
    let dir = TestDir::new("session_user");
    let collector = HepJs::start(&dir);
    let uas = SippUas::start(&dir, "127.0.0.1", free_port());
    let p = simple_proxy(&dir, &uas, true, &hep_params(&collector));
    let k = &p.kamailio;
    assert_eq!(k.rpc(&["siptrace.status", "check"]), "Disabled");
    assert!(list(k).is_empty());

    let seconds = 20;
    let started = Instant::now();
    let reply = k.rpc(&["siptrace.trace_start", "alice", "from=alice", &seconds.to_string()]);
    let s = &kamcmd_sessions(&reply)[0];
    assert_eq!(
        (member(s, "name"), member(s, "filter"), member(s, "uri"), member(s, "scope")),
        ("alice", "from=alice", "default", "d"),
        "{reply}"
    );
    assert_eq!(member(s, "seconds"), "20");
    assert_eq!(k.stat("sessions_active"), 1);

    // Mixed traffic: alice's calls, bob's calls, OPTIONS pings.
    let (alice, bob) = (call_scenario(&dir, "alice"), call_scenario(&dir, "bob"));
    let ping = request_scenario(&dir, "OPTIONS", "monitor", 200, "");
    let mut uac_ports = vec![run(&dir, "127.0.0.1", &p, &alice, 2)];
    uac_ports.push(run(&dir, "127.0.0.1", &p, &bob, 2));
    uac_ports.push(run(&dir, "127.0.0.1", &p, &ping, 3));
    uac_ports.push(run(&dir, "127.0.0.1", &p, &alice, 1));
    assert!(started.elapsed() < Duration::from_secs(seconds - 2), "the calls took longer than the session");

    let recs = wait_records(&collector, 3 * 12);
    let role = roles(&uac_ports, p.port, uas.port);
    assert_flows(flows(&recs, &role), &dialog_flow(), 3);
    // Every traced call is alice's: its INVITE came from her.
    assert!(recs.iter().all(|r| r.src_port != uac_ports[1] && r.dst_port != uac_ports[1]), "a call of bob's");
    assert!(recs.iter().all(|r| !r.kind.contains("OPTIONS")));

    let listed = list(k);
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (
            member(&listed[0], "calls_matched"),
            member(&listed[0], "records_sent"),
            member(&listed[0], "records_dropped")
        ),
        ("3", "36", "0"),
        "{listed:?}"
    );
    let left: u64 = member(&listed[0], "time_left").parse().unwrap();
    assert!(left > 0 && left <= seconds, "{left}");
    assert_eq!(k.stat("session_calls_matched"), 3);

    // The end: listed no more, and a call of alice's after it is not traced.
    let end = started + Duration::from_secs(seconds) + Duration::from_millis(500);
    std::thread::sleep(end.saturating_duration_since(Instant::now()));
    assert_eq!(k.stat("sessions_active"), 0);
    assert!(list(k).is_empty());
    assert!(k
        .log_text()
        .contains("trace session 'alice' ended after 20 s: 3 calls matched, 36 records sent, 0 dropped"));
    run(&dir, "127.0.0.1", &p, &alice, 1);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(collector.packets().len(), 3 * 12, "traced after the session's end");
    assert_eq!(k.stat("session_calls_matched"), 3);
}

/// A `src` CIDR session, a session for an IPv6 source, and a
/// `method=MESSAGE` session in the message scope, each to its own
/// collector, over kamcmd; a stateful local reply is traced in the `t`
/// scope.
#[test]
fn source_blocks_ipv6_sources_and_methods() {
    let dir = TestDir::new("session_src");
    let (lan, v6, msg) = (HepJs::start(&dir), HepJs::start(&dir), HepJs::start(&dir));
    let uas = SippUas::start(&dir, "127.0.0.1", free_port());
    let port = free_port();
    let listen = [format!("udp:127.0.0.1:{port}"), format!("udp:[::1]:{port}")];
    let mut params = hep_params(&lan);
    params.push(modparam("trace_on", 0));
    let p = proxy(&dir, "proxy", &listen, port, &format!("sip:127.0.0.1:{}", uas.port), false, &params);
    let k = &p.kamailio;
    k.rpc(&["siptrace.trace_start", "lan", "src=127.0.0.0/8", "60", &lan.uri(), "t"]);
    k.rpc(&["siptrace.trace_start", "v6", "src=::1", "60", &v6.uri()]);
    let reply = k.rpc(&["siptrace.trace_start", "msg", "method=MESSAGE", "60", &msg.uri(), "m"]);
    assert_eq!(member(&kamcmd_sessions(&reply)[0], "scope"), "m");
    // Without the dialog module, the default scope is t.
    assert_eq!(member(&list(k)[1], "scope"), "t");

    let call = call_scenario(&dir, "carol");
    let message = request_scenario(&dir, "MESSAGE", "dave", 202, "");
    run(&dir, "127.0.0.1", &p, &call, 1);
    run(&dir, "127.0.0.1", &p, &message, 2);
    run(&dir, "::1", &p, &message, 2);

    // lan: the IPv4 call's INVITE transaction (7: scope t), and the IPv4
    // MESSAGEs with their 202s.
    let got = wait_records(&lan, 7 + 4);
    assert_eq!(got.len(), 11, "{got:?}");
    let invite: BTreeSet<&str> =
        got.iter().filter(|r| r.kind.ends_with("INVITE")).map(|r| r.kind.as_str()).collect();
    assert_eq!(invite, BTreeSet::from(["INVITE", "100 INVITE", "180 INVITE", "200 INVITE"]));
    assert!(got.iter().all(|r| r.src_ip == "127.0.0.1" && r.dst_ip == "127.0.0.1"));
    assert_eq!(got.iter().filter(|r| r.kind == "202 MESSAGE").count(), 2);
    // v6: the IPv6 MESSAGEs and their 202s, with IPv6 ends.
    let got = wait_records(&v6, 4);
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(got.iter().all(|r| (r.src_ip.as_str(), r.dst_ip.as_str()) == ("::1", "::1")), "{got:?}");
    let kinds: BTreeSet<&str> = got.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, BTreeSet::from(["MESSAGE", "202 MESSAGE"]));
    // msg: every MESSAGE, and only the request (scope m).
    let got = wait_records(&msg, 4);
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(got.iter().all(|r| r.kind == "MESSAGE"));
    assert_eq!(got.iter().filter(|r| r.src_ip == "::1").count(), 2);

    let matched: Vec<(String, String)> = list(k)
        .iter()
        .map(|s| (member(s, "name").to_string(), member(s, "calls_matched").to_string()))
        .collect();
    let expected = [("lan", "3"), ("v6", "2"), ("msg", "4")].map(|(a, b)| (a.to_string(), b.to_string()));
    assert_eq!(matched, expected);
    assert_eq!(k.stat("session_calls_matched"), 9);
}

/// Two sessions overlap with different URIs: each collector gets its own
/// session's calls, and a call both match goes to both.
#[test]
fn overlapping_sessions_send_to_their_own_collectors() {
    let dir = TestDir::new("session_overlap");
    let (a, b) = (HepJs::start(&dir), HepJs::start(&dir));
    let uas = SippUas::start(&dir, "127.0.0.1", free_port());
    let p = simple_proxy(&dir, &uas, true, &hep_params(&a));
    let k = &p.kamailio;
    k.rpc(&["siptrace.trace_start", "alice", "from=alice", "60", &a.uri()]);
    k.rpc(&["siptrace.trace_start", "everyone", "src=127.0.0.1;method=INVITE", "60", &b.uri(), "d"]);
    let (alice, bob) = (call_scenario(&dir, "alice"), call_scenario(&dir, "bob"));
    let ports = [run(&dir, "127.0.0.1", &p, &alice, 2), run(&dir, "127.0.0.1", &p, &bob, 1)];

    let at_a = wait_records(&a, 2 * 12);
    let at_b = wait_records(&b, 3 * 12);
    let role = roles(&ports, p.port, uas.port);
    assert_flows(flows(&at_a, &role), &dialog_flow(), 2);
    assert_flows(flows(&at_b, &role), &dialog_flow(), 3);
    let (ids_a, ids_b) = (call_ids(&at_a), call_ids(&at_b));
    assert!(ids_a.is_subset(&ids_b), "alice's calls go to both");
    assert!(at_a.iter().all(|r| r.src_port != ports[1] && r.dst_port != ports[1]), "bob's call only to b");
    let sent: Vec<String> = list(k).iter().map(|s| member(s, "records_sent").to_string()).collect();
    assert_eq!(sent, ["24", "36"]);
}

/// A session's own URI takes what `duplicate_uri` takes, streams too:
/// alice's session sends HEP over TCP, bob's over TLS (the collector's
/// certificate verified against `tls_ca_file`), each to its own collector,
/// and nothing goes to the configured destination.
#[test]
fn sessions_send_over_tcp_and_tls_to_their_own_uris() {
    let dir = TestDir::new("session_streams");
    let certs = test_certificates(&dir);
    let configured = HepJs::start(&dir);
    let tcp = HepJs::start_with(&dir, &["tcp"]);
    let tls = HepJs::start_with(
        &dir,
        &["tls", certs.server_cert.to_str().unwrap(), certs.server_key.to_str().unwrap()],
    );
    let uas = SippUas::start(&dir, "127.0.0.1", free_port());
    let mut params = hep_params(&configured);
    params.push(modparam("tls_ca_file", certs.ca_cert.display()));
    let p = simple_proxy(&dir, &uas, false, &params);
    let k = &p.kamailio;
    k.rpc(&[
        "siptrace.trace_start",
        "alice",
        "from=alice",
        "60",
        &format!("{};transport=tcp", tcp.uri()),
        "t",
    ]);
    k.rpc(&["siptrace.trace_start", "bob", "from=bob", "60", &format!("sips:127.0.0.1:{}", tls.port), "t"]);
    let (alice, bob) = (call_scenario(&dir, "alice"), call_scenario(&dir, "bob"));
    run(&dir, "127.0.0.1", &p, &alice, 2);
    run(&dir, "127.0.0.1", &p, &bob, 1);

    // Scope t: each call's INVITE transaction, 7 records.
    let (at_tcp, at_tls) = (wait_records(&tcp, 2 * 7), wait_records(&tls, 7));
    assert_eq!((at_tcp.len(), at_tls.len()), (14, 7), "tcp {at_tcp:?}\ntls {at_tls:?}");
    assert_eq!(call_ids(&at_tcp).len(), 2);
    assert_eq!(call_ids(&at_tls).len(), 1);
    assert!(call_ids(&at_tcp).is_disjoint(&call_ids(&at_tls)), "alice's calls and bob's apart");
    for got in [&at_tcp, &at_tls] {
        let kinds: BTreeSet<&str> = got.iter().map(|r| r.kind.as_str()).collect();
        assert_eq!(kinds, BTreeSet::from(["INVITE", "100 INVITE", "180 INVITE", "200 INVITE"]));
    }
    assert!(configured.packets().is_empty(), "nothing to the configured destination");
    let sent: Vec<String> = list(k).iter().map(|s| member(s, "records_sent").to_string()).collect();
    assert_eq!(sent, ["14", "7"]);
    assert_eq!(k.stat("dropped"), 0);
}

/// Bad input is refused with an error that names what is wrong, over
/// kamcmd and jsonrpcs, and the running sessions stay as they were.
#[test]
fn bad_input_is_refused_and_running_sessions_stay() {
    let dir = TestDir::new("session_bad");
    let collector = HepJs::start(&dir);
    let uas = SippUas::start(&dir, "127.0.0.1", free_port());
    let mut params = hep_params(&collector);
    params.push(modparam("trace_sessions_max", 2));
    params.push(modparam("trace_session_max_seconds", 600));
    let p = simple_proxy(&dir, &uas, false, &params);
    let k = &p.kamailio;
    k.rpc(&["siptrace.trace_start", "one", "from=alice;method=INVITE|MESSAGE", "300"]);
    let before = list(k);
    assert_eq!(before.len(), 1);
    let same = |k: &Kamailio| {
        let now = list(k);
        assert_eq!(now.len(), before.len());
        for (a, b) in now.iter().zip(&before) {
            for key in ["name", "filter", "uri", "scope", "seconds", "calls_matched"] {
                assert_eq!(member(a, key), member(b, key));
            }
        }
    };
    for (args, error) in [
        (
            &["x", "frm=alice", "60"][..],
            "400 - bad filter: key 'frm': unknown key; the keys are from, to, ruri, src, method, callid",
        ),
        (&["x", "src=10.0.0.0/33", "60"], "bad filter: key 'src': '10.0.0.0/33' has a bad prefix length"),
        (&["x", "src=10.1.2.3/8", "60"], "the block is 10.0.0.0/8"),
        (&["x", "method=ACK", "60"], "bad filter: key 'method'"),
        (&["x", "from=a", "601"], "bad seconds: 601 is over 600, the most trace_session_max_seconds allows"),
        (&["x", "from=a"], "bad seconds: missing"),
        (&["x", "from=a", "ten"], "bad seconds: 'ten'"),
        (&["x", "from=a", "60", "!!garbage!!"], "bad uri: '!!garbage!!': expected a sip: URI"),
        (
            &["x", "from=a", "60", "sip:127.0.0.1:9;transport=ws"],
            "bad uri: 'sip:127.0.0.1:9;transport=ws': transport 'ws' is not supported",
        ),
        (&["x", "from=a", "60", "default", "q"], "bad scope: 'q'"),
        (&["bad name", "from=a", "60"], "bad name"),
        (&["one", "from=bob", "60"], "a session named 'one' is running"),
        (&["x", "from=a", "60", "default", "t", "extra"], "too many parameters"),
    ] {
        let mut argv = vec!["siptrace.trace_start"];
        argv.extend_from_slice(args);
        let e = k.try_rpc(&argv).expect_err("refused");
        assert!(e.contains(error), "{args:?}: {e}");
        same(k);
    }
    let e = k.try_rpc(&["siptrace.trace_stop", "nope"]).unwrap_err();
    assert!(e.contains("404 - no session named 'nope' is running"), "{e}");
    same(k);

    // More sessions than the maximum.
    k.rpc(&["siptrace.trace_start", "two", "to=bob", "60"]);
    let e = k.try_rpc(&["siptrace.trace_start", "three", "to=carol", "60"]).unwrap_err();
    assert!(e.contains("2 sessions are running, the most trace_sessions_max allows; stop one first"), "{e}");
    assert_eq!(list(k).iter().map(|s| member(s, "name").to_string()).collect::<Vec<_>>(), ["one", "two"]);
    let stopped = k.rpc(&["siptrace.trace_stop", "two"]);
    assert_eq!(member(&kamcmd_sessions(&stopped)[0], "filter"), "to=bob");
    same(k);

    // jsonrpcs: the same commands, a number or a string for the seconds.
    let r =
        fifo_rpc(&dir, &p.fifo, "siptrace.trace_start", json!(["j", "callid=abc@host", 120, "default", "t"]));
    assert_eq!(r["result"]["name"], "j", "{r}");
    assert_eq!(
        (r["result"]["seconds"].as_u64(), r["result"]["scope"].as_str()),
        (Some(120), Some("t")),
        "{r}"
    );
    let r = fifo_rpc(&dir, &p.fifo, "siptrace.trace_list", json!([]));
    let sessions = r["result"]["sessions"].as_array().unwrap_or_else(|| panic!("{r}"));
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[1]["filter"], "callid=abc@host");
    for key in ["time_left", "calls_matched", "records_sent", "records_dropped"] {
        assert!(sessions[1][key].is_number(), "{key}: {r}");
    }
    let r = fifo_rpc(&dir, &p.fifo, "siptrace.trace_start", json!(["k", "src=fe80::/129", "60"]));
    assert_eq!(r["error"]["code"], 400, "{r}");
    assert!(r["error"]["message"].as_str().unwrap().starts_with("bad filter: key 'src'"), "{r}");
    let r = fifo_rpc(&dir, &p.fifo, "siptrace.trace_stop", json!(["j"]));
    assert_eq!(r["result"]["name"], "j", "{r}");
    let r = fifo_rpc(&dir, &p.fifo, "siptrace.trace_list", json!([]));
    assert_eq!(r["result"]["sessions"].as_array().map(Vec::len), Some(1), "{r}");
    same(k);
}

/// `trace_skip_methods=OPTIONS` under `trace_mode=1`: no OPTIONS and no
/// reply to one reaches the collector, everything else does, and the
/// skips are counted; an explicit `sip_trace()` on an OPTIONS still
/// traces it. Every record carries `hep_node_name` in chunk 0x0013,
/// right after the capture id, as hep-js decodes it.
#[test]
fn skipped_methods_and_the_node_name() {
    let dir = TestDir::new("skip_methods");
    let collector = HepJs::start(&dir);
    let uas = SippUas::start(&dir, "127.0.0.1", free_port());
    let mut params = hep_params(&collector);
    params.extend([
        modparam("trace_on", 1),
        modparam("trace_mode", 1),
        modparam("trace_skip_methods", "OPTIONS|NOTIFY"),
        modparam("hep_node_name", "edge-1"),
        modparam("hep_capture_id", 7),
    ]);
    let p = simple_proxy(&dir, &uas, false, &params);
    let call = call_scenario(&dir, "alice");
    let ping = request_scenario(&dir, "OPTIONS", "monitor", 200, "");
    let traced_ping = request_scenario(&dir, "OPTIONS", "monitor", 200, "X-Trace: yes");
    let mut ports = vec![run(&dir, "127.0.0.1", &p, &call, 2)];
    ports.push(run(&dir, "127.0.0.1", &p, &ping, 3));
    run(&dir, "127.0.0.1", &p, &traced_ping, 1);

    let recs = wait_records(&collector, 2 * 13 + 1);
    assert_eq!(recs.len(), 27, "{recs:?}");
    let options: Vec<&Rec> = recs.iter().filter(|r| r.kind.contains("OPTIONS")).collect();
    assert_eq!(options.len(), 1, "only the explicitly traced OPTIONS: {options:?}");
    assert_eq!(options[0].kind, "OPTIONS");
    let calls: Vec<Rec> = recs.iter().filter(|r| !r.kind.contains("OPTIONS")).cloned().collect();
    let role = roles(&ports, p.port, uas.port);
    assert_flows(flows(&calls, &role), &common::calls::CALL_FLOW, 2);
    // Each of the four OPTIONS and its reply, at the core's events.
    assert_eq!(p.kamailio.stat("skipped_method"), 8);
    assert_eq!(p.kamailio.stat("skipped_sample"), 0);

    for r in &recs {
        assert_eq!(r.node.as_deref(), Some("edge-1"), "{r:?}");
        let at = r.chunks.iter().position(|c| *c == (0, 0x13)).expect("chunk 0x0013");
        assert_eq!(r.chunks[at - 1], (0, 0x0c), "after the capture id: {r:?}");
    }
}

/// `trace_skip_methods` keeps a session's filter from matching the methods
/// it names: a session that matches every request from 127.0.0.1 traces
/// the calls, and none of the OPTIONS pings, which it does not count.
#[test]
fn sessions_do_not_match_skipped_methods() {
    let dir = TestDir::new("session_skip");
    let collector = HepJs::start(&dir);
    let uas = SippUas::start(&dir, "127.0.0.1", free_port());
    let mut params = hep_params(&collector);
    params.push(modparam("trace_skip_methods", "OPTIONS"));
    let p = simple_proxy(&dir, &uas, false, &params);
    let k = &p.kamailio;
    k.rpc(&["siptrace.trace_start", "lan", "src=127.0.0.1", "60", "default", "t"]);
    let (call, ping) = (call_scenario(&dir, "alice"), request_scenario(&dir, "OPTIONS", "monitor", 200, ""));
    run(&dir, "127.0.0.1", &p, &ping, 3);
    run(&dir, "127.0.0.1", &p, &call, 2);
    run(&dir, "127.0.0.1", &p, &ping, 3);

    // Scope t: each call's INVITE transaction, 7 records; no OPTIONS.
    let got = wait_records(&collector, 2 * 7);
    assert_eq!(got.len(), 14, "{got:?}");
    assert!(got.iter().all(|r| !r.kind.contains("OPTIONS")), "{got:?}");
    assert_eq!(call_ids(&got).len(), 2);
    assert_eq!(member(&list(k)[0], "calls_matched"), "2");
    assert_eq!(k.stat("session_calls_matched"), 2);
    assert_eq!(k.stat("dropped"), 0);
}

/// `trace_sample=100` on two proxies in a chain fed the same 2000 calls:
/// both trace the same calls, the ones the documented hash picks, each
/// call whole, and about a tenth of them.
#[test]
fn sampling_picks_the_same_whole_calls_on_two_proxies() {
    let dir = TestDir::new("sample");
    let collector = HepJs::start(&dir);
    let uas = SippUas::start(&dir, "127.0.0.1", free_port());
    let (p1_port, p2_port) = (free_port(), free_port());
    let sample = |node: &str| {
        let mut params = hep_params(&collector);
        params.extend([
            modparam("trace_on", 1),
            modparam("trace_mode", 1),
            modparam("trace_sample", 100),
            modparam("hep_node_name", node),
        ]);
        params
    };
    let p2 = proxy(
        &dir,
        "p2",
        &[format!("udp:127.0.0.1:{p2_port}")],
        p2_port,
        &format!("sip:127.0.0.1:{}", uas.port),
        false,
        &sample("p2"),
    );
    let p1 = proxy(
        &dir,
        "p1",
        &[format!("udp:127.0.0.1:{p1_port}")],
        p1_port,
        &format!("sip:127.0.0.1:{p2_port}"),
        false,
        &sample("p1"),
    );
    let calls = 2000;
    let uac_port = free_port();
    let to = format!("127.0.0.1:{p1_port}");
    let scenario = ["-sn", "uac", "-r", "200", "-l", "100", "-d", "10", "-cid_str", "sample-%u@%s"];
    let r = sipp_uac(&dir, "127.0.0.1", &to, uac_port, &scenario, calls, "180s");
    assert!(r.ok, "sipp:\n{}", r.output);

    let expected: BTreeSet<String> = (1..=calls)
        .map(|n| format!("sample-{n}@127.0.0.1"))
        .filter(|id| fnv1a64(id.as_bytes()) % 1000 < 100)
        .collect();
    let share = expected.len() as f64 / f64::from(calls);
    assert!((0.07..=0.13).contains(&share), "{} of {calls}", expected.len());
    // p1 sees 14 messages of a call (p2's 100 Trying too), p2 13.
    let total = expected.len() * 27;
    wait_for(Duration::from_secs(60), || collector.packets().len() >= total);
    std::thread::sleep(Duration::from_secs(1));
    let recs = records(&collector);
    let by_node = |node: &str| -> Vec<Rec> {
        recs.iter().filter(|r| r.node.as_deref() == Some(node)).cloned().collect()
    };
    let (at_p1, at_p2) = (by_node("p1"), by_node("p2"));
    assert_eq!(at_p1.len() + at_p2.len(), recs.len(), "every record names its proxy");
    assert_eq!(call_ids(&at_p1), expected, "p1 traces the calls the hash picks");
    assert_eq!(call_ids(&at_p2), expected, "p2 traces the same calls");

    // Whole calls: every message of each, at each proxy.
    let party = |port: u16| match port {
        p if p == uac_port => "uac",
        p if p == p1_port => "p1",
        p if p == p2_port => "p2",
        p if p == uas.port => "uas",
        other => panic!("unexpected port {other}"),
    };
    let flow = |recs: &[Rec]| -> HashMap<String, BTreeSet<(&'static str, &'static str, String)>> {
        let mut by_call: HashMap<String, BTreeSet<_>> = HashMap::new();
        for r in recs {
            by_call.entry(r.call_id.clone()).or_default().insert((
                party(r.src_port),
                party(r.dst_port),
                r.kind.clone(),
            ));
        }
        by_call
    };
    let whole =
        |hops: &[(&'static str, &'static str, &str)]| -> BTreeSet<(&'static str, &'static str, String)> {
            hops.iter().map(|(a, b, k)| (*a, *b, k.to_string())).collect()
        };
    let p1_call = whole(&[
        ("uac", "p1", "INVITE"),
        ("p1", "uac", "100 INVITE"),
        ("p1", "p2", "INVITE"),
        ("p2", "p1", "100 INVITE"),
        ("p2", "p1", "180 INVITE"),
        ("p1", "uac", "180 INVITE"),
        ("p2", "p1", "200 INVITE"),
        ("p1", "uac", "200 INVITE"),
        ("uac", "p1", "ACK"),
        ("p1", "p2", "ACK"),
        ("uac", "p1", "BYE"),
        ("p1", "p2", "BYE"),
        ("p2", "p1", "200 BYE"),
        ("p1", "uac", "200 BYE"),
    ]);
    let p2_call = whole(&[
        ("p1", "p2", "INVITE"),
        ("p2", "p1", "100 INVITE"),
        ("p2", "uas", "INVITE"),
        ("uas", "p2", "180 INVITE"),
        ("p2", "p1", "180 INVITE"),
        ("uas", "p2", "200 INVITE"),
        ("p2", "p1", "200 INVITE"),
        ("p1", "p2", "ACK"),
        ("p2", "uas", "ACK"),
        ("p1", "p2", "BYE"),
        ("p2", "uas", "BYE"),
        ("uas", "p2", "200 BYE"),
        ("p2", "p1", "200 BYE"),
    ]);
    for (node, recs, call) in [("p1", &at_p1, &p1_call), ("p2", &at_p2, &p2_call)] {
        for (id, seen) in flow(recs) {
            assert_eq!(&seen, call, "{node}: call {id}");
        }
    }
    for k in [&p1.kamailio, &p2.kamailio] {
        assert!(k.stat("skipped_sample") > 0);
    }
}
