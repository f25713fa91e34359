//! End to end: a real Kamailio loads the built module and proxies sipp
//! calls; Kamailio's own sipcapture module decodes the HEP we send, and the
//! sip_trace rows are read back from SQLite.

mod common;

use common::calls::*;
use common::*;
use std::collections::HashMap;

#[test]
fn core_events_reach_sipcapture_and_sqlite_once_per_message() {
    let dir = TestDir::new("core-events");
    let collector = Sipcapture::start(&dir, "127.0.0.1");
    let (db, db_url) = trace_db(&dir);
    let params = [
        modparam("trace_on", 1),
        modparam("trace_mode", 3),
        modparam("trace_to_database", 0),
        modparam("hep_mode_on", 1),
        modparam("hep_version", 3),
        modparam("hep_capture_id", 4242),
        modparam("duplicate_uri", collector.uri()),
        modparam("db_url", &db_url),
    ];
    let proxy = Proxy::start(&dir, "127.0.0.1", &params, &Hooks::default());
    let calls = 5;
    let ports = proxy.calls(&dir, calls);

    // 1. Every message, in each direction, decoded by sipcapture.
    let expected = CALL_FLOW.len() * calls as usize;
    let packets = collector.wait_for_packets(expected);
    assert_eq!(packets.len(), expected, "HEP packets stored by sipcapture");
    assert_captured_flows(&packets, &ports, calls as usize);
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
    proxy.wait_for_rows(expected);
    let rows = trace_rows(&db);
    assert_eq!(rows.len(), expected, "sip_trace rows");
    let mut by_msg: HashMap<&[u8], Vec<&TraceRow>> = HashMap::new();
    for r in &rows {
        by_msg.entry(&r.msg).or_default().push(r);
    }
    for p in &packets {
        let matches = by_msg.get(p.msg.as_slice()).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(matches.len(), 1, "one row with the payload of {}", first_line(&p.msg));
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
            direction: if p.dst_port == proxy.port { "in".into() } else { "out".into() },
        };
        assert_eq!(matches[0], &expected_row, "row of {}", first_line(&p.msg));
    }

    // Nothing was dropped, and the statistics count what was traced.
    assert_eq!(proxy.stat("dropped"), 0);
    assert_eq!(proxy.stat("hep_sent"), expected as u64);
    assert_eq!(proxy.stat("db_rows"), expected as u64);
    let requests = CALL_FLOW.iter().filter(|(_, _, k)| !k.starts_with(char::is_numeric)).count();
    assert_eq!(proxy.stat("traced_requests"), (requests * calls as usize) as u64);
    assert_eq!(proxy.stat("traced_replies"), ((CALL_FLOW.len() - requests) * calls as usize) as u64);
}

