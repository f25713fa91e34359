//! The KEMI functions, `KSR.siptrace.*`, from a Lua config (app_lua) of a
//! real Kamailio: every `KSR.siptrace` function, and `evcb_msg`.

mod common;

use common::calls::*;
use common::*;

/// What the Lua proxy does: the same as the native test proxy, with the
/// tracing of every request done through KSR.siptrace.
const SCRIPT: &str = r#"
function ksr_request_route()
    if KSR.siputils.has_totag() > 0 then
        KSR.siptrace.sip_trace_mode("t")
    else
        local ci = KSR.pv.get("$ci")
        KSR.siptrace.sip_trace_dst_cid_type("@HEP@", "cid-" .. ci, "t")
        KSR.siptrace.hlog("routing " .. KSR.pv.get("$rm"))
        KSR.siptrace.hlog_cid("log-" .. ci, "second")
    end
    return relay()
end
"#;

/// The relaying every test proxy does, as the native test proxy does it:
/// in-dialog requests by their route set (or to the UAS, for sipp's
/// built-in UAC, which sends none), initial ones to the UAS.
const RELAY: &str = r#"
function relay()
    if KSR.siputils.has_totag() > 0 then
        if KSR.rr.loose_route() < 0 then KSR.setdsturi("@UAS@") end
        KSR.tm.t_relay()
        return 1
    end
    KSR.rr.record_route()
    KSR.setdsturi("@UAS@")
    KSR.tm.t_relay()
    return 1
end
"#;

/// A Kamailio config that runs `lua`, with [`RELAY`] and @UAS@ replaced,
/// as its KEMI script, with the module and `params`; listens on `port`.
fn lua_proxy_config(dir: &TestDir, port: u16, uas_port: u16, lua: &str, params: &[String]) -> String {
    let script = dir.file("proxy.lua");
    let lua = format!("{RELAY}{lua}").replace("@UAS@", &format!("sip:127.0.0.1:{uas_port}"));
    std::fs::write(&script, lua).unwrap();
    config_head_children(dir, "proxy", &format!("udp:127.0.0.1:{port}"), 2)
        + &format!(
            "loadmodule \"tm.so\"\nloadmodule \"sl.so\"\nloadmodule \"rr.so\"\nloadmodule \"pv.so\"\n\
             loadmodule \"siputils.so\"\nloadmodule \"kex.so\"\nloadmodule \"db_sqlite.so\"\n\
             loadmodule \"app_lua.so\"\nloadmodule \"{module}\"\n\
             modparam(\"app_lua\", \"load\", \"{script}\")\n{params}cfgengine \"lua\"\n",
            module = module_path().display(),
            script = script.display(),
            params = params.concat(),
        )
}

