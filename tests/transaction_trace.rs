//! Transaction tracing against a real Kamailio: `sip_trace_mode("t")`,
//! `sip_trace(uri, cid, "t")` and `trace_flag`, with the rows read back
//! from SQLite and the HEP decoded by sipcapture.

mod common;

use common::calls::*;
use common::*;

/// What transaction tracing of every request of a call shows: the whole
/// call but the forwarded end-to-end ACK, which has no transaction of its
/// own (as with the C module).
fn transaction_flow() -> Vec<(Role, Role, &'static str)> {
    CALL_FLOW.iter().copied().filter(|m| *m != (Role::Proxy, Role::Uas, "ACK")).collect()
}

fn row_flows(db: &std::path::Path, ports: &Ports) -> Vec<(String, Role, Role, String)> {
    let port = |ip: &str| ip.rsplit(':').next().unwrap().parse::<u16>().unwrap();
    trace_rows(db)
        .into_iter()
        .map(|r| {
            let kind = kind_of_text(&String::from_utf8_lossy(&r.msg));
            (r.callid.clone(), ports.role(port(&r.fromip)), ports.role(port(&r.toip)), kind)
        })
        .collect()
}

fn db_params(db_url: &str) -> Vec<String> {
    vec![modparam("trace_on", 1), modparam("db_url", db_url), modparam("hep_mode_on", 0)]
}

#[test]
fn sip_trace_mode_t_traces_each_transaction_once() {
    let dir = TestDir::new("t-mode");
    let (db, db_url) = trace_db(&dir);
    let hooks = Hooks { on_request: "sip_trace_mode(\"t\");", ..Default::default() };
    let proxy = Proxy::start(&dir, "127.0.0.1", &db_params(&db_url), &hooks);
    let calls = 3;
    let ports = proxy.calls(&dir, calls);
    let expected = transaction_flow().len() * calls as usize;
    proxy.wait_for_rows(expected);
    // Late retransmissions or doubles would show up as extra rows.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_flows(row_flows(&db, &ports), &transaction_flow(), calls as usize);
    assert_eq!(proxy.stat("dropped"), 0);
    for r in trace_rows(&db) {
        let text = String::from_utf8_lossy(&r.msg).to_string();
        let is_reply = text.starts_with("SIP/2.0 ");
        assert_eq!(r.status, if is_reply { text[8..11].to_string() } else { String::new() });
        assert_eq!(r.direction, if r.toip.ends_with(&format!(":{}", proxy.port)) { "in" } else { "out" });
    }
    // TM's lookups of CANCEL and ACK left no transaction unreleased.
    let log = proxy.kamailio.log_text();
    assert!(!log.contains("ERROR") && !log.contains("WARNING"), "proxy log:\n{log}");
}

#[test]
fn transaction_blocks_are_freed_with_their_transactions() {
    let dir = TestDir::new("t-mode-freed");
    let (_db, db_url) = trace_db(&dir);
    let mut params = db_params(&db_url);
    params.push(SHORT_WAIT.to_string());
    let hooks = Hooks { on_request: "sip_trace_mode(\"t\");", ..Default::default() };
    let proxy = Proxy::start(&dir, "127.0.0.1", &params, &hooks);
    proxy.calls(&dir, 5);
    proxy.wait_for_rows(transaction_flow().len() * 5);
    assert_blocks_freed(&proxy);
}

#[test]
fn trace_flag_makes_sip_trace_follow_the_transaction() {
    let dir = TestDir::new("t-flag");
    let (db, db_url) = trace_db(&dir);
    let mut params = db_params(&db_url);
    params.push(modparam("trace_flag", 22));
    // Only the INVITE carries the flag: its transaction is traced, the
    // other requests only as single messages.
    let on_request = "if (is_method(\"INVITE\")) { setflag(22); } sip_trace();";
    let hooks = Hooks { on_request, ..Default::default() };
    let proxy = Proxy::start(&dir, "127.0.0.1", &params, &hooks);
    let ports = proxy.calls(&dir, 2);
    let flow: Vec<_> = transaction_flow()
        .into_iter()
        .filter(|(from, to, kind)| !kind.ends_with("BYE") || (*from, *to) == (Role::Uac, Role::Proxy))
        .collect();
    proxy.wait_for_rows(flow.len() * 2);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_flows(row_flows(&db, &ports), &flow, 2);
}

#[test]
fn transaction_hep_carries_the_scripts_correlation_id_to_its_uri() {
    let dir = TestDir::new("t-hep");
    let collector = Sipcapture::start(&dir, "127.0.0.1");
    let params = [
        modparam("trace_on", 1),
        modparam("trace_to_database", 0),
        modparam("hep_mode_on", 1),
        modparam("hep_version", 3),
    ];
    let on_request = format!(
        "if (is_method(\"INVITE|BYE\")) {{ sip_trace(\"{}\", \"cid-$ci\", \"t\"); }}",
        collector.uri()
    );
    let hooks = Hooks { on_request: &on_request, ..Default::default() };
    let proxy = Proxy::start(&dir, "127.0.0.1", &params, &hooks);
    let ports = proxy.calls(&dir, 2);
    let flow: Vec<_> = transaction_flow().into_iter().filter(|(_, _, k)| *k != "ACK").collect();
    let packets = collector.wait_for_packets(flow.len() * 2);
    let seen =
        packets.iter().map(|p| (p.callid.clone(), ports.role(p.src_port), ports.role(p.dst_port), kind(p)));
    assert_flows(seen, &flow, 2);
    for p in &packets {
        assert_eq!(p.correlation_id, format!("cid-{}", p.callid), "{}", first_line(&p.msg));
    }
}