#[test]
fn script_calls_trace_with_correlation_auth_key_and_capture_id() {
    let dir = TestDir::new("script-calls");
    let hepjs = HepJs::start(&dir);
    let (db, db_url) = trace_db(&dir);
    let params = [
        modparam("trace_on", 1),
        modparam("hep_mode_on", 1),
        modparam("hep_capture_id", 77),
        modparam("auth_key", "s3cret"),
        modparam("duplicate_uri", hepjs.uri()),
        modparam("db_url", &db_url),
    ];
    let on_request = format!(
        "if (is_method(\"INVITE\")) {{ sip_trace(\"{}\", \"custom-$ci\"); }} else {{ sip_trace(); }}",
        hepjs.uri()
    );
    // All three forms: with a URI and a correlation id, with a URI, and bare.
    let on_reply = format!("sip_trace(\"{}\");", hepjs.uri());
    let hooks = Hooks { on_request: &on_request, on_reply: &on_reply, on_send: "sip_trace();" };
    let proxy = Proxy::start(&dir, "127.0.0.1", &params, &hooks);
    let calls = 3;
    let ports = proxy.calls(&dir, calls);

    // Received requests and replies in the routes, sent requests in onsend_route.
    let flow = [
        (Role::Uac, Role::Proxy, "INVITE"),
        (Role::Uac, Role::Proxy, "ACK"),
        (Role::Uac, Role::Proxy, "BYE"),
        (Role::Uas, Role::Proxy, "180 INVITE"),
        (Role::Uas, Role::Proxy, "200 INVITE"),
        (Role::Uas, Role::Proxy, "200 BYE"),
        (Role::Proxy, Role::Uas, "INVITE"),
        (Role::Proxy, Role::Uas, "ACK"),
        (Role::Proxy, Role::Uas, "BYE"),
    ];
    let expected = flow.len() * calls as usize;
    let packets = hepjs.wait_for_packets(expected);
    assert_eq!(packets.len(), expected, "HEP packets decoded by hep-js");

    let mut seen = Vec::new();
    for p in &packets {
        let order: Vec<u64> =
            p["chunks"].as_array().unwrap().iter().map(|c| c[1].as_u64().unwrap()).collect();
        assert_eq!(order, [1, 2, 3, 4, 7, 8, 9, 10, 11, 12, 17, 14, 15], "chunk types in order");
        assert!(p["chunks"].as_array().unwrap().iter().all(|c| c[0] == 0), "vendor 0");
        assert_eq!(p["header_length"], p["length"]);
        let d = &p["decoded"];
        assert!(d.is_object(), "hep-js could not decode: {p}");
        let info = &d["rcinfo"];
        let payload = d["payload"].as_str().unwrap();
        let callid = header(payload, "Call-ID");
        let kind = kind_of_text(payload);
        assert_eq!(info["protocolFamily"], 2);
        assert_eq!(info["protocol"], 17);
        assert_eq!(info["payloadType"], 1, "SIP");
        assert_eq!(info["captureId"], 77);
        assert_eq!(info["capturePass"], "s3cret");
        assert_eq!((info["srcIp"].as_str(), info["dstIp"].as_str()), (Some("127.0.0.1"), Some("127.0.0.1")));
        let port = |key: &str| info[key].as_u64().unwrap() as u16;
        let (src, dst) = (ports.role(port("srcPort")), ports.role(port("dstPort")));
        let expected_cid = if kind == "INVITE" && src == Role::Uac {
            format!("custom-{callid}")
        } else {
            callid.to_string()
        };
        assert_eq!(info["correlation_id"], expected_cid.as_str(), "correlation of {kind}");
        let secs = info["timeSeconds"].as_u64().unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        assert!(now.abs_diff(secs) < 120, "timestamp {secs} is now");
        seen.push((callid.to_string(), src, dst, kind));
    }
    assert_flows(seen, &flow, calls as usize);

    // trace_to_database is on by default: the same messages as rows.
    proxy.wait_for_rows(expected);
    let rows = trace_rows(&db);
    assert_eq!(rows.len(), expected);
    let payloads: Vec<&str> = packets.iter().map(|p| p["decoded"]["payload"].as_str().unwrap()).collect();
    for row in &rows {
        let text = String::from_utf8_lossy(&row.msg);
        assert!(payloads.contains(&text.as_ref()), "row payload was sent as HEP too");
        let direction = if row.toip == format!("udp:127.0.0.1:{}", proxy.port) { "in" } else { "out" };
        assert_eq!(row.direction, direction);
        assert_eq!(row.callid, header(&text, "Call-ID"));
    }
    assert_eq!(proxy.stat("dropped"), 0);
}

#[test]
fn status_rpc_stops_and_resumes_tracing() {
    let dir = TestDir::new("status-rpc");
    let collector = Sipcapture::start(&dir, "127.0.0.1");
    let params = [
        modparam("trace_on", 1),
        modparam("trace_mode", 1),
        modparam("trace_to_database", 0),
        modparam("duplicate_uri", collector.uri()),
    ];
    let proxy = Proxy::start(&dir, "127.0.0.1", &params, &Hooks::default());
    let per_call = CALL_FLOW.len();
    let rpc = |arg: &str| proxy.kamailio.rpc(&["siptrace.status", arg]);

    assert_eq!(rpc("check"), "Enabled");
    proxy.calls(&dir, 2);
    assert_eq!(collector.wait_for_packets(2 * per_call).len(), 2 * per_call);

    assert_eq!(rpc("off"), "Disabled");
    assert_eq!(rpc("check"), "Disabled");
    proxy.calls(&dir, 3);
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(collector.count(), 2 * per_call, "nothing traced while off");

    assert_eq!(rpc("ON"), "Enabled");
    proxy.calls(&dir, 1);
    assert_eq!(collector.wait_for_packets(3 * per_call).len(), 3 * per_call, "tracing resumed");

    let bad = proxy.kamailio.try_rpc(&["siptrace.status", "maybe"]).unwrap_err();
    assert!(bad.contains("Bad parameter"), "{bad}");
    let missing = proxy.kamailio.try_rpc(&["siptrace.status"]).unwrap_err();
    assert!(missing.contains("Not enough parameters"), "{missing}");
}

