//! Bad configuration makes the real Kamailio refuse to start, with a log
//! line that names the parameter (or function) and the bad value.

mod common;

use common::*;

/// Starts a proxy with `params` and `hooks`, expects it to exit during
/// startup, and checks that its log has every one of `expected`.
fn assert_refused(name: &str, params: &str, hooks: &Hooks<'_>, expected: &[&str]) {
    let dir = TestDir::new(name);
    let config = proxy_config(&dir, "127.0.0.1", free_port(), free_port(), params, hooks);
    match Kamailio::try_start(&dir, "proxy", &config) {
        Ok(mut k) => {
            k.stop();
            panic!("{name}: Kamailio started although the config is bad; log:\n{}", k.log_text());
        }
        Err((status, log)) => {
            let status =
                status.unwrap_or_else(|| panic!("{name}: Kamailio neither started nor exited:\n{log}"));
            assert!(!status.success(), "{name}: exit status {status}");
            for text in expected {
                assert!(log.contains(text), "{name}: the log lacks {text:?}:\n{log}");
            }
        }
    }
}

fn no_db() -> String {
    modparam("trace_to_database", 0)
}

#[test]
fn unsupported_hep_version() {
    let params = no_db() + &modparam("hep_version", 7);
    assert_refused(
        "hep-version",
        &params,
        &Hooks::default(),
        &["'hep_version'", "'7'", "supported HEP versions"],
    );
}

#[test]
fn garbage_duplicate_uri() {
    let params = no_db() + &modparam("duplicate_uri", "!!garbage!!");
    assert_refused("garbage-uri", &params, &Hooks::default(), &["'duplicate_uri'", "'!!garbage!!'"]);
}

#[test]
fn unresolvable_duplicate_uri() {
    let params = no_db() + &modparam("duplicate_uri", "sip:no-such-host.invalid:9060");
    assert_refused(
        "unresolvable-uri",
        &params,
        &Hooks::default(),
        &["'duplicate_uri'", "'sip:no-such-host.invalid:9060'", "cannot resolve"],
    );
}

#[test]
fn hep_v1_to_a_stream_destination() {
    let params =
        no_db() + &modparam("hep_version", 1) + &modparam("duplicate_uri", "sip:127.0.0.1:9;transport=tcp");
    assert_refused("hep-v1-tcp", &params, &Hooks::default(), &["'duplicate_uri'", "no length field"]);
}

#[test]
fn trace_flag_out_of_range() {
    let params = no_db() + &modparam("trace_flag", 32);
    assert_refused(
        "trace-flag-32",
        &params,
        &Hooks::default(),
        &["'trace_flag'", "'32'", "between -1 and 31"],
    );
}

#[test]
fn inconsistent_parameters() {
    let params = no_db() + &modparam("trace_mode", 1);
    assert_refused("mode-without-uri", &params, &Hooks::default(), &["'trace_mode'", "duplicate_uri"]);
}

#[test]
fn database_without_its_driver_module() {
    // db_mysql is not loaded by the test proxy.
    let params = modparam("db_url", "mysql://kamailio:secretpw@127.0.0.1/kamailio");
    assert_refused(
        "db-driver",
        &params,
        &Hooks::default(),
        &["cannot bind a database module", "kamailio:***@"],
    );
    let dir = TestDir::new("db-driver-log");
    let config = proxy_config(&dir, "127.0.0.1", free_port(), free_port(), &params, &Hooks::default());
    if let Err((_, log)) = Kamailio::try_start(&dir, "proxy", &config) {
        assert!(!log.contains("secretpw"), "the password must not be logged:\n{log}");
    }
}

#[test]
fn bad_trace_scope() {
    let params = no_db() + &modparam("duplicate_uri", "sip:127.0.0.1:9");
    let hooks = Hooks { on_request: "sip_trace_mode(\"z\");", ..Default::default() };
    assert_refused("mode-z", &params, &hooks, &["sip_trace_mode()", "'z'", "expected m (message)"]);
    let hooks = Hooks { on_request: "sip_trace(\"sip:127.0.0.1:9\", \"$ci\", \"x\");", ..Default::default() };
    assert_refused("mode-x", &params, &hooks, &["sip_trace()", "'x'", "expected m (message)"]);
}

#[test]
fn bad_destination_argument() {
    let hooks = Hooks { on_request: "sip_trace(\"sip:bogus host\");", ..Default::default() };
    assert_refused("bad-dest-arg", &no_db(), &hooks, &["sip_trace()", "'sip:bogus host'"]);
}

#[test]
fn unknown_siptrace_pv_name() {
    let params = no_db() + &modparam("duplicate_uri", "sip:127.0.0.1:9");
    let hooks = Hooks {
        on_send: "return;\n}\nevent_route[siptrace:msg] {\n    if ($siptrace(colour) == \"red\") { drop; }",
        ..Default::default()
    };
    assert_refused("pv-name", &params, &hooks, &["$siptrace(colour)", "unknown name", "direction"]);
}

