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