#[test]
fn plain_sip_copies_with_trace_mode_4() {
    let dir = TestDir::new("duplicate");
    let listener = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    listener.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    let copy_port = listener.local_addr().unwrap().port();
    let params = [
        modparam("trace_on", 1),
        modparam("trace_mode", 4),
        modparam("trace_to_database", 0),
        modparam("duplicate_uri", format!("sip:127.0.0.1:{copy_port}")),
    ];
    let proxy = Proxy::start(&dir, "127.0.0.1", &params, &Hooks::default());
    let calls = 2;
    proxy.calls(&dir, calls);

    let mut kinds = Vec::new();
    let mut buf = vec![0u8; 70_000];
    while let Ok(n) = listener.recv(&mut buf) {
        let text = String::from_utf8(buf[..n].to_vec()).expect("a plain SIP message, not HEP");
        kinds.push(kind_of_text(&text));
        if kinds.len() == CALL_FLOW.len() * calls as usize {
            listener.set_read_timeout(Some(std::time::Duration::from_millis(500))).unwrap();
        }
    }
    kinds.sort();
    let mut expected: Vec<String> =
        (0..calls).flat_map(|_| CALL_FLOW.iter().map(|(_, _, k)| k.to_string())).collect();
    expected.sort();
    assert_eq!(kinds, expected);
    assert_eq!(proxy.stat("duplicates_sent"), expected.len() as u64);
}

#[test]
fn ipv6_messages_are_traced_with_ipv6_chunks() {
    let dir = TestDir::new("ipv6");
    let collector = Sipcapture::start(&dir, "::1");
    let (db, db_url) = trace_db(&dir);
    let params = [
        modparam("trace_on", 1),
        modparam("trace_mode", 3),
        modparam("trace_to_database", 0),
        modparam("duplicate_uri", collector.uri()),
        modparam("db_url", &db_url),
    ];
    let proxy = Proxy::start(&dir, "::1", &params, &Hooks::default());
    let calls = 2;
    let ports = proxy.calls(&dir, calls);

    let expected = CALL_FLOW.len() * calls as usize;
    let packets = collector.wait_for_packets(expected);
    assert_eq!(packets.len(), expected);
    assert_captured_flows(&packets, &ports, calls as usize);
    for p in &packets {
        assert_eq!((p.src_ip.as_str(), p.dst_ip.as_str(), p.family), ("::1", "::1", 10));
    }
    proxy.wait_for_rows(expected);
    let rows = trace_rows(&db);
    assert_eq!(rows.len(), expected);
    let proxy_end = format!("udp:[::1]:{}", proxy.port);
    for r in &rows {
        assert!(r.fromip == proxy_end || r.toip == proxy_end, "{} -> {}", r.fromip, r.toip);
        assert!(r.fromip.starts_with("udp:[::1]:") && r.toip.starts_with("udp:[::1]:"));
    }
}

#[test]
fn rows_go_to_postgresql_through_db_postgres() {
    rows_go_to_postgresql(0, "postgres-dbapi");
}

#[test]
fn rows_go_to_postgresql_through_the_native_writer() {
    rows_go_to_postgresql(1, "postgres");
}

fn rows_go_to_postgresql(db_native: i32, name: &str) {
    let dir = TestDir::new(name);
    let pg = Postgres::start(&dir);
    let db_url = pg.trace_database("kamailio");
    let params = [
        modparam("trace_on", 1),
        modparam("trace_mode", 2),
        modparam("trace_to_database", 0),
        modparam("db_url", &db_url),
        modparam("db_native", db_native),
    ];
    let proxy = Proxy::start(&dir, "127.0.0.1", &params, &Hooks::default());
    let calls = 2;
    let ports = proxy.calls(&dir, calls);

    proxy.wait_for_rows(CALL_FLOW.len() * calls as usize);
    let text = pg.psql(
        "kamailio",
        "SELECT callid, method, status, fromip, toip, fromtag, totag, direction, traced_user, \
         time_us, extract(epoch from time_stamp)::bigint, encode(convert_to(msg, 'UTF8'), 'hex') \
         FROM sip_trace ORDER BY id",
    );
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('|').collect()).collect();
    assert_eq!(rows.len(), CALL_FLOW.len() * calls as usize);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let mut seen = Vec::new();
    for r in &rows {
        let [callid, method, status, fromip, toip, fromtag, totag, direction, traced_user, time_us, secs, msg_hex] =
            r[..]
        else {
            panic!("row {r:?}")
        };
        let msg = String::from_utf8(hex_decode(msg_hex)).unwrap();
        assert_eq!(callid, header(&msg, "Call-ID"));
        assert!(header(&msg, "From").ends_with(&format!("tag={fromtag}")));
        assert_eq!(totag.is_empty(), !header(&msg, "To").contains("tag="));
        let kind = kind_of_text(&msg);
        match kind.split_once(' ') {
            Some((code, cseq_method)) => assert_eq!((status, method), (code, cseq_method)),
            None => assert_eq!((status, method), ("", kind.as_str())),
        }
        assert_eq!(traced_user, "");
        assert!(time_us.parse::<u32>().unwrap() < 1_000_000);
        assert!(now.abs_diff(secs.parse().unwrap()) < 120, "time_stamp is now, in UTC");
        let port = |ip: &str| ip.strip_prefix("udp:127.0.0.1:").unwrap().parse::<u16>().unwrap();
        let (src, dst) = (ports.role(port(fromip)), ports.role(port(toip)));
        assert_eq!(direction, if dst == Role::Proxy { "in" } else { "out" });
        seen.push((callid.to_string(), src, dst, kind));
    }
    assert_flows(seen, &CALL_FLOW, calls as usize);
    assert_eq!(proxy.stat("dropped"), 0);
}