#[test]
fn beyond_sip_misconfigured() {
    let params = no_db() + &modparam("duplicate_uri", "sip:127.0.0.1:9") + &modparam("trace_net", 1);
    assert_refused("trace-net-no-hep", &params, &Hooks::default(), &["'trace_net'", "hep_mode_on=1"]);
    let params = no_db() + &modparam("duplicate_uri", "sip:127.0.0.1:9") + &modparam("trace_rpc", 1);
    assert_refused("trace-rpc-no-hep", &params, &Hooks::default(), &["'trace_rpc'", "hep_mode_on=1"]);
    let params = no_db() + &modparam("hep_mode_on", 1) + &modparam("hep_version", 2);
    let params = params + &modparam("duplicate_uri", "sip:127.0.0.1:9") + &modparam("trace_rpc", 1);
    assert_refused("trace-rpc-hep2", &params, &Hooks::default(), &["'trace_rpc'", "hep_version=3"]);
    let params = no_db() + &modparam("trace_rpc_filter", "core.uptime");
    assert_refused(
        "rpc-filter",
        &params,
        &Hooks::default(),
        &["'trace_rpc_filter'", "'core.uptime'", "allow:"],
    );
    let hooks = Hooks { on_request: "sip_trace_types(\"sip|mi\");", ..Default::default() };
    assert_refused("types", &no_db(), &hooks, &["sip_trace_types()", "'sip|mi'", "unknown trace type 'mi'"]);
    // http_client is not loaded.
    let hooks = Hooks {
        on_request: "sip_trace_http_query(\"http://127.0.0.1:9/\", \"$var(r)\");",
        ..Default::default()
    };
    assert_refused("rest-no-http-client", &no_db(), &hooks, &["sip_trace_http_query()", "http_client"]);
}

#[test]
fn bad_hep_distribution() {
    let params = no_db()
        + &modparam("duplicate_uri", "sip:127.0.0.1:9")
        + &modparam("hep_mode_on", 1)
        + &modparam("hep_distribution", "round-robin");
    assert_refused(
        "hep-distribution",
        &params,
        &Hooks::default(),
        &["'hep_distribution'", "'round-robin'", "expected copy, failover or shard"],
    );
}

#[test]
fn spool_max_size_out_of_range() {
    let params = no_db() + &modparam("spool_max_size", 0);
    assert_refused(
        "spool-max-size",
        &params,
        &Hooks::default(),
        &["'spool_max_size'", "'0'", "between 1 and"],
    );
}

#[test]
fn a_spool_dir_that_cannot_be_created() {
    // Under a regular file: no directory can be made there, even by root.
    let dir = TestDir::new("spool-dir-blocked");
    let blocker = dir.file("a-file");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let spool = blocker.join("spool");
    let params = no_db() + &modparam("spool_dir", spool.display());
    let value = format!("'{}'", spool.display());
    assert_refused("spool-dir", &params, &Hooks::default(), &["'spool_dir'", &value, "cannot create"]);
}

#[test]
fn a_good_config_starts() {
    // The counterpart of the refusals: the same proxy with valid values runs.
    let dir = TestDir::new("good-config");
    let params = no_db() + &modparam("duplicate_uri", "sip:localhost:9") + &modparam("hep_mode_on", 1);
    let config = proxy_config(&dir, "127.0.0.1", free_port(), free_port(), &params, &Hooks::default());
    let proxy = Kamailio::start(&dir, "proxy", &config);
    assert_eq!(proxy.rpc(&["siptrace.status", "check"]), "Disabled");
}

/// The parameters and the function of Kamailio 6.0's siptrace stop a 5.6
/// server, each named, with the release it needs (on 6.0 they are taken:
/// tests/differential.rs uses them there).
#[test]
#[cfg_attr(not(kamailio_5_6), ignore = "checks the refusal on Kamailio 5.6")]
fn kamailio_6_0_parameters_and_function_on_5_6() {
    for (param, value) in [("data_mode", 1), ("trace_dialog_ack", 0), ("trace_dialog_spiral", 1)] {
        assert_refused(
            &format!("needs-6.0-{param}"),
            &modparam(param, value),
            &Hooks::default(),
            &[&format!("modparam '{param}'"), &format!("'{value}'"), "needs Kamailio 6.0"],
        );
    }
    let hooks = Hooks {
        on_request: "sip_trace_msg(\"$mb\", \"udp:$si:$sp\", \"udp:$Ri:$Rp\", \"\", \"\");",
        ..Default::default()
    };
    assert_refused("needs-6.0-sip-trace-msg", &no_db(), &hooks, &["sip_trace_msg() needs Kamailio 6.0"]);
}

