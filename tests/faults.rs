//! Faults around a real Kamailio under sipp load: HEP collectors and
//! databases that are down or go away, a sender process that is killed,
//! a queue overloaded ten times over. Through all of them calls must keep
//! succeeding with the same answer times, and every trace must either
//! arrive or be counted as dropped: `received + dropped == traced`.
//!
//! Each test prints a `figures:` line (run with `--nocapture`), the
//! numbers doc/reliability.md reports.

mod common;

use common::calls::*;
use common::*;
use std::collections::HashSet;
use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Calls in one phase of a test, and the rate they are placed at.
const PHASE_CALLS: u32 = 40;
const RATE: u32 = 20;

/// How long a TCP or TLS collector that came back may wait for the
/// sender: its longest back-off (5 s), a connect, and the test's polling.
const RECONNECT_BOUND: Duration = Duration::from_secs(8);

/// A sipp UAC placing calls through the proxy in the background, and
/// noting how long each call took to be answered.
struct Load {
    child: Child,
    dir: PathBuf,
}

/// What a load saw.
struct Finished {
    ok: bool,
    /// INVITE to 200 OK of each call, in milliseconds (the UAS rings for
    /// 50 ms of it).
    answer_ms: Vec<f64>,
    log: String,
}

impl Load {
    fn start(dir: &TestDir, proxy: &Proxy, calls: u32, rate: u32) -> Load {
        let port = free_port();
        let run_dir = dir.file(&format!("load-{port}"));
        fs::create_dir_all(&run_dir).unwrap();
        let child = Command::new("sipp")
            .args(["-sn", "uac", &format!("{}:{}", host_in_uri(proxy.ip), proxy.port)])
            .args(["-i", proxy.ip, "-p", &port.to_string()])
            .args(["-r", &rate.to_string(), "-m", &calls.to_string(), "-l", "200", "-d", "10"])
            .args(["-trace_rtt", "-rtt_freq", "1", "-trace_err"])
            .args(["-timeout", "90s", "-timeout_error", "-nostdin", "-nd"])
            .current_dir(&run_dir)
            .stdin(Stdio::null())
            .stdout(File::create(run_dir.join("sipp.out")).unwrap())
            .stderr(File::create(run_dir.join("sipp.err")).unwrap())
            .process_group(0)
            .spawn()
            .expect("spawn sipp");
        Load { child, dir: run_dir }
    }

