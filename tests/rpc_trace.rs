//! RPC command tracing (`trace_rpc`): commands run through kamcmd (ctl's
//! binrpc), through jsonrpcs over its FIFO and over HTTP (xhttp) each give
//! a request and a reply record, type 0x57, sharing a correlation id, as
//! hep-js decodes them; the commands still answer as before.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const RPC_TYPE: u64 = 0x57;

fn payload_json(p: &Value) -> Value {
    let text = p["decoded"]["payload"].as_str().unwrap_or_default();
    serde_json::from_str(text).unwrap_or(Value::Null)
}

fn rcinfo<'a>(p: &'a Value, key: &str) -> &'a Value {
    &p["decoded"]["rcinfo"][key]
}

/// One traced execution: its request and reply records.
#[derive(Debug)]
struct Traced {
    request: Value,
    reply: Value,
    /// The decoded request payload and reply payload.
    req: Value,
    rpl: Value,
}

/// The RPC records received, paired by correlation id, in arrival order.
fn executions(packets: &[Value]) -> Vec<Traced> {
    let mut by_id: HashMap<String, Vec<&Value>> = HashMap::new();
    let mut order = Vec::new();
    for p in packets.iter().filter(|p| rcinfo(p, "payloadType").as_u64() == Some(RPC_TYPE)) {
        let id = rcinfo(p, "correlation_id").as_str().unwrap_or_default().to_string();
        if !by_id.contains_key(&id) {
            order.push(id.clone());
        }
        by_id.entry(id).or_default().push(p);
    }
    order
        .into_iter()
        .map(|id| {
            let records = &by_id[&id];
            assert_eq!(records.len(), 2, "correlation id {id} has {} records: {records:?}", records.len());
            let (request, reply) = (records[0].clone(), records[1].clone());
            let (req, rpl) = (payload_json(&request), payload_json(&reply));
            assert!(req["command"].is_string(), "not a request first: {request}");
            assert!(rpl["reply"].is_string(), "not a reply second: {reply}");
            Traced { request, reply, req, rpl }
        })
        .collect()
}

fn find<'a>(all: &'a [Traced], command: &str, backend: &str) -> Vec<&'a Traced> {
    all.iter().filter(|t| t.req["command"] == command && t.req["backend"] == backend).collect()
}

fn params(t: &Traced) -> Value {
    t.req["parameters"]
        .as_str()
        .map(|p| serde_json::from_str(p).expect("parameters are a JSON array"))
        .unwrap_or(Value::Null)
}

fn reply(t: &Traced) -> &str {
    t.rpl["reply"].as_str().unwrap_or_default()
}

/// Runs one JSON-RPC request through jsonrpcs's FIFO and returns the reply.
fn fifo_rpc(dir: &TestDir, fifo: &Path, request: Value, reply_name: &str) -> Value {
    let reply_path = dir.file(reply_name);
    let status = Command::new("mkfifo").arg(&reply_path).status().expect("mkfifo");
    assert!(status.success());
    // The reader blocks until Kamailio opens the reply FIFO for writing.
    let reader = {
        let path = reply_path.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            std::fs::File::open(&path).and_then(|mut f| f.read_to_string(&mut text)).map(|_| text)
        })
    };
    let mut request = request;
    request["reply_name"] = json!(reply_name);
    let mut fifo = std::fs::OpenOptions::new().write(true).open(fifo).expect("open the jsonrpcs FIFO");
    fifo.write_all(format!("{request}\n").as_bytes()).unwrap();
    drop(fifo);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !reader.is_finished() {
        assert!(std::time::Instant::now() < deadline, "no reply on the FIFO {}", reply_path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = reader.join().unwrap().expect("read the reply FIFO");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("reply {text:?}: {e}"))
}

/// POSTs a JSON-RPC request to /RPC; the reply body and the local port.
fn http_rpc(port: u16, request: Value) -> (Value, u16) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to xhttp");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let body = request.to_string();
    write!(
        s,
        "POST /RPC HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).expect("read the HTTP reply");
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some((head, rest)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
                })
                .and_then(|v| v.parse::<usize>().ok());
            if len.is_some_and(|len| rest.len() >= len) {
                assert!(head.starts_with("HTTP/1.1 200"), "{head}");
                let local = s.local_addr().unwrap().port();
                return (serde_json::from_str(rest).unwrap_or_else(|e| panic!("body {rest:?}: {e}")), local);
            }
        }
    }
    panic!("incomplete HTTP reply: {}", String::from_utf8_lossy(&got));
}

struct Server {
    kamailio: Kamailio,
    fifo: std::path::PathBuf,
    http_port: u16,
}