/// Constant arguments of sip_trace_msg() are checked at startup (6.0).
#[test]
#[cfg_attr(not(kamailio_6_0), ignore = "needs Kamailio 6.0")]
fn sip_trace_msg_bad_constant_arguments() {
    let call = |saddr: &str, daddr: &str| {
        format!("sip_trace_msg(\"$mb\", \"{saddr}\", \"udp:$Ri:$Rp\", \"{daddr}\", \"\");")
    };
    let bad_address = call("udp:not-an-ip:5060", "");
    assert_refused(
        "sip-trace-msg-address",
        &no_db(),
        &Hooks { on_request: &bad_address, ..Default::default() },
        &["sip_trace_msg()", "'udp:not-an-ip:5060'", "proto:ip:port"],
    );
    let bad_uri = call("udp:127.0.0.1:5060", "sip:no-such-host.invalid:9060");
    assert_refused(
        "sip-trace-msg-uri",
        &no_db(),
        &Hooks { on_request: &bad_uri, ..Default::default() },
        &["sip_trace_msg()", "'sip:no-such-host.invalid:9060'"],
    );
    assert_refused(
        "data-mode-flags",
        &modparam("data_mode", 2),
        &Hooks::default(),
        &["'data_mode'", "'2'", "the only flag is 1"],
    );
}

/// The core's closed-connection event holds one callback, which tcpops
/// takes too (its `closed_event`, 1 by default): with `trace_net` on,
/// whichever of the two initializes second fails, and Kamailio stops;
/// with `closed_event` 0 both load.
#[test]
#[cfg_attr(
    kamailio_6_0,
    ignore = "the Kamailio 6.0 build here has no tcpops (SREV_TCP_CLOSED holds one callback in 6.0's core/events.c too)"
)]
fn trace_net_and_tcpops_share_the_closed_connection_event() {
    let trace_net = no_db()
        + &modparam("hep_mode_on", 1)
        + &modparam("duplicate_uri", "sip:127.0.0.1:9")
        + &modparam("trace_net", 1);
    let tcpops = "loadmodule \"tcpops.so\"\n";
    // tcpops after the module: tcpops cannot register.
    assert_refused(
        "tcpops-after",
        &(trace_net.clone() + tcpops),
        &Hooks::default(),
        &["tcpops", "problem registering tcpops_handle_tcp_closed"],
    );
    // tcpops before: the module cannot, and says so.
    let dir = TestDir::new("tcpops-before");
    let config = proxy_config(&dir, "127.0.0.1", free_port(), free_port(), &trace_net, &Hooks::default())
        .replace("loadmodule \"tm.so\"\n", &format!("loadmodule \"tm.so\"\n{tcpops}"));
    match Kamailio::try_start(&dir, "proxy", &config) {
        Ok(_) => panic!("tcpops-before: Kamailio started"),
        Err((_, log)) => assert!(log.contains("cannot register the closed-connection callback"), "{log}"),
    }
    // closed_event 0: both load.
    let dir = TestDir::new("tcpops-no-event");
    let params = trace_net + tcpops + "modparam(\"tcpops\", \"closed_event\", 0)\n";
    let config = proxy_config(&dir, "127.0.0.1", free_port(), free_port(), &params, &Hooks::default());
    Kamailio::start(&dir, "proxy", &config);
}

/// An SQLite file that cannot be opened is a configuration error on both
/// writers (issue 19): a path one slash short (relative to the working
/// directory, and not there), a directory that does not exist, a file that
/// is not a database. The start is refused, naming db_url and the path. A
/// database *server* that is down at startup does not stop Kamailio
/// (tests/faults.rs, postgresql_down_at_startup_...).
#[test]
fn sqlite_files_that_cannot_be_opened() {
    let dir = TestDir::new("sqlite-unopenable");
    let not_a_db = dir.file("notes.txt");
    std::fs::write(&not_a_db, "not a database, some notes\n".repeat(200)).unwrap();
    let missing_dir = dir.file("no-such-dir/trace.db");
    let cases = [
        // One slash short: `sqlite:///tmp/...` names `tmp/...` in the working directory.
        (
            format!("sqlite://{}", dir.file("trace.db").display()),
            vec!["a relative path".to_string(), "four slashes".to_string()],
        ),
        (format!("sqlite:///{}", missing_dir.display()), vec!["does not exist".to_string()]),
        (format!("sqlite:///{}", not_a_db.display()), vec!["not a database".to_string()]),
    ];
    for (native, tag) in [(1, "native"), (0, "dbapi")] {
        for (i, (url, why)) in cases.iter().enumerate() {
            let params = modparam("db_url", url) + &modparam("db_native", native);
            let path = url.strip_prefix("sqlite:///").unwrap();
            let mut expected = vec![format!("db_url '{url}'"), format!("'{path}'")];
            expected.extend(why.iter().cloned());
            let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
            assert_refused(&format!("sqlite-unopenable-{tag}-{i}"), &params, &Hooks::default(), &expected);
        }
    }
}