    fn is_done(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    fn finish(mut self) -> Finished {
        let ok = self.child.wait().unwrap().success();
        let mut answer_ms = Vec::new();
        for entry in fs::read_dir(&self.dir).unwrap().filter_map(Result::ok) {
            if entry.file_name().to_string_lossy().ends_with("_rtt.csv") {
                let text = fs::read_to_string(entry.path()).unwrap();
                // Lines of "date_ms;response_time_ms;rtd_no" after a header.
                answer_ms
                    .extend(text.lines().filter_map(|l| l.split(';').nth(1)?.trim().parse::<f64>().ok()));
            }
        }
        let log = ["sipp.out", "sipp.err"]
            .iter()
            .map(|f| fs::read_to_string(self.dir.join(f)).unwrap_or_default())
            .collect::<String>();
        Finished { ok, answer_ms, log }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Places `calls` calls and checks they all succeeded.
fn calls_succeed(dir: &TestDir, proxy: &Proxy, calls: u32, placed: &mut u32) -> Finished {
    let run = Load::start(dir, proxy, calls, RATE).finish();
    *placed += calls;
    assert!(run.ok, "calls failed:\n{}\nproxy log:\n{}", run.log, proxy.kamailio.log_text());
    assert_eq!(run.answer_ms.len(), calls as usize, "an answer time per call");
    // sipp may end before the proxy has relayed the last 200 OK: let the
    // last call finish before the test changes anything.
    std::thread::sleep(Duration::from_millis(300));
    run
}

fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Median and 95th percentile answer time.
fn answer_times(run: &Finished) -> (f64, f64) {
    (percentile(&run.answer_ms, 0.5), percentile(&run.answer_ms, 0.95))
}

/// The calls of `run` were answered as fast as those of `baseline`: a SIP
/// worker that waited on a collector or a database (a connect, a busy
/// file) would add hundreds of milliseconds. The margins absorb the
/// noise of a shared two-core machine.
fn assert_answer_times_flat(baseline: &Finished, run: &Finished, what: &str) {
    let (base_median, base_p95) = answer_times(baseline);
    let (median, p95) = answer_times(run);
    assert!(
        median <= base_median + 25.0 && p95 <= base_p95 + 100.0,
        "{what}: answers took {median:.1} ms (p95 {p95:.1}) against {base_median:.1} ms (p95 {base_p95:.1}) before"
    );
}

/// Waits until the senders took every queued record and `count` stopped
/// moving.
fn quiesce(proxy: &Proxy, count: &dyn Fn() -> usize) {
    wait_for(Duration::from_secs(20), || proxy.stat("enqueued") == proxy.stat("dequeued"));
    let mut last = count();
    loop {
        std::thread::sleep(Duration::from_millis(700));
        let now = count();
        if now == last {
            return;
        }
        last = now;
    }
}

/// Places one call at a time until a trace reaches `count`; returns how
/// long that took.
fn first_trace_through(
    dir: &TestDir,
    proxy: &Proxy,
    count: &dyn Fn() -> usize,
    placed: &mut u32,
) -> Duration {
    let start = Instant::now();
    let before = count();
    while count() == before {
        assert!(start.elapsed() < Duration::from_secs(30), "no trace got through in 30 s");
        calls_succeed(dir, proxy, 1, placed);
        std::thread::sleep(Duration::from_millis(300));
    }
    start.elapsed()
}

/// A phase with the destination up: every trace of its calls arrives.
fn all_arrive(dir: &TestDir, proxy: &Proxy, count: &dyn Fn() -> usize, placed: &mut u32) -> Finished {
    quiesce(proxy, count);
    let before = count();
    let run = calls_succeed(dir, proxy, PHASE_CALLS, placed);
    let want = before + PHASE_CALLS as usize * CALL_FLOW.len();
    wait_for(Duration::from_secs(30), || count() >= want);
    quiesce(proxy, count);
    assert_eq!(count(), want, "every trace of the calls placed while the destination was up arrived");
    run
}

/// Once everything settled: every trace of `placed` calls arrived or was
/// counted as dropped. Returns (received, dropped).
fn assert_all_accounted(proxy: &Proxy, count: &dyn Fn() -> usize, placed: u32) -> (u64, u64) {
    quiesce(proxy, count);
    let traced = placed as u64 * CALL_FLOW.len() as u64;
    let (received, dropped) = (count() as u64, proxy.stat("dropped"));
    assert_eq!(
        received + dropped,
        traced,
        "{received} traces arrived and {dropped} were counted as dropped, of {traced}; stats:\n{}",
        proxy.kamailio.rpc(&["siptrace.stats"])
    );
    (received, dropped)
}

fn hep_params(port: u16, transport: CollectorTransport, dir: &TestDir) -> Vec<String> {
    let suffix = match transport {
        CollectorTransport::Udp => "",
        CollectorTransport::Tcp => ";transport=tcp",
        CollectorTransport::Tls => ";transport=tls",
    };
    let mut params = vec![
        modparam("trace_on", 1),
        modparam("trace_mode", 1),
        modparam("trace_to_database", 0),
        modparam("duplicate_uri", format!("sip:127.0.0.1:{port}{suffix}")),
    ];
    if transport == CollectorTransport::Tls {
        params.push(modparam("tls_ca_file", test_certificates(dir).ca_cert.display()));
    }
    params
}

/// The collector is absent when the proxy starts, comes up, goes away,
/// and comes back.
fn collector_outage(transport: CollectorTransport, name: &str) {
    let dir = TestDir::new(name);
    let port = free_port();
    let proxy = Proxy::start(&dir, "127.0.0.1", &hep_params(port, transport, &dir), &Hooks::default());
    let mut placed = 0;

    let absent = calls_succeed(&dir, &proxy, PHASE_CALLS, &mut placed);
    let collector = Sipcapture::start_on(&dir, "127.0.0.1", transport, port);
    let first_connect = first_trace_through(&dir, &proxy, &|| collector.count(), &mut placed);
    let up = all_arrive(&dir, &proxy, &|| collector.count(), &mut placed);

    drop(collector);
    wait_until_port_free(port);
    let gone = calls_succeed(&dir, &proxy, PHASE_CALLS, &mut placed);
    let collector = Sipcapture::start_on(&dir, "127.0.0.1", transport, port);
    let reconnect = first_trace_through(&dir, &proxy, &|| collector.count(), &mut placed);
    let back = all_arrive(&dir, &proxy, &|| collector.count(), &mut placed);

    let (received, dropped) = assert_all_accounted(&proxy, &|| collector.count(), placed);
    let outage_traces = 2 * PHASE_CALLS as u64 * CALL_FLOW.len() as u64;
    assert!(dropped >= outage_traces, "the traces of both outages are counted: {dropped}");
    for (what, run) in [("collector absent", &absent), ("collector gone", &gone), ("collector back", &back)] {
        assert_answer_times_flat(&up, run, what);
    }
    if transport != CollectorTransport::Udp {
        assert!(first_connect < RECONNECT_BOUND, "first connection after {first_connect:?}");
        assert!(reconnect < RECONNECT_BOUND, "reconnected after {reconnect:?}");
    }
    println!(
        "figures: {name}: {placed} calls all answered; {received} traces arrived, {dropped} dropped and counted \
         ({}); answer median/p95 ms: up {:?}, absent {:?}, gone {:?}, back {:?}; first trace through after {:.1} s, \
         again after {:.1} s",
        drop_reasons(&proxy),
        answer_times(&up),
        answer_times(&absent),
        answer_times(&gone),
        answer_times(&back),
        first_connect.as_secs_f64(),
        reconnect.as_secs_f64()
    );
}

/// Waits until no process of a stopped collector holds `port`: a child
/// that outlives the main process for a moment would still store traces.
fn wait_until_port_free(port: u16) {
    let free = || {
        std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
    };
    assert!(wait_for(Duration::from_secs(10), free), "port {port} still in use");
}

/// The collector is killed while calls are going on, and started again
/// while they still are. What it had received and not yet stored dies
/// with it, unseen by any sender: the test bounds that gap and checks
/// nothing is counted twice.
fn collector_killed_under_load(transport: CollectorTransport, name: &str) {
    let dir = TestDir::new(name);
    let port = free_port();
    let collector = Sipcapture::start_on(&dir, "127.0.0.1", transport, port);
    let proxy = Proxy::start(&dir, "127.0.0.1", &hep_params(port, transport, &dir), &Hooks::default());
    let mut placed = 0;
    let before = all_arrive(&dir, &proxy, &|| collector.count(), &mut placed);

    let calls = 6 * PHASE_CALLS;
    let load = Load::start(&dir, &proxy, calls, RATE);
    std::thread::sleep(Duration::from_secs(3));
    drop(collector);
    wait_until_port_free(port);
    std::thread::sleep(Duration::from_secs(3));
    let collector = Sipcapture::start_on(&dir, "127.0.0.1", transport, port);
    let during = load.finish();
    placed += calls;
    assert!(during.ok, "calls failed while the collector was killed:\n{}", during.log);
    let after = all_arrive(&dir, &proxy, &|| collector.count(), &mut placed);

    quiesce(&proxy, &|| collector.count());
    let traced = placed as u64 * CALL_FLOW.len() as u64;
    let (received, dropped) = (collector.count() as u64, proxy.stat("dropped"));
    let unseen = traced as i64 - (received + dropped) as i64;
    assert!(received + dropped <= traced, "{received} arrived and {dropped} counted, of {traced}");
    assert!(unseen <= 2 * CALL_FLOW.len() as i64, "{unseen} traces vanished in the collector's death");
    assert!(dropped > 0, "the outage cost traces");
    assert_answer_times_flat(&before, &during, "collector killed under load");
    assert_answer_times_flat(&before, &after, "collector back");
    println!(
        "figures: {name}: {placed} calls all answered; {received} traces arrived, {dropped} dropped and counted \
         ({}), {unseen} lost inside the dying collector; answer median/p95 ms: before {:?}, during {:?}, after {:?}",
        drop_reasons(&proxy),
        answer_times(&before),
        answer_times(&during),
        answer_times(&after)
    );
}

#[test]
fn udp_collector_killed_under_load() {
    collector_killed_under_load(CollectorTransport::Udp, "killed-under-load-udp");
}

#[test]
fn tcp_collector_killed_under_load() {
    collector_killed_under_load(CollectorTransport::Tcp, "killed-under-load-tcp");
}

#[test]
fn tls_collector_killed_under_load() {
    collector_killed_under_load(CollectorTransport::Tls, "killed-under-load-tls");
}

/// The non-zero drop counters, by reason.
fn drop_reasons(proxy: &Proxy) -> String {
    let stats = proxy.kamailio.rpc(&["siptrace.stats"]);
    stats
        .lines()
        .filter_map(|l| l.trim().strip_prefix("dropped_"))
        .filter(|l| !l.ends_with(": 0"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn udp_collector_outages_cost_only_counted_traces() {
    collector_outage(CollectorTransport::Udp, "outage-udp");
}

#[test]
fn tcp_collector_outages_cost_only_counted_traces() {
    collector_outage(CollectorTransport::Tcp, "outage-tcp");
}

#[test]
fn tls_collector_outages_cost_only_counted_traces() {
    collector_outage(CollectorTransport::Tls, "outage-tls");
}

/// Which writer stores the rows: the module's own (`db_native=1`, the
/// default) or Kamailio's DB API. Every database fault runs on both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Native,
    DbApi,
}

fn db_params(db_url: &str, path: Path) -> Vec<String> {
    vec![
        modparam("trace_on", 1),
        modparam("trace_mode", 2),
        modparam("trace_to_database", 0),
        modparam("db_url", db_url),
        modparam("db_native", (path == Path::Native) as i32),
    ]
}

/// The threads of a process: Kamailio's main process must have none but
/// its own when it forks, whatever a writer did at startup.
fn thread_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/task")).map(|d| d.count()).unwrap_or(0)
}

fn pg_rows(pg: &Postgres) -> usize {
    pg.try_psql("kamailio", "SELECT count(*) FROM sip_trace")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn postgresql_down_at_startup_and_restarted_mid_run() {
    postgresql_outage(Path::Native, "outage-postgres");
}

#[test]
fn postgresql_down_at_startup_and_restarted_mid_run_through_the_db_api() {
    postgresql_outage(Path::DbApi, "outage-postgres-dbapi");
}

fn postgresql_outage(path: Path, name: &str) {
    let dir = TestDir::new(name);
    let mut pg = Postgres::start(&dir);
    // A host name, not an address: the native writer resolves it (in a
    // thread of its runtime) at startup, in the main process.
    let db_url = pg.trace_database("kamailio").replace("@127.0.0.1:", "@localhost:");
    pg.stop();
    // The C module refuses to start here; ours starts and says so.
    let proxy = Proxy::start(&dir, "127.0.0.1", &db_params(&db_url, path), &Hooks::default());
    assert!(proxy.kamailio.log_text().contains("the database does not answer now"));
    assert_eq!(thread_count(proxy.kamailio.pid()), 1, "Kamailio's main process runs no thread of ours");
    let mut placed = 0;

    let down = calls_succeed(&dir, &proxy, PHASE_CALLS, &mut placed);
    pg.start_again(&dir);
    let first_connect = first_trace_through(&dir, &proxy, &|| pg_rows(&pg), &mut placed);
    let up = all_arrive(&dir, &proxy, &|| pg_rows(&pg), &mut placed);

    pg.stop();
    let gone = calls_succeed(&dir, &proxy, PHASE_CALLS, &mut placed);
    pg.start_again(&dir);
    let reconnect = first_trace_through(&dir, &proxy, &|| pg_rows(&pg), &mut placed);
    let back = all_arrive(&dir, &proxy, &|| pg_rows(&pg), &mut placed);

    let (stored, dropped) = assert_all_accounted(&proxy, &|| pg_rows(&pg), placed);
    assert_eq!(proxy.stat("db_rows"), stored, "the row counter matches the table");
    assert!(dropped >= 2 * PHASE_CALLS as u64 * CALL_FLOW.len() as u64);
    for (what, run) in [("database down", &down), ("database gone", &gone), ("database back", &back)] {
        assert_answer_times_flat(&up, run, what);
    }
    println!(
        "figures: postgres ({path:?}): {placed} calls all answered; {stored} rows stored, {dropped} dropped and counted ({}); \
         answer median/p95 ms: up {:?}, down at start {:?}, gone {:?}, back {:?}; first row after {:.1} s, \
         again after {:.1} s",
        drop_reasons(&proxy),
        answer_times(&up),
        answer_times(&down),
        answer_times(&gone),
        answer_times(&back),
        first_connect.as_secs_f64(),
        reconnect.as_secs_f64()
    );
}

#[test]
fn an_sqlite_file_locked_by_another_writer() {
    sqlite_locked(Path::Native, "sqlite-locked");
}

#[test]
fn an_sqlite_file_locked_by_another_writer_through_the_db_api() {
    sqlite_locked(Path::DbApi, "sqlite-locked-dbapi");
}

fn sqlite_locked(path: Path, name: &str) {
    let dir = TestDir::new(name);
    let (db, db_url) = trace_db(&dir);
    let proxy = Proxy::start(&dir, "127.0.0.1", &db_params(&db_url, path), &Hooks::default());
    let rows = || count_trace_rows(&db);
    let mut placed = 0;
    let up = all_arrive(&dir, &proxy, &rows, &mut placed);

    let other = rusqlite::Connection::open(&db).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let locked = calls_succeed(&dir, &proxy, PHASE_CALLS, &mut placed);
    // Long enough for writes of the senders to give up on the file.
    std::thread::sleep(Duration::from_secs(3));
    other.execute_batch("ROLLBACK").unwrap();
    let after = all_arrive(&dir, &proxy, &rows, &mut placed);

    let (stored, dropped) = assert_all_accounted(&proxy, &rows, placed);
    assert!(proxy.stat("dropped_db_failed") > 0, "writes failed while the file was locked");
    assert_eq!(proxy.stat("db_rows"), stored);
    assert_answer_times_flat(&up, &locked, "file locked");
    assert_answer_times_flat(&up, &after, "file unlocked");
    println!(
        "figures: sqlite locked ({path:?}): {placed} calls all answered; {stored} rows stored, {dropped} dropped and counted \
         ({}); answer median/p95 ms: before {:?}, locked {:?}, after {:?}",
        drop_reasons(&proxy),
        answer_times(&up),
        answer_times(&locked),
        answer_times(&after)
    );
}

/// The pid of the process sending for sender 0: a child of the process
/// `core.psx` lists.
fn sending_process(proxy: &Proxy) -> i32 {
    let psx = proxy.kamailio.rpc(&["core.psx"]);
    let mut pid = None;
    let mut last_pid = None;
    for line in psx.lines().map(str::trim) {
        if let Some(p) = line.strip_prefix("PID: ") {
            last_pid = p.trim().parse::<i32>().ok();
        }
        if line == "DSC: siptrace sender 0" {
            pid = last_pid;
        }
    }
    let supervisor = pid.unwrap_or_else(|| panic!("no sender in core.psx:\n{psx}"));
    let children = fs::read_to_string(format!("/proc/{supervisor}/task/{supervisor}/children")).unwrap();
    children.split_whitespace().next().and_then(|p| p.parse().ok()).expect("the sender has a sending process")
}

#[test]
fn a_killed_sending_process_is_replaced_and_its_traces_counted() {
    let dir = TestDir::new("sender-killed");
    let hepjs = HepJs::start(&dir);
    let params = [
        modparam("trace_on", 1),
        modparam("trace_mode", 1),
        modparam("trace_to_database", 0),
        modparam("duplicate_uri", hepjs.uri()),
    ];
    let proxy = Proxy::start(&dir, "127.0.0.1", &params, &Hooks::default());
    let received = || hepjs.packets().len();
    let mut placed = 0;
    let before = all_arrive(&dir, &proxy, &received, &mut placed);

    let victim = sending_process(&proxy);
    let load = Load::start(&dir, &proxy, 3 * PHASE_CALLS, RATE);
    std::thread::sleep(Duration::from_millis(2500));
    // SAFETY: killing a process of the Kamailio under test.
    assert_eq!(unsafe { libc::kill(victim, libc::SIGKILL) }, 0);
    let during = load.finish();
    placed += 3 * PHASE_CALLS;
    assert!(during.ok, "calls failed while the sender was killed:\n{}", during.log);
    assert!(wait_for(Duration::from_secs(10), || proxy.stat("sender_restarts") == 1), "sender replaced");
    let replacement = sending_process(&proxy);
    assert_ne!(replacement, victim);
    assert!(proxy.kamailio.log_text().contains(&format!("(pid {victim}) was killed by signal 9")));
    let after = all_arrive(&dir, &proxy, &received, &mut placed);

    // Nothing twice: a record is either delivered or counted, and the
    // batch the dead process held is counted though part of it may have
    // gone out (at most one batch, 64 records).
    quiesce(&proxy, &received);
    let packets = hepjs.packets();
    let distinct: HashSet<String> = packets.iter().map(|p| p["raw"].to_string()).collect();
    assert_eq!(distinct.len(), packets.len(), "no trace arrived twice");
    let traced = placed as u64 * CALL_FLOW.len() as u64;
    let (arrived, dropped) = (packets.len() as u64, proxy.stat("dropped"));
    assert_eq!(dropped, proxy.stat("dropped_sender_died"));
    assert!(
        arrived <= traced && arrived + dropped >= traced && arrived + dropped <= traced + 64,
        "{arrived} arrived, {dropped} counted, of {traced}"
    );
    assert_answer_times_flat(&before, &during, "sender killed");
    assert_answer_times_flat(&before, &after, "sender replaced");
    println!(
        "figures: sender killed: {placed} calls all answered; {arrived} traces arrived, {dropped} counted as \
         dropped_sender_died, of {traced}; answer median/p95 ms: before {:?}, during {:?}, after {:?}",
        answer_times(&before),
        answer_times(&during),
        answer_times(&after)
    );
}

#[test]
fn a_sending_process_killed_while_it_holds_rows_counts_them() {
    killed_while_holding_rows(Path::Native, "sender-killed-writing");
}

#[test]
fn a_sending_process_killed_while_it_holds_rows_counts_them_through_the_db_api() {
    killed_while_holding_rows(Path::DbApi, "sender-killed-writing-dbapi");
}

fn killed_while_holding_rows(path: Path, name: &str) {
    let dir = TestDir::new(name);
    let (db, db_url) = trace_db(&dir);
    let proxy = Proxy::start(&dir, "127.0.0.1", &db_params(&db_url, path), &Hooks::default());
    let rows = || count_trace_rows(&db);
    let mut placed = 0;
    let before = all_arrive(&dir, &proxy, &rows, &mut placed);

    // The sender waits on a locked file with rows in hand when it is killed.
    let other = rusqlite::Connection::open(&db).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let during = calls_succeed(&dir, &proxy, PHASE_CALLS, &mut placed);
    let victim = sending_process(&proxy);
    // SAFETY: killing a process of the Kamailio under test.
    assert_eq!(unsafe { libc::kill(victim, libc::SIGKILL) }, 0);
    assert!(wait_for(Duration::from_secs(10), || proxy.stat("sender_restarts") == 1), "sender replaced");
    other.execute_batch("ROLLBACK").unwrap();
    let after = all_arrive(&dir, &proxy, &rows, &mut placed);

    let (stored, dropped) = assert_all_accounted(&proxy, &rows, placed);
    let died = proxy.stat("dropped_sender_died");
    assert!(died > 0, "the rows the killed process held are counted");
    assert_answer_times_flat(&before, &during, "file locked, sender killed");
    assert_answer_times_flat(&before, &after, "sender replaced");
    println!(
        "figures: sender killed while writing ({path:?}): {placed} calls all answered; {stored} rows stored, {dropped} \
         dropped and counted ({})",
        drop_reasons(&proxy)
    );
}

/// Kamailio's shared memory in use, in bytes, from `core.shmmem`.
fn shm_used(proxy: &Proxy) -> (u64, u64) {
    let text = proxy.kamailio.rpc(&["core.shmmem"]);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{name}: ")))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    (field("real_used"), field("max_used"))
}

/// The resident memory of each of the proxy's processes and the sending
/// process, in KiB.
fn rss_kib(proxy: &Proxy) -> Vec<(i32, u64)> {
    let psx = proxy.kamailio.rpc(&["core.psx"]);
    let mut pids: Vec<i32> = psx
        .lines()
        .filter_map(|l| l.trim().strip_prefix("PID: "))
        .filter_map(|p| p.trim().parse().ok())
        .collect();
    pids.push(sending_process(proxy));
    pids.into_iter()
        .filter_map(|pid| {
            let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let kib = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB");
            Some((pid, kib.trim().parse().ok()?))
        })
        .collect()
}

/// Places `calls` calls at twice the usual rate, sampling the queue depth
/// and the shared memory in use; returns the run and both peaks.
fn load_sampled(dir: &TestDir, proxy: &Proxy, calls: u32) -> (Finished, u64, u64) {
    let mut load = Load::start(dir, proxy, calls, 2 * RATE);
    let (mut deepest, mut shm_peak) = (0, 0);
    while !load.is_done() {
        deepest = deepest.max(proxy.stat("queue_bytes"));
        shm_peak = shm_peak.max(shm_used(proxy).0);
        std::thread::sleep(Duration::from_millis(200));
    }
    (load.finish(), deepest, shm_peak)
}

#[test]
fn ten_times_the_queue_is_dropped_and_counted_with_memory_bounded() {
    overload(Path::Native, "overload");
}

#[test]
fn ten_times_the_queue_is_dropped_and_counted_with_memory_bounded_through_the_db_api() {
    overload(Path::DbApi, "overload-dbapi");
}

fn overload(path: Path, name: &str) {
    const QUEUE_KIB: u64 = 64;
    let dir = TestDir::new(name);
    let (db, db_url) = trace_db(&dir);
    let mut params = db_params(&db_url, path);
    params.push(modparam("queue_size", QUEUE_KIB));
    let proxy = Proxy::start(&dir, "127.0.0.1", &params, &Hooks::default());
    let rows = || count_trace_rows(&db);
    let mut placed = 0;
    let before = all_arrive(&dir, &proxy, &rows, &mut placed);
    let overload_calls = 5 * PHASE_CALLS;
    // The same calls with a sender that keeps up, for the memory that tm
    // and the rest of Kamailio take for them.
    let (shm_start, _) = shm_used(&proxy);
    let (unloaded, _, shm_unloaded) = load_sampled(&dir, &proxy, overload_calls);
    placed += overload_calls;
    assert!(unloaded.ok, "calls failed:\n{}", unloaded.log);
    quiesce(&proxy, &rows);
    // tm keeps finished transactions for a few seconds.
    wait_for(Duration::from_secs(20), || shm_used(&proxy).0 < shm_start + (256 << 10));
    let (shm_rested, _) = shm_used(&proxy);
    let rss_before = rss_kib(&proxy);

    // The sender stalls on a locked file while the calls go on.
    let other = rusqlite::Connection::open(&db).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let (overload, deepest, shm_overload) = load_sampled(&dir, &proxy, overload_calls);
    placed += overload_calls;
    assert!(overload.ok, "calls failed under overload:\n{}", overload.log);
    let rss_during = rss_kib(&proxy);
    other.execute_batch("ROLLBACK").unwrap();

    let (stored, dropped) = assert_all_accounted(&proxy, &rows, placed);
    let queue_full = proxy.stat("dropped_queue_full");
    assert!(queue_full > 0, "the full queue refused records");
    assert!(deepest <= QUEUE_KIB * 1024, "the queue held {deepest} bytes");
    // What was offered: every message of the overload, at the average
    // size the table shows.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let average: f64 = conn.query_row("SELECT avg(length(msg)) FROM sip_trace", [], |r| r.get(0)).unwrap();
    let offered = average * (overload_calls as usize * CALL_FLOW.len()) as f64;
    assert!(offered >= 10.0 * (QUEUE_KIB * 1024) as f64, "offered {offered} bytes");
    let shm_growth = shm_overload.saturating_sub(shm_rested);
    let shm_normal = shm_unloaded.saturating_sub(shm_start);
    assert!(
        shm_growth < shm_normal + (1 << 20),
        "shared memory grew by {shm_growth} bytes, against {shm_normal} when the sender kept up"
    );
    let rss_growth = rss_during
        .iter()
        .filter_map(|(pid, kib)| {
            rss_before.iter().find(|(p, _)| p == pid).map(|(_, b)| kib.saturating_sub(*b))
        })
        .max()
        .unwrap_or(0);
    assert!(rss_growth < 16 << 10, "a process grew by {rss_growth} KiB");
    assert_answer_times_flat(&before, &overload, "overload");
    println!(
        "figures: overload ({path:?}): {overload_calls} calls at {} /s offered {:.1}x the {QUEUE_KIB} KiB queue, all answered; \
         queue peak {deepest} bytes; {stored} rows stored, {dropped} dropped and counted ({}); shared memory \
         peak growth {} KiB (the same calls unloaded: {} KiB), largest process RSS growth {rss_growth} KiB; \
         answer median/p95 ms: before {:?}, overload {:?}",
        2 * RATE,
        offered / (QUEUE_KIB * 1024) as f64,
        drop_reasons(&proxy),
        shm_growth / 1024,
        shm_normal / 1024,
        answer_times(&before),
        answer_times(&overload)
    );
}