#[test]
fn lua_configs_trace_through_ksr_siptrace() {
    let dir = TestDir::new("kemi-lua");
    let hepjs = HepJs::start(&dir);
    let (db, db_url) = trace_db(&dir);
    let uas = SippUas::start(&dir, "127.0.0.1", free_port());
    let port = free_port();
    let params = [
        modparam("trace_on", 1),
        modparam("db_url", &db_url),
        modparam("hep_mode_on", 1),
        modparam("duplicate_uri", hepjs.uri()),
    ];
    let config = lua_proxy_config(&dir, port, uas.port, &SCRIPT.replace("@HEP@", &hepjs.uri()), &params);
    let proxy = Kamailio::start(&dir, "proxy", &config);
    let calls = 2;
    let run = sipp_calls(&dir, "127.0.0.1", &format!("127.0.0.1:{port}"), calls, 10);
    assert!(run.ok, "{}\n{}", run.output, proxy.log_text());
    let ports = Ports { uac: run.port, proxy: port, uas: uas.port };

    // Rows: every request's transaction, in and out (the forwarded
    // end-to-end ACK has none).
    let flow: Vec<_> = CALL_FLOW.iter().copied().filter(|m| *m != (Role::Proxy, Role::Uas, "ACK")).collect();
    let rows = flow.len() * calls as usize;
    assert!(wait_for(std::time::Duration::from_secs(10), || trace_rows(&db).len() >= rows));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let role = |ip: &str| ports.role(ip.rsplit(':').next().unwrap().parse().unwrap());
    let seen = trace_rows(&db).into_iter().map(|r| {
        let kind = kind_of_text(&String::from_utf8_lossy(&r.msg));
        (r.callid.clone(), role(&r.fromip), role(&r.toip), kind)
    });
    assert_flows(seen, &flow, calls as usize);

    // HEP: every traced message (the in-dialog ones to duplicate_uri, the
    // same listener), the INVITE transaction's with the script's
    // correlation id, and the two log records of each call.
    let invite_messages = flow.iter().filter(|(_, _, k)| k.ends_with("INVITE")).count();
    let sip_sent_there = invite_messages * calls as usize;
    let expected = rows + 2 * calls as usize;
    hepjs.wait_for_packets(expected);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let packets = hepjs.packets();
    assert_eq!(packets.len(), expected);
    let mut logs = Vec::new();
    let mut sip = 0;
    for p in &packets {
        let info = &p["decoded"]["rcinfo"];
        let cid = info["correlation_id"].as_str().unwrap_or_default().to_string();
        let payload = p["decoded"]["payload"].as_str().unwrap_or_default().to_string();
        if info["payloadType"] == 100 {
            logs.push((payload, cid));
        } else if payload.contains("CSeq: 1 INVITE") {
            let callid = header(&payload, "Call-ID").to_string();
            assert_eq!(cid, format!("cid-{callid}"), "{}", first_line(payload.as_bytes()));
            sip += 1;
        }
    }
    assert_eq!(sip, sip_sent_there, "INVITE transaction packets to the script's URI");
    logs.sort();
    assert_eq!(logs.len(), 2 * calls as usize, "{logs:?}");
    assert_eq!(logs.iter().filter(|(t, _)| t == "routing INVITE").count(), calls as usize, "{logs:?}");
    assert!(logs.iter().filter(|(t, _)| t == "second").all(|(_, cid)| cid.starts_with("log-")), "{logs:?}");
}

/// `evcb_msg`: a Lua function runs for each message `trace_mode` traces,
/// in place of event_route[siptrace:msg]; `KSR.x.drop()` in it keeps the
/// message out, and `$siptrace(...)` reads its ends.
#[test]
fn evcb_msg_filters_trace_mode_messages_from_lua() {
    let dir = TestDir::new("kemi-evcb");
    let (db, db_url) = trace_db(&dir);
    let uas = SippUas::start(&dir, "127.0.0.1", free_port());
    let port = free_port();
    let lua = r#"
function ksr_request_route()
    return relay()
end

function ksr_siptrace_msg(evname)
    KSR.info("EVCB " .. evname .. " " .. KSR.pv.get("$siptrace(direction)") .. " "
        .. KSR.pv.get("$siptrace(src_addr)") .. "\n")
    if KSR.pv.get("$siptrace(direction)") == "out" then KSR.x.drop() end
    return 1
end
"#;
    let params = [
        modparam("trace_on", 1),
        modparam("db_url", &db_url),
        modparam("trace_mode", 2),
        modparam("trace_to_database", 0),
        modparam("evcb_msg", "ksr_siptrace_msg"),
    ];
    let config = lua_proxy_config(&dir, port, uas.port, lua, &params);
    let proxy = Kamailio::start(&dir, "proxy", &config);
    let run = sipp_calls(&dir, "127.0.0.1", &format!("127.0.0.1:{port}"), 1, 10);
    assert!(run.ok, "{}\n{}", run.output, proxy.log_text());
    // Only what the proxy received: INVITE, ACK, BYE and 180, 200, 200.
    assert!(wait_for(std::time::Duration::from_secs(10), || trace_rows(&db).len() >= 6));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let rows = trace_rows(&db);
    assert_eq!(rows.len(), 6);
    assert!(rows.iter().all(|r| r.direction == "in"));
    let log = proxy.log_text();
    assert!(!log.contains("error from Lua"), "{log}");
    let calls: Vec<&str> = log.lines().filter(|l| l.contains("EVCB siptrace:msg ")).collect();
    assert_eq!(calls.len(), 13, "{log}");
    let invite_from = format!("EVCB siptrace:msg in udp:127.0.0.1:{}", run.port);
    assert!(calls.iter().any(|l| l.contains(&invite_from)), "{calls:#?}");
}