#[test]
fn sip_trace_without_any_destination_counts_the_drop_and_keeps_the_row() {
    // hep_mode_on without duplicate_uri: the C module dereferences a null
    // pointer here. The row still goes to the database; the HEP is counted.
    let dir = TestDir::new("no-destination");
    let (db, db_url) = trace_db(&dir);
    let params = [modparam("trace_on", 1), modparam("hep_mode_on", 1), modparam("db_url", &db_url)];
    let hooks = Hooks { on_request: "sip_trace();", ..Default::default() };
    let proxy = Proxy::start(&dir, "127.0.0.1", &params, &hooks);
    let calls = 2;
    proxy.calls(&dir, calls);
    // INVITE, ACK and BYE reach request_route once per call.
    let traced = 3 * calls as u64;
    proxy.wait_for_rows(traced as usize);
    assert_eq!(count_trace_rows(&db) as u64, traced);
    assert_eq!(proxy.stat("dropped_no_destination"), traced);
    assert_eq!(proxy.stat("hep_sent"), 0);
    assert!(proxy.kamailio.log_text().contains("no URI argument and no duplicate_uri"));
}

#[test]
fn custom_table_and_column_names() {
    let dir = TestDir::new("custom-names");
    let db = dir.file("custom.db");
    // The project's schema with the table and two columns renamed.
    let schema = project_file("sql/sqlite.sql")
        .replace("sip_trace", "calls_trace")
        .replace("callid VARCHAR", "call_ref VARCHAR")
        .replace("(callid)", "(call_ref)")
        .replace("direction VARCHAR", "dir VARCHAR");
    sqlite_with_schema(&db, &schema);
    let params = [
        modparam("trace_on", 1),
        modparam("trace_mode", 2),
        modparam("trace_to_database", 0),
        modparam("db_url", format!("sqlite:///{}", db.display())),
        modparam("table", "calls_trace"),
        modparam("callid_column", "call_ref"),
        modparam("direction_column", "dir"),
    ];
    let proxy = Proxy::start(&dir, "127.0.0.1", &params, &Hooks::default());
    proxy.calls(&dir, 1);
    proxy.wait_for_rows(CALL_FLOW.len());
    let conn = rusqlite::Connection::open(&db).unwrap();
    let mut stmt = conn.prepare("SELECT call_ref, dir, method FROM calls_trace").unwrap();
    let rows: Vec<(String, String, String)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect();
    assert_eq!(rows.len(), CALL_FLOW.len());
    assert!(rows.iter().all(|(callid, dir, method)| !callid.is_empty()
        && (dir == "in" || dir == "out")
        && ["INVITE", "ACK", "BYE"].contains(&method.as_str())));
    assert_eq!(proxy.stat("dropped"), 0);
}