fn start(dir: &TestDir, collector: &HepJs, filter: &str) -> Server {
    let (sip_port, http_port) = (free_port(), free_port());
    let fifo = dir.file("jsonrpc.fifo");
    let listen = format!("udp:127.0.0.1:{sip_port}\nlisten=tcp:127.0.0.1:{http_port}");
    let config = config_head(dir, "rpc", &listen)
        + &format!(
            r#"use_dns_cache=on
loadmodule "sl.so"
loadmodule "xhttp.so"
loadmodule "jsonrpcs.so"
loadmodule "{module}"
modparam("jsonrpcs", "transport", 3)
modparam("jsonrpcs", "fifo_name", "{fifo}")
modparam("jsonrpcs", "fifo_reply_dir", "{reply_dir}/")
{params}
request_route {{
    drop;
}}
event_route[xhttp:request] {{
    jsonrpc_dispatch();
    exit;
}}
"#,
            module = module_path().display(),
            fifo = fifo.display(),
            reply_dir = dir.path.display(),
            params = [
                modparam("hep_mode_on", 1),
                modparam("trace_to_database", 0),
                modparam("duplicate_uri", collector.uri()),
                modparam("trace_rpc", 1),
                modparam("trace_rpc_filter", filter),
            ]
            .concat(),
        );
    let kamailio = Kamailio::start(dir, "rpc", &config);
    Server { kamailio, fifo, http_port }
}