#[test]
fn trace_local_ip_names_the_local_end_of_script_traces() {
    let dir = TestDir::new("t-local-ip");
    let (db, db_url) = trace_db(&dir);
    let mut params = db_params(&db_url);
    params.push(modparam("trace_local_ip", "udp:192.0.2.10:5060"));
    let hooks = Hooks { on_request: "sip_trace_mode(\"t\");", ..Default::default() };
    let proxy = Proxy::start(&dir, "127.0.0.1", &params, &hooks);
    let ports = proxy.calls(&dir, 1);
    proxy.wait_for_rows(transaction_flow().len());
    let rows = trace_rows(&db);
    assert_eq!(rows.len(), transaction_flow().len());
    let peers = [ports.uac, ports.uas].map(|p| format!("udp:127.0.0.1:{p}"));
    for r in rows {
        let (local, peer) = if r.direction == "in" { (&r.toip, &r.fromip) } else { (&r.fromip, &r.toip) };
        assert_eq!(local, "udp:192.0.2.10:5060", "{} {}", r.method, r.direction);
        assert!(peers.contains(peer), "{peer}");
    }
}

/// TM keeps ended transactions for half a second (5 by default), so that
/// the tests see them, and the trace blocks they hold, go.
const SHORT_WAIT: &str = "modparam(\"tm\", \"wt_timer\", 500)\n";

/// Waits until no transaction or dialog holds a trace block: each block
/// was freed, and only once (a second free would make the count negative).
fn assert_blocks_freed(proxy: &Proxy) {
    let live = || -> i64 {
        let text = proxy.kamailio.rpc(&["stats.get_statistics", "siptrace:"]);
        let value = text.lines().find_map(|l| l.trim().strip_prefix("siptrace:traced_contexts = "));
        value.and_then(|v| v.trim().parse().ok()).unwrap_or_else(|| panic!("traced_contexts: {text}"))
    };
    let freed = wait_for(std::time::Duration::from_secs(10), || live() <= 0);
    assert!(freed && live() == 0, "{} trace blocks still held (or freed twice)", live());
}

/// Dialog tracing started on the initial INVITE traces the whole call: the
/// INVITE's transaction, then every request within the dialog, from the
/// ACK that confirms it to the BYE and its transaction. Both ways a config
/// creates the dialog are covered: after the script call (t_relay() with
/// the dialog flag on 5.6, dlg_manage() on 6.0), and dlg_manage() before it.
#[test]
fn sip_trace_mode_d_traces_the_whole_dialog() {
    let after =
        format!("if (!has_totag()) {{ sip_trace_mode(\"d\"); {CREATE_DIALOG} }} else {{ dlg_manage(); }}");
    let variants =
        [("after", after.as_str()), ("before", "dlg_manage(); if (!has_totag()) { sip_trace_mode(\"d\"); }")];
    for (name, on_request) in variants {
        let dir = TestDir::new(&format!("d-mode-{name}"));
        let (db, db_url) = trace_db(&dir);
        let mut params = db_params(&db_url);
        params.extend([DIALOG_MODULE.to_string(), SHORT_WAIT.to_string()]);
        let hooks = Hooks { on_request, ..Default::default() };
        let proxy = Proxy::start(&dir, "127.0.0.1", &params, &hooks);
        let calls = 3;
        let ports = proxy.calls(&dir, calls);
        let expected = transaction_flow().len() * calls as usize;
        proxy.wait_for_rows(expected);
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_flows(row_flows(&db, &ports), &transaction_flow(), calls as usize);
        assert_eq!(proxy.stat("dropped"), 0, "{name}");
        assert_blocks_freed(&proxy);
        let log = proxy.kamailio.log_text();
        assert!(!log.contains("ERROR") && !log.contains("WARNING"), "{name}: proxy log:\n{log}");
    }
}

/// Requests outside a traced dialog stay untraced: only the INVITE starts
/// dialog tracing, so a call whose INVITE did not ask for it shows nothing.
#[test]
fn dialog_tracing_follows_only_the_dialogs_that_asked() {
    let dir = TestDir::new("d-mode-some");
    let (db, db_url) = trace_db(&dir);
    let mut params = db_params(&db_url);
    params.push(DIALOG_MODULE.to_string());
    // sipp's Call-IDs start with the call's number, 1 to 6: trace 1 to 4.
    let on_request =
        "dlg_manage(); if (!has_totag() && $(ci{s.substr,0,1}) =~ \"^[0-4]\") { sip_trace_mode(\"d\"); }";
    let hooks = Hooks { on_request, ..Default::default() };
    let proxy = Proxy::start(&dir, "127.0.0.1", &params, &hooks);
    let calls = 6;
    let ports = proxy.calls(&dir, calls);
    std::thread::sleep(std::time::Duration::from_millis(800));
    let rows = row_flows(&db, &ports);
    let traced: std::collections::HashSet<_> = rows.iter().map(|r| r.0.clone()).collect();
    let mut firsts: Vec<u8> = traced.iter().map(|id| id.as_bytes()[0]).collect();
    firsts.sort();
    assert_eq!(firsts, b"1234", "traced calls: {traced:?}");
    assert_flows(rows, &transaction_flow(), 4);
}