#[test]
fn oversize_message_is_counted_and_logged_once() {
    let dir = TestDir::new("oversize");
    let collector = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let params = [
        modparam("trace_on", 1),
        modparam("trace_mode", 1),
        modparam("trace_to_database", 0),
        modparam("duplicate_uri", format!("sip:127.0.0.1:{}", collector.local_addr().unwrap().port())),
        RECEIVE_LIMIT.to_string(),
    ];
    let proxy = Proxy::start(&dir, "127.0.0.1", &params, &Hooks::default());
    // A MESSAGE close to the largest UDP datagram: the HEP packet that would
    // carry it exceeds the 65535 bytes a HEP length field can count.
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = client.local_addr().unwrap().port();
    for n in 0..3 {
        let head = format!(
            "MESSAGE sip:uas@127.0.0.1:{} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-big{n}\r\n\
             From: <sip:big@127.0.0.1>;tag=big{n}\r\nTo: <sip:uas@127.0.0.1>\r\nCall-ID: big-{n}\r\n\
             CSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\nContent-Type: text/plain\r\n",
            proxy.port
        );
        let body_len = 65_480 - head.len();
        let msg = format!("{head}Content-Length: {body_len}\r\n\r\n{}", "x".repeat(body_len - 24));
        client.send_to(msg.as_bytes(), ("127.0.0.1", proxy.port)).unwrap();
    }
    assert!(wait_for(std::time::Duration::from_secs(10), || proxy.stat("dropped_oversize") >= 3));
    let log = proxy.kamailio.log_text();
    assert_eq!(log.matches("trace dropped (oversize)").count(), 1, "one line per interval:\n{log}");
    assert_eq!(proxy.kamailio.rpc(&["siptrace.status", "check"]), "Enabled", "the proxy is alive");
}

#[test]
fn an_sqlite_reader_delays_rows_but_costs_none() {
    sqlite_reader(1, "sqlite-reader");
}

#[test]
fn an_sqlite_reader_delays_rows_but_costs_none_through_the_db_api() {
    sqlite_reader(0, "sqlite-reader-dbapi");
}

fn sqlite_reader(db_native: i32, name: &str) {
    let dir = TestDir::new(name);
    let (db, db_url) = trace_db(&dir);
    let params = [
        modparam("trace_on", 1),
        modparam("trace_mode", 2),
        modparam("trace_to_database", 0),
        modparam("db_url", &db_url),
        modparam("db_native", db_native),
    ];
    let proxy = Proxy::start(&dir, "127.0.0.1", &params, &Hooks::default());

    // An open read transaction keeps a shared lock on the file until it ends.
    let reader = rusqlite::Connection::open(&db).unwrap();
    reader.execute_batch("BEGIN; SELECT COUNT(*) FROM sip_trace;").unwrap();
    std::thread::scope(|s| {
        let calls = s.spawn(|| proxy.calls(&dir, 1));
        std::thread::sleep(std::time::Duration::from_millis(300));
        reader.execute_batch("COMMIT").unwrap();
        calls.join().unwrap();
    });
    proxy.wait_for_rows(CALL_FLOW.len());
    assert_eq!(proxy.stat("dropped"), 0);
    assert_eq!(count_trace_rows(&db), CALL_FLOW.len());
}

/// A file the operator put in WAL mode: a reader that keeps a read
/// transaction open far longer than the writer's busy timeout does not
/// hold the rows back at all (in the default rollback-journal mode, it
/// would make each batch wait, then fail).
#[test]
fn in_wal_mode_a_long_reader_holds_no_row_back() {
    let dir = TestDir::new("sqlite-wal-reader");
    let (db, db_url) = trace_db(&dir);
    let mode: String = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let params = [
        modparam("trace_on", 1),
        modparam("trace_mode", 2),
        modparam("trace_to_database", 0),
        modparam("db_url", &db_url),
    ];
    let proxy = Proxy::start(&dir, "127.0.0.1", &params, &Hooks::default());
    assert!(proxy.kamailio.log_text().contains("through the module's own SQLite writer (db_native=1)"));
    let reader = rusqlite::Connection::open(&db).unwrap();
    reader.execute_batch("BEGIN; SELECT COUNT(*) FROM sip_trace;").unwrap();
    proxy.calls(&dir, 2);
    // Written while the reader still holds its snapshot, which sees none of them.
    assert!(wait_for(std::time::Duration::from_secs(10), || count_trace_rows(&db) == 2 * CALL_FLOW.len()));
    let seen: i64 = reader.query_row("SELECT COUNT(*) FROM sip_trace", [], |r| r.get(0)).unwrap();
    assert_eq!(seen, 0);
    reader.execute_batch("COMMIT").unwrap();
    assert_eq!(proxy.stat("dropped"), 0);
    let mode: String =
        rusqlite::Connection::open(&db).unwrap().query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal", "the writer leaves the file's journal mode as it is");
}