/// `sip_trace()`, `sip_trace_dst(uri)` and `sip_trace_dst_cid(uri, cid)`:
/// the current request to `duplicate_uri`, or to the script's URI with the
/// Call-ID or the script's correlation id; and a mode the module does not
/// know makes `sip_trace_mode()` return -1, counted as a drop.
#[test]
fn lua_message_traces_go_where_the_script_says() {
    let dir = TestDir::new("kemi-message");
    let default = HepJs::start(&dir);
    let script_uri = HepJs::start(&dir);
    let uas = SippUas::start(&dir, "127.0.0.1", free_port());
    let port = free_port();
    let lua = r#"
function ksr_request_route()
    local rm = KSR.pv.get("$rm")
    local ret = 0
    if rm == "INVITE" then
        ret = KSR.siptrace.sip_trace()
    elseif rm == "ACK" then
        ret = KSR.siptrace.sip_trace_dst("@HEP@")
    elseif rm == "BYE" then
        ret = KSR.siptrace.sip_trace_dst_cid("@HEP@", "bye-" .. KSR.pv.get("$ci"))
    end
    KSR.info("KEMI " .. rm .. " " .. ret .. " " .. KSR.siptrace.sip_trace_mode("x") .. "\n")
    return relay()
end
"#;
    let params = [
        modparam("trace_on", 1),
        modparam("trace_to_database", 0),
        modparam("hep_mode_on", 1),
        modparam("duplicate_uri", default.uri()),
    ];
    let config = lua_proxy_config(&dir, port, uas.port, &lua.replace("@HEP@", &script_uri.uri()), &params);
    let proxy = Kamailio::start(&dir, "proxy", &config);
    let calls = 2;
    let run = sipp_calls(&dir, "127.0.0.1", &format!("127.0.0.1:{port}"), calls, 10);
    assert!(run.ok, "{}\n{}", run.output, proxy.log_text());
    let calls = calls as usize;

    // What each packet says: (first line, Call-ID, correlation id, ends).
    let seen = |hepjs: &HepJs, expected: usize| -> Vec<(String, String, String, u64, u64)> {
        let packets = hepjs.wait_for_packets(expected);
        let mut seen: Vec<_> = packets
            .iter()
            .map(|p| {
                let info = &p["decoded"]["rcinfo"];
                let payload = p["decoded"]["payload"].as_str().unwrap_or_default();
                (
                    first_line(payload.as_bytes()).split(' ').next().unwrap_or_default().to_string(),
                    header(payload, "Call-ID").to_string(),
                    info["correlation_id"].as_str().unwrap_or_default().to_string(),
                    info["srcPort"].as_u64().unwrap_or_default(),
                    info["dstPort"].as_u64().unwrap_or_default(),
                )
            })
            .collect();
        seen.sort();
        seen
    };
    let uac = u64::from(run.port);
    let proxy_port = u64::from(port);
    let at_default = seen(&default, calls);
    assert_eq!(at_default.len(), calls, "{at_default:#?}");
    for (method, callid, cid, src, dst) in &at_default {
        assert_eq!((method.as_str(), cid, *src, *dst), ("INVITE", callid, uac, proxy_port));
    }
    let at_script = seen(&script_uri, 2 * calls);
    assert_eq!(at_script.len(), 2 * calls, "{at_script:#?}");
    for (method, callid, cid, src, dst) in &at_script {
        let expected_cid = if method == "BYE" { format!("bye-{callid}") } else { callid.clone() };
        assert!(method == "ACK" || method == "BYE", "{at_script:#?}");
        assert_eq!((cid, *src, *dst), (&expected_cid, uac, proxy_port), "{method}");
    }
    assert_eq!(at_script.iter().filter(|s| s.0 == "BYE").count(), calls, "{at_script:#?}");

    // Each call returned 1, and sip_trace_mode("x") -1, counted once each.
    let log = proxy.log_text();
    for method in ["INVITE", "ACK", "BYE"] {
        let line = format!("KEMI {method} 1 -1");
        assert_eq!(log.lines().filter(|l| l.ends_with(&line)).count(), calls, "{line}\n{log}");
    }
    assert_eq!(proxy.stat("dropped_no_destination"), 3 * calls as u64);
}

