//! `xheaders_write` and `xheaders_read` between two real Kamailio servers:
//! a proxy traces its calls as plain SIP copies carrying `X-Siptrace-*`
//! headers to a second server, which stores them with the ends, time and
//! direction the proxy saw, and without the headers.

mod common;

use common::calls::*;
use common::diff::c_module;
use common::*;
use std::path::Path;

/// A server that stores each SIP copy it receives, reading the headers;
/// in a directory of its own, for a database of its own.
fn storing_server(name: &str, port: u16) -> (Kamailio, std::path::PathBuf) {
    let dir = &TestDir::new(&format!("{name}-store"));
    let (db, db_url) = trace_db(dir);
    let config = config_head_children(dir, "store", &format!("udp:127.0.0.1:{port}"), 1)
        + &format!(
            "loadmodule \"db_sqlite.so\"\nloadmodule \"kex.so\"\nloadmodule \"{module}\"\n{params}\
             request_route {{\n    sip_trace();\n    drop;\n}}\n\
             onreply_route {{\n    sip_trace();\n    drop;\n}}\n",
            module = module_path().display(),
            params = [
                modparam("trace_on", 1),
                modparam("db_url", &db_url),
                modparam("trace_to_database", 1),
                modparam("xheaders_read", 1),
            ]
            .concat(),
        );
    (Kamailio::start(dir, "store", &config), db)
}

/// The proxy's modparams and hooks: rows of its own, and a SIP copy with
/// the headers of each message to the storing server.
fn proxy_params(db_url: &str) -> Vec<String> {
    vec![
        modparam("trace_on", 1),
        modparam("db_url", db_url),
        modparam("trace_to_database", 1),
        modparam("hep_mode_on", 0),
        modparam("xheaders_write", 1),
    ]
}

fn wait_rows(db: &Path, n: usize) -> Vec<TraceRow> {
    wait_for(std::time::Duration::from_secs(10), || trace_rows(db).len() >= n);
    std::thread::sleep(std::time::Duration::from_millis(300));
    trace_rows(db)
}

/// Every column but the id, the time included.
fn columns(r: &TraceRow) -> String {
    format!(
        "{} {} | {} | {} | {} {} | {} -> {} | {} {} | {}\n{}",
        r.time_stamp,
        r.time_us,
        r.callid,
        r.traced_user,
        r.method,
        r.status,
        r.fromip,
        r.toip,
        r.fromtag,
        r.totag,
        r.direction,
        String::from_utf8_lossy(&r.msg)
    )
}

#[test]
fn the_second_server_stores_what_the_proxy_saw() {
    let dir_name = "xheaders";
    let dir = TestDir::new(dir_name);
    let store_port = free_port();
    let (store, store_db) = storing_server(dir_name, store_port);
    let (proxy_db, proxy_url) = trace_db(&dir);
    let uri = format!("sip:127.0.0.1:{store_port}");
    let hook = format!("sip_trace(\"{uri}\");");
    let hooks = Hooks { on_request: &hook, on_reply: &hook, on_send: "" };
    let proxy = Proxy::start(&dir, "127.0.0.1", &proxy_params(&proxy_url), &hooks);
    let calls = 2;
    let ports = proxy.calls(&dir, calls);
    // Requests and replies the proxy received: INVITE, ACK, BYE; 180, 200, 200.
    let expected = 6 * calls as usize;
    let proxy_rows = wait_rows(&proxy_db, expected);
    let stored = wait_rows(&store_db, expected);
    assert_eq!(proxy_rows.len(), expected);
    let mut mine: Vec<String> = proxy_rows.iter().map(columns).collect();
    let mut theirs: Vec<String> = stored.iter().map(columns).collect();
    mine.sort();
    theirs.sort();
    assert_eq!(theirs, mine, "rows of the storing server differ from the proxy's own");
    for r in &stored {
        assert!(!String::from_utf8_lossy(&r.msg).contains("X-Siptrace"), "headers left in a stored message");
        let port = |ip: &str| ip.rsplit(':').next().unwrap().parse::<u16>().unwrap();
        assert_eq!(ports.role(port(&r.toip)), Role::Proxy, "{}", r.toip);
    }
    assert_eq!(store.stat("dropped"), 0);
}

/// The C module's headers, read by ours: the same rows as its own.
#[test]
fn headers_written_by_the_c_module_are_read() {
    let dir_name = "xheaders-c";
    let dir = TestDir::new(dir_name);
    let store_port = free_port();
    let (_store, store_db) = storing_server(dir_name, store_port);
    let (_, proxy_url) = trace_db(&dir);
    let uas = SippUas::start(&dir, "127.0.0.1", free_port());
    let port = free_port();
    let setup = ProxySetup {
        module: &c_module(),
        listen: &[format!("udp:127.0.0.1:{port}")],
        uas_uri: &format!("sip:127.0.0.1:{}", uas.port),
        children: 1,
    };
    let hook = format!("sip_trace(\"sip:127.0.0.1:{store_port}\");");
    let hooks = Hooks { on_request: &hook, on_reply: &hook, on_send: "" };
    // The C proxy's own rows would need the schema diff.rs relaxes; it
    // writes to a file nobody reads.
    let config = proxy_config_for(&dir, &setup, &proxy_params(&proxy_url).concat(), &hooks);
    let proxy = Kamailio::start(&dir, "proxy", &config);
    let run = sipp_calls(&dir, "127.0.0.1", &format!("127.0.0.1:{port}"), 2, 10);
    assert!(run.ok, "{}\n{}", run.output, proxy.log_text());
    let stored = wait_rows(&store_db, 12);
    assert_eq!(stored.len(), 12);
    let ports = Ports { uac: run.port, proxy: port, uas: uas.port };
    let role = |ip: &str| ports.role(ip.rsplit(':').next().unwrap().parse().unwrap());
    let mut seen: Vec<(Role, Role, &str)> =
        stored.iter().map(|r| (role(&r.fromip), role(&r.toip), r.direction.as_str())).collect();
    seen.sort();
    let mut expected = Vec::new();
    for _ in 0..2 {
        expected.extend([(Role::Uac, Role::Proxy, "in"); 3]);
        expected.extend([(Role::Uas, Role::Proxy, "in"); 3]);
    }
    expected.sort();
    assert_eq!(seen, expected);
    for r in &stored {
        assert!(!String::from_utf8_lossy(&r.msg).contains("X-Siptrace"));
    }
}

/// A copy without the headers is not stored, and counted.
#[test]
fn a_message_without_headers_is_counted_not_stored() {
    let dir_name = "xheaders-missing";
    let dir = TestDir::new(dir_name);
    let store_port = free_port();
    let (store, store_db) = storing_server(dir_name, store_port);
    let (_, proxy_url) = trace_db(&dir);
    let mut params = proxy_params(&proxy_url);
    params.retain(|p| !p.contains("xheaders_write"));
    let hook = format!("sip_trace(\"sip:127.0.0.1:{store_port}\");");
    let hooks = Hooks { on_request: &hook, ..Default::default() };
    let proxy = Proxy::start(&dir, "127.0.0.1", &params, &hooks);
    proxy.calls(&dir, 1);
    let dropped = wait_for(std::time::Duration::from_secs(5), || store.stat("dropped_unparsable") >= 3);
    assert!(dropped, "{}", store.log_text());
    assert_eq!(store.stat("dropped_unparsable"), 3);
    assert!(trace_rows(&store_db).is_empty());
    assert!(store.log_text().contains("lacks X-Siptrace headers"));
}