#[test]
fn held_rows_are_written_when_kamailio_stops() {
    let dir = TestDir::new("drain-on-stop");
    let (db, db_url) = trace_db(&dir);
    // Rows wait up to 10 s for their transaction: far longer than this test.
    let params = [
        modparam("trace_on", 1),
        modparam("trace_mode", 2),
        modparam("trace_to_database", 0),
        modparam("db_url", &db_url),
        modparam("db_flush_interval", 10_000),
    ];
    let mut proxy = Proxy::start(&dir, "127.0.0.1", &params, &Hooks::default());
    proxy.calls(&dir, 2);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(count_trace_rows(&db), 0, "the rows are still held");
    proxy.kamailio.stop();
    assert_eq!(count_trace_rows(&db), 2 * CALL_FLOW.len(), "stopping wrote them");
    assert!(proxy.kamailio.log_text().contains("sender 0 stopped"));
}

#[test]
fn hep_versions_1_and_2_reach_sipcapture() {
    for version in [1, 2] {
        let dir = TestDir::new(&format!("hep-v{version}"));
        let collector = Sipcapture::start(&dir, "127.0.0.1");
        let params = [
            modparam("trace_on", 1),
            modparam("trace_mode", 1),
            modparam("trace_to_database", 0),
            modparam("hep_mode_on", 1),
            modparam("hep_version", version),
            modparam("hep_capture_id", 77),
            modparam("duplicate_uri", collector.uri()),
        ];
        let proxy = Proxy::start(&dir, "127.0.0.1", &params, &Hooks::default());
        let ports = proxy.calls(&dir, 2);
        let packets = collector.wait_for_packets(CALL_FLOW.len() * 2);
        assert_captured_flows(&packets, &ports, 2);
        for p in &packets {
            assert_eq!((p.src_ip.as_str(), p.dst_ip.as_str()), ("127.0.0.1", "127.0.0.1"));
            assert_eq!(p.proto, 1, "UDP");
            let text = String::from_utf8_lossy(&p.msg);
            assert!(
                text.contains(&format!("Call-ID: {}\r\n", p.callid)),
                "payload of {}",
                first_line(&p.msg)
            );
            if version == 2 {
                assert_eq!(p.node, "homer01:77", "capture id of v2");
            }
        }
    }
}

#[test]
fn hlog_sends_log_records_correlated_with_the_call() {
    let dir = TestDir::new("hlog");
    let hepjs = HepJs::start(&dir);
    // trace_on and hep_mode_on stay off: hlog() does not depend on them.
    let params = [modparam("trace_to_database", 0), modparam("duplicate_uri", hepjs.uri())];
    let on_request =
        "if (is_method(\"INVITE\")) { hlog(\"routing $rm from $fu\"); hlog(\"cid-$ci\", \"second\"); }";
    let hooks = Hooks { on_request, ..Default::default() };
    let proxy = Proxy::start(&dir, "127.0.0.1", &params, &hooks);
    proxy.calls(&dir, 2);
    let packets = hepjs.wait_for_packets(4);
    assert_eq!(packets.len(), 4, "two log records per call");
    let mut texts = Vec::new();
    for p in &packets {
        let order: Vec<u64> =
            p["chunks"].as_array().unwrap().iter().map(|c| c[1].as_u64().unwrap()).collect();
        assert_eq!(order, [1, 2, 3, 4, 7, 8, 9, 10, 11, 12, 17, 15], "chunk types in order");
        let info = &p["decoded"]["rcinfo"];
        assert_eq!(info["payloadType"], 100, "log");
        assert_eq!(info["dstPort"].as_u64(), Some(u64::from(hepjs.port)), "to the collector");
        assert_eq!(info["srcPort"].as_u64(), Some(u64::from(proxy.port)), "from the proxy's socket");
        let text = p["decoded"]["payload"].as_str().unwrap().to_string();
        let cid = info["correlation_id"].as_str().unwrap().to_string();
        texts.push((text, cid));
    }
    let callids: std::collections::BTreeSet<String> = texts
        .iter()
        .filter(|(t, _)| t.starts_with("routing"))
        .map(|(t, cid)| {
            assert!(t.starts_with("routing INVITE from sip:"), "{t}");
            cid.clone()
        })
        .collect();
    assert_eq!(callids.len(), 2, "one Call-ID per call: {texts:?}");
    for cid in &callids {
        assert!(texts.contains(&("second".to_string(), format!("cid-{cid}"))), "{texts:?}");
    }
    assert_eq!(proxy.stat("traced_requests"), 0, "log lines are not SIP requests");
}