#[test]
fn commands_over_ctl_jsonrpcs_fifo_and_http() {
    let dir = TestDir::new("rpc_trace");
    let collector = HepJs::start(&dir);
    let server = start(&dir, &collector, "deny: core.version, cfg.*");
    let k = &server.kamailio;
    // Every registered command is either traced or left out by the filter.
    let log = k.log_text();
    let line = log.lines().find(|l| l.contains("RPC tracing:")).unwrap_or_else(|| panic!("{log}"));
    let numbers: Vec<usize> =
        line.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse().ok()).rev().take(2).collect();
    let methods = k.rpc(&["system.listMethods"]).lines().filter(|l| !l.trim().is_empty()).count();
    assert_eq!(numbers.iter().sum::<usize>(), methods, "{line}");
    assert!(!line.contains("not traced"), "{line}");

    // Through kamcmd (ctl, binrpc).
    assert!(k.rpc(&["core.uptime"]).contains("uptime"));
    // trace_on stays 0: RPC tracing does not depend on it.
    assert_eq!(k.rpc(&["siptrace.status", "check"]), "Disabled");
    let fault = k.try_rpc(&["siptrace.status", "bogus"]).unwrap_err();
    assert!(fault.contains("Bad parameter"), "{fault}");
    assert!(k.rpc(&["core.echo", "a b", "7"]).contains("a b"));
    // A missing parameter: dns.lookup gives up without a fault of its own,
    // and ctl answers with the one its scan prepared.
    let fault = k.try_rpc(&["dns.lookup"]).unwrap_err();
    assert!(fault.contains("error at parameter"), "{fault}");
    // Denied by the filter: answered, never traced.
    assert!(k.rpc(&["core.version"]).contains("kamailio"));

    // Through jsonrpcs's FIFO.
    let r = fifo_rpc(
        &dir,
        &server.fifo,
        json!({"jsonrpc": "2.0", "method": "core.echo", "params": ["x y", 5], "id": 1}),
        "echo1",
    );
    assert_eq!(r["result"], json!(["x y", "5"]), "{r}");
    let r = fifo_rpc(
        &dir,
        &server.fifo,
        json!({"jsonrpc": "2.0", "method": "siptrace.status", "params": ["bogus"], "id": 2}),
        "fault1",
    );
    assert_eq!(r["error"]["code"], 500, "{r}");
    let r = fifo_rpc(
        &dir,
        &server.fifo,
        json!({"jsonrpc": "2.0", "method": "core.version", "id": 3}),
        "version1",
    );
    assert!(r["result"].as_str().unwrap_or_default().contains("kamailio"), "{r}");

    // Through jsonrpcs over HTTP.
    let (r, http_client_port) = http_rpc(
        server.http_port,
        json!({"jsonrpc": "2.0", "method": "siptrace.status", "params": ["check"], "id": 4}),
    );
    assert_eq!(r["result"], "Disabled", "{r}");

    // 1 uptime + 3 status + 2 echo + 1 fifo status ... and the harness's
    // own core.uptime probes: wait for what the commands above give.
    let wanted = |all: &[Traced]| {
        !find(all, "siptrace.status", "jsonrpcs_http").is_empty()
            && !find(all, "siptrace.status", "jsonrpcs_fifo").is_empty()
            && !find(all, "core.echo", "jsonrpcs_fifo").is_empty()
    };
    wait_for(Duration::from_secs(20), || wanted(&executions(&collector.packets())));
    std::thread::sleep(Duration::from_millis(500));
    let packets = collector.packets();
    let all = executions(&packets);

    // Every record: type 0x57, HEPv3 with a correlation id.
    for t in &all {
        for p in [&t.request, &t.reply] {
            assert_eq!(rcinfo(p, "payloadType").as_u64(), Some(RPC_TYPE));
            assert!(p["chunks"].as_array().unwrap().iter().any(|c| c == &json!([0, 0x11])), "{p}");
        }
    }
    let ids: std::collections::HashSet<&str> =
        all.iter().map(|t| rcinfo(&t.request, "correlation_id").as_str().unwrap()).collect();
    assert_eq!(ids.len(), all.len(), "one correlation id per execution");

    // kamcmd core.uptime: no parameters, a reply with the uptime member.
    let uptime = find(&all, "core.uptime", "ctl");
    assert!(!uptime.is_empty(), "{all:#?}");
    let t = uptime.last().unwrap();
    assert!(t.req.get("parameters").is_none(), "{}", t.req);
    assert!(reply(t).starts_with("200 OK: ") && reply(t).contains("uptime="), "{}", reply(t));
    assert_eq!(rcinfo(&t.request, "srcIp"), "127.0.0.1");
    assert_eq!(rcinfo(&t.request, "srcPort").as_u64(), Some(0));

    let status = find(&all, "siptrace.status", "ctl");
    assert_eq!(status.len(), 2, "{status:#?}");
    assert_eq!(params(status[0]), json!(["check"]));
    assert_eq!(reply(status[0]), "200 OK: Disabled");
    assert_eq!(params(status[1]), json!(["bogus"]));
    assert_eq!(reply(status[1]), "500 Bad parameter (on, off or check)");

    let lookup = find(&all, "dns.lookup", "ctl");
    assert_eq!(lookup.len(), 1);
    assert_eq!(reply(lookup[0]), "400 error reading the parameters");

    let echo = find(&all, "core.echo", "ctl");
    assert_eq!(echo.len(), 1);
    assert_eq!(params(echo[0]), json!(["a b", "7"]));
    assert_eq!(reply(echo[0]), "200 OK: a b, 7");

    // jsonrpcs over the FIFO.
    let echo = find(&all, "core.echo", "jsonrpcs_fifo");
    assert_eq!(echo.len(), 1, "{all:#?}");
    assert_eq!(params(echo[0]), json!(["x y", "5"]));
    assert_eq!(reply(echo[0]), "200 OK: x y, 5");
    let status = find(&all, "siptrace.status", "jsonrpcs_fifo");
    assert_eq!(status.len(), 1);
    assert_eq!(reply(status[0]), "500 Bad parameter (on, off or check)");

    // jsonrpcs over HTTP: the client's and the server's ends.
    let status = find(&all, "siptrace.status", "jsonrpcs_http");
    assert_eq!(status.len(), 1, "{all:#?}");
    let t = status[0];
    assert_eq!(params(t), json!(["check"]));
    assert_eq!(reply(t), "200 OK: Disabled");
    assert_eq!(rcinfo(&t.request, "srcPort").as_u64(), Some(u64::from(http_client_port)));
    assert_eq!(rcinfo(&t.request, "dstPort").as_u64(), Some(u64::from(server.http_port)));
    assert_eq!(rcinfo(&t.reply, "srcPort").as_u64(), Some(u64::from(server.http_port)));
    assert_eq!(rcinfo(&t.reply, "dstPort").as_u64(), Some(u64::from(http_client_port)));

    // The filter: core.version ran three ways and left nothing.
    assert!(all.iter().all(|t| t.req["command"] != "core.version"), "{all:#?}");
}

#[test]
fn allow_list_traces_only_its_commands() {
    let dir = TestDir::new("rpc_trace_allow");
    let collector = HepJs::start(&dir);
    let server = start(&dir, &collector, "allow: siptrace.*");
    let k = &server.kamailio;
    assert!(k.rpc(&["core.uptime"]).contains("uptime"));
    // trace_on stays 0: RPC tracing does not depend on it.
    assert_eq!(k.rpc(&["siptrace.status", "check"]), "Disabled");
    wait_for(Duration::from_secs(20), || !executions(&collector.packets()).is_empty());
    std::thread::sleep(Duration::from_millis(500));
    let all = executions(&collector.packets());
    let commands: Vec<&str> = all.iter().map(|t| t.req["command"].as_str().unwrap()).collect();
    assert_eq!(commands, ["siptrace.status"]);
}