/// `KSR.siptrace.sip_trace_msg(vmsg, saddr, taddr, daddr, corrid)`: on
/// Kamailio 6.0 the text goes as HEP with the script's addresses, to the
/// URI given or, when it is empty, to `duplicate_uri`, with the
/// correlation id given (or the Call-ID). On 5.6 the function returns -1
/// and says once that it needs 6.0: a KEMI script is not checked at
/// startup.
#[test]
fn lua_sip_trace_msg() {
    let dir = TestDir::new("kemi-trace-msg");
    let default = HepJs::start(&dir);
    let script_uri = HepJs::start(&dir);
    let uas = SippUas::start(&dir, "127.0.0.1", free_port());
    let port = free_port();
    let lua = r#"
function ksr_request_route()
    local rm = KSR.pv.get("$rm")
    local from = "udp:" .. KSR.pv.get("$si") .. ":" .. KSR.pv.get("$sp")
    local ret = 0
    if rm == "INVITE" then
        ret = KSR.siptrace.sip_trace_msg(KSR.pv.get("$mb"), from, "udp:192.0.2.9:5999", "@HEP@",
            "kmsg-" .. KSR.pv.get("$ci"))
    elseif rm == "BYE" then
        ret = KSR.siptrace.sip_trace_msg("not SIP at all", from, "udp:192.0.2.9:5999", "", "")
    end
    KSR.info("KEMI " .. rm .. " " .. ret .. "\n")
    return relay()
end
"#;
    let params =
        [modparam("trace_on", 0), modparam("trace_to_database", 0), modparam("duplicate_uri", default.uri())];
    let config = lua_proxy_config(&dir, port, uas.port, &lua.replace("@HEP@", &script_uri.uri()), &params);
    let proxy = Kamailio::start(&dir, "proxy", &config);
    let calls = 2;
    let run = sipp_calls(&dir, "127.0.0.1", &format!("127.0.0.1:{port}"), calls, 10);
    assert!(run.ok, "{}\n{}", run.output, proxy.log_text());
    let log = proxy.log_text();
    let returned =
        |method: &str, ret: i32| log.lines().filter(|l| l.ends_with(&format!("KEMI {method} {ret}"))).count();
    if cfg!(not(kamailio_6_0)) {
        assert_eq!((returned("INVITE", -1), returned("BYE", -1)), (2, 2), "{log}");
        assert!(log.contains("sip_trace_msg() needs Kamailio 6.0"), "{log}");
        std::thread::sleep(std::time::Duration::from_millis(500));
        assert!(default.packets().is_empty() && script_uri.packets().is_empty());
        return;
    }
    assert_eq!((returned("INVITE", 1), returned("BYE", 1)), (2, 2), "{log}");
    let from = format!("127.0.0.1:{}", run.port);
    let ends = |p: &serde_json::Value| {
        let info = &p["decoded"]["rcinfo"];
        (
            format!("{}:{}", info["srcIp"].as_str().unwrap_or_default(), info["srcPort"]),
            format!("{}:{}", info["dstIp"].as_str().unwrap_or_default(), info["dstPort"]),
        )
    };
    let invites = script_uri.wait_for_packets(2);
    assert_eq!(invites.len(), 2);
    for p in &invites {
        let payload = p["decoded"]["payload"].as_str().unwrap_or_default();
        assert!(payload.starts_with("INVITE "), "{payload}");
        let cid = p["decoded"]["rcinfo"]["correlation_id"].as_str().unwrap_or_default();
        assert_eq!(cid, format!("kmsg-{}", header(payload, "Call-ID")));
        assert_eq!(ends(p), (from.clone(), "192.0.2.9:5999".to_string()));
    }
    let byes = default.wait_for_packets(2);
    assert_eq!(byes.len(), 2);
    for p in &byes {
        assert_eq!(p["decoded"]["payload"], "not SIP at all");
        assert_eq!(ends(p), (from.clone(), "192.0.2.9:5999".to_string()));
    }
}