#[test]
fn traced_user_avp_gives_a_row_per_user_even_with_tracing_off() {
    for trace_on in [0, 1] {
        let dir = TestDir::new(&format!("traced-user-{trace_on}"));
        let (db, db_url) = trace_db(&dir);
        let params = [
            modparam("trace_on", trace_on),
            modparam("db_url", &db_url),
            modparam("traced_user_avp", "$avp(tu)"),
        ];
        // Two users on the INVITE, an integer one on the BYE, none on the ACK.
        let on_request = "if (is_method(\"INVITE\")) { $avp(tu) = \"alice\"; $avp(tu) = \"bob\"; } \
                          if (is_method(\"BYE\")) { $avp(tu) = 42; } sip_trace();";
        let hooks = Hooks { on_request, ..Default::default() };
        let proxy = Proxy::start(&dir, "127.0.0.1", &params, &hooks);
        proxy.calls(&dir, 1);
        let mut expected = vec![("ACK", ""), ("BYE", "42"), ("INVITE", "alice"), ("INVITE", "bob")];
        if trace_on == 1 {
            expected.extend([("BYE", ""), ("INVITE", "")]);
        } else {
            expected.retain(|(_, user)| !user.is_empty());
        }
        expected.sort();
        proxy.wait_for_rows(expected.len());
        std::thread::sleep(std::time::Duration::from_millis(300));
        let mut rows: Vec<(String, String)> =
            trace_rows(&db).into_iter().map(|r| (r.method, r.traced_user)).collect();
        rows.sort();
        let expected: Vec<(String, String)> =
            expected.iter().map(|(m, u)| (m.to_string(), u.to_string())).collect();
        assert_eq!(rows, expected, "trace_on={trace_on}");
    }
}

/// `trace_table_avp`: the script picks the table of each message's row; a
/// value that is not a plain table name stores nothing, and is counted.
#[test]
fn trace_table_avp_picks_the_table_of_each_row() {
    let dir = TestDir::new("table-avp");
    let (db, db_url) = trace_db(&dir);
    let other = project_file("sql/sqlite.sql").replace("sip_trace", "sip_trace_invites");
    sqlite_with_schema(&db, &other);
    let params =
        [modparam("trace_on", 1), modparam("db_url", &db_url), modparam("trace_table_avp", "$avp(table)")];
    let on_request = "if (is_method(\"INVITE\")) { $avp(table) = \"sip_trace_invites\"; } \
                      if (is_method(\"BYE\")) { $avp(table) = \"sip_trace; DROP TABLE sip_trace\"; } \
                      sip_trace();";
    let hooks = Hooks { on_request, ..Default::default() };
    let proxy = Proxy::start(&dir, "127.0.0.1", &params, &hooks);
    proxy.calls(&dir, 2);
    proxy.wait_for_rows(4);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let conn = rusqlite::Connection::open(&db).unwrap();
    let methods = |table: &str| -> Vec<String> {
        let mut stmt = conn.prepare(&format!("SELECT method FROM {table} ORDER BY id")).unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    assert_eq!(methods("sip_trace_invites"), ["INVITE", "INVITE"]);
    assert_eq!(methods("sip_trace"), ["ACK", "ACK"]);
    assert_eq!(proxy.stat("dropped_no_destination"), 2);
    assert!(proxy.kamailio.log_text().contains("not a plain table name"));
}

/// `event_route[siptrace:msg]`: it runs for each message `trace_mode`
/// traces, `$siptrace(...)` gives its ends and direction, and `drop` keeps
/// it out of the traces.
#[test]
fn the_siptrace_msg_event_route_sees_and_filters_each_message() {
    let dir = TestDir::new("event-route");
    let (db, db_url) = trace_db(&dir);
    let params = [
        "loadmodule \"xlog.so\"\n".to_string(),
        modparam("trace_on", 1),
        modparam("db_url", &db_url),
        modparam("trace_mode", 2),
        modparam("trace_to_database", 0),
    ];
    // Every name; the protocol's integer value in an integer comparison.
    let route = "$var(udp) = 0;\n    if (1 == $siptrace(src_proto) && 1 == $siptrace(dst_proto)) { $var(udp) = 1; }\n    \
                 xlog(\"L_NOTICE\", \"ST [$siptrace(direction)] [$siptrace(src_addr)] [$siptrace(dst_addr)] \
                 [$siptrace(src_host)] [$siptrace(src_port)] [$siptrace(src_proto)] [$siptrace(src_hostip)] \
                 [$siptrace(dst_host)] [$siptrace(dst_port)] [$siptrace(dst_proto)] [$siptrace(dst_hostip)] \
                 [$var(udp)] [$rm]\\n\");\n    \
                 if ($siptrace(direction) == \"out\") { drop; }";
    let on_send = format!("return;\n}}\nevent_route[siptrace:msg] {{\n    {route}");
    let hooks = Hooks { on_send: &on_send, ..Default::default() };
    let proxy = Proxy::start(&dir, "127.0.0.1", &params, &hooks);
    let ports = proxy.calls(&dir, 1);
    // Only what the proxy received: INVITE, ACK, BYE and 180, 200, 200.
    proxy.wait_for_rows(6);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let rows = trace_rows(&db);
    assert_eq!(rows.len(), 6);
    assert!(rows.iter().all(|r| r.direction == "in"));
    let log = proxy.kamailio.log_text();
    let lines: Vec<&str> = log.lines().filter_map(|l| l.split_once("ST ").map(|(_, t)| t)).collect();
    assert_eq!(lines.len(), 13, "the route ran for every message:\n{log}");
    let invite_in = format!(
        "[in] [udp:127.0.0.1:{uac}] [udp:127.0.0.1:{proxy}] [127.0.0.1] [{uac}] [udp] [127.0.0.1] \
         [127.0.0.1] [{proxy}] [udp] [127.0.0.1] [1] [INVITE]",
        uac = ports.uac,
        proxy = ports.proxy
    );
    assert!(lines.contains(&invite_in.as_str()), "{lines:#?}");
    // The INVITE the proxy relays: from its socket to the UAS.
    let invite_out = format!(
        "[out] [udp:127.0.0.1:{proxy}] [udp:127.0.0.1:{uas}] [127.0.0.1] [{proxy}] [udp] [127.0.0.1] \
         [127.0.0.1] [{uas}] [udp] [127.0.0.1] [1] [INVITE]",
        proxy = ports.proxy,
        uas = ports.uas
    );
    assert!(lines.contains(&invite_out.as_str()), "{lines:#?}");
    assert_eq!(lines.iter().filter(|l| l.starts_with("[out]")).count(), 7, "{lines:#?}");
    // What the route dropped was never queued, and is no counted loss.
    assert_eq!(proxy.stat("enqueued"), 6);
    assert_eq!(proxy.stat("dropped"), 0);
}

/// `$siptrace(...)` over IPv6: `*_host` in brackets, `*_hostip` without,
/// `*_addr` as in the `fromip`/`toip` columns.
#[test]
fn siptrace_pv_over_ipv6() {
    let dir = TestDir::new("event-route-ipv6");
    let (db, db_url) = trace_db(&dir);
    let params = [
        "loadmodule \"xlog.so\"\n".to_string(),
        modparam("trace_on", 1),
        modparam("db_url", &db_url),
        modparam("trace_mode", 2),
        modparam("trace_to_database", 0),
    ];
    let route =
        "xlog(\"L_NOTICE\", \"ST6 [$siptrace(direction)] [$siptrace(src_addr)] [$siptrace(src_host)] \
                 [$siptrace(src_hostip)] [$siptrace(dst_addr)] [$siptrace(dst_host)] [$siptrace(dst_hostip)] \
                 [$rm]\\n\");";
    let on_send = format!("return;\n}}\nevent_route[siptrace:msg] {{\n    {route}");
    let hooks = Hooks { on_send: &on_send, ..Default::default() };
    let proxy = Proxy::start(&dir, "::1", &params, &hooks);
    let ports = proxy.calls(&dir, 1);
    proxy.wait_for_rows(13);
    let rows = trace_rows(&db);
    let log = proxy.kamailio.log_text();
    let invite_in = format!(
        "ST6 [in] [udp:[::1]:{uac}] [[::1]] [::1] [udp:[::1]:{proxy}] [[::1]] [::1] [INVITE]",
        uac = ports.uac,
        proxy = ports.proxy
    );
    assert!(log.lines().any(|l| l.ends_with(&invite_in)), "{invite_in}\n{log}");
    let row = rows
        .iter()
        .find(|r| r.direction == "in" && first_line(&r.msg).starts_with("INVITE "))
        .expect("the INVITE's row");
    assert!(invite_in.contains(&format!("[{}] [[::1]] [::1] [{}]", row.fromip, row.toip)), "{}", row.fromip);
}
