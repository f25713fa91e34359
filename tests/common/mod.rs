//! Test harness: real Kamailio processes on free loopback ports, loading
//! the built module, driven by sipp, checked with independent decoders.
//! Every process it starts is killed when its handle is dropped.

#![allow(dead_code)]

pub mod calls;
pub mod diff;
pub mod http;

use std::collections::HashSet;
use std::fs::{self, File};
use std::net::{TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The server under test, from the environment, so that the same suite
/// runs against every supported Kamailio build; the defaults are Debian's
/// installed one. scripts/test.sh sets these for the 6.0 build.
fn env_path(var: &str, default: &str) -> String {
    std::env::var(var).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_string())
}

/// The `kamailio` binary (`KAMAILIO_BIN`).
pub fn kamailio_bin() -> String {
    env_path("KAMAILIO_BIN", "/usr/sbin/kamailio")
}

/// The `kamcmd` binary (`KAMCMD_BIN`).
pub fn kamcmd_bin() -> String {
    env_path("KAMCMD_BIN", "/usr/sbin/kamcmd")
}

/// The server's modules directory (`KAMAILIO_MODULES_DIR`), where the C
/// siptrace.so and every other module the tests load are.
pub fn modules_dir() -> String {
    env_path("KAMAILIO_MODULES_DIR", "/usr/lib/x86_64-linux-gnu/kamailio/modules")
}

/// The module under test: `SIPTRACE_MODULE` when set (an installed
/// package's, say), else the one cargo built for this test run. `cargo
/// test` leaves the cdylib beside the test executables in
/// target/<profile>/deps/; only `cargo build` copies it up to
/// target/<profile>/, where it may be stale.
pub fn module_path() -> PathBuf {
    if let Some(path) = std::env::var_os("SIPTRACE_MODULE").filter(|v| !v.is_empty()) {
        let so = PathBuf::from(path);
        assert!(so.exists(), "SIPTRACE_MODULE={} does not exist", so.display());
        return so;
    }
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("target/<profile>/deps");
    let so = deps.join("libsiptrace.so");
    assert!(so.exists(), "{} is missing; cargo builds it with the tests", so.display());
    so
}

/// A port that is free for UDP and TCP on 127.0.0.1 (and ::1 where the
/// machine has it), below the kernel's ephemeral range, and was not handed
/// out before in this test process.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    static RANGE: OnceLock<(u16, u16, bool)> = OnceLock::new();
    let &(low, high, v6) = RANGE.get_or_init(|| {
        let (low, high) = fixed_port_range();
        (low, high, UdpSocket::bind("[::1]:0").is_ok())
    });
    let span = (high - low) as usize;
    // Each test process starts somewhere else in the range, so that two
    // suites run at once rarely try the same ports.
    let seed = std::process::id() as usize * 7919;
    loop {
        let port = low + ((seed + NEXT.fetch_add(1, Ordering::Relaxed)) % span) as u16;
        let free = UdpSocket::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("127.0.0.1", port)).is_ok()
            && (!v6 || UdpSocket::bind(("::1", port)).is_ok() && TcpListener::bind(("::1", port)).is_ok());
        if !free {
            continue;
        }
        let mut given = GIVEN.lock().unwrap();
        if given.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
}

/// Ports below the kernel's ephemeral range. A port of a server the test
/// stops and starts again (a collector killed, PostgreSQL restarted) stays
/// free meanwhile: the kernel numbers client sockets from the ephemeral
/// range only, and this harness hands out each port once.
fn fixed_port_range() -> (u16, u16) {
    let ephemeral_low = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    (ephemeral_low.saturating_sub(12_000).max(1024), ephemeral_low)
}

/// A fresh directory for one test's configs, databases and logs. It is
/// kept after the run, for reading logs of a failure.
pub struct TestDir {
    pub path: PathBuf,
}

impl TestDir {
    pub fn new(name: &str) -> TestDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TestDir { path }
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

/// A Kamailio process started from a config; killed with its children on drop.
pub struct Kamailio {
    child: Child,
    pub name: String,
    pub ctl: PathBuf,
    pub log: PathBuf,
    /// Whether it loads our module, and so must not crash (`CrashWatch`).
    crashes: CrashWatch,
}

impl Kamailio {
    /// The pid of Kamailio's main process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Lines every test config starts with: the loopback listener, the module
/// path, and ctl for kamcmd on a socket of the test's own.
pub fn config_head(dir: &TestDir, name: &str, listen: &str) -> String {
    config_head_children(dir, name, listen, 2)
}

pub fn config_head_children(dir: &TestDir, name: &str, listen: &str, children: u32) -> String {
    format!(
        "#!KAMAILIO\n\
         debug=2\nlog_stderror=yes\nmemdbg=5\nmemlog=5\nchildren={children}\nauto_aliases=no\n\
         listen={listen}\n\
         mpath=\"{modules}\"\n\
         loadmodule \"ctl.so\"\n\
         modparam(\"ctl\", \"binrpc\", \"unix:{ctl}\")\n",
        ctl = dir.file(&format!("{name}.ctl")).display(),
        modules = modules_dir(),
    )
}

impl Kamailio {
    /// Starts Kamailio on `config` and waits until it answers RPC.
    pub fn start(dir: &TestDir, name: &str, config: &str) -> Kamailio {
        match Self::try_start(dir, name, config) {
            Ok(k) => k,
            Err((status, log)) => panic!("{name} did not start ({status:?}); its log:\n{log}"),
        }
    }

    /// Starts Kamailio; if it exits during startup, returns its exit status
    /// and log instead.
    pub fn try_start(
        dir: &TestDir,
        name: &str,
        config: &str,
    ) -> Result<Kamailio, (Option<ExitStatus>, String)> {
        let cfg = dir.file(&format!("{name}.cfg"));
        fs::write(&cfg, config).unwrap();
        let log = dir.file(&format!("{name}.log"));
        let crashes = CrashWatch::new(name, &dir.path, config);
        let child = Command::new(kamailio_bin())
            .args(["-f", cfg.to_str().unwrap(), "-DD", "-E", "-m", "64", "-M", "8"])
            // The working directory, where a core file would be written.
            .args(["-Y", dir.path.to_str().unwrap(), "-w", dir.path.to_str().unwrap()])
            .env("TZ", "UTC")
            .stdin(Stdio::null())
            .stdout(File::create(dir.file(&format!("{name}.out"))).unwrap())
            .stderr(File::create(&log).unwrap())
            .process_group(0)
            .spawn()
            .expect("spawn kamailio");
        let mut k =
            Kamailio { child, name: name.to_string(), ctl: dir.file(&format!("{name}.ctl")), log, crashes };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = k.child.try_wait() {
                return Err((Some(status), k.log_text()));
            }
            if k.ctl.exists() && k.try_rpc(&["core.uptime"]).is_ok() {
                return Ok(k);
            }
            if Instant::now() > deadline {
                return Err((None, k.log_text()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs an RPC command with kamcmd; the reply text, or the error text.
    pub fn try_rpc(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(kamcmd_bin())
            .arg("-s")
            .arg(format!("unix:{}", self.ctl.display()))
            .args(args)
            .output()
            .expect("run kamcmd");
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        if out.status.success() && !text.contains("error:") {
            Ok(text.trim().to_string())
        } else {
            Err(text)
        }
    }

    pub fn rpc(&self, args: &[&str]) -> String {
        self.try_rpc(args).unwrap_or_else(|e| panic!("{} rpc {args:?} failed: {e}", self.name))
    }

    /// One module statistic, read through RPC.
    pub fn stat(&self, name: &str) -> u64 {
        let text = self.rpc(&["stats.get_statistics", "siptrace:"]);
        // kamcmd prints one "siptrace:name = value" line per statistic.
        let prefix = format!("siptrace:{name} = ");
        text.lines()
            .find_map(|l| l.trim().strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no statistic {name} in: {text}"))
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops it; fails the test if it loads our module and crashed.
    pub fn stop(&mut self) {
        stop_group(&mut self.child);
        self.crashes.check(&self.log_text());
    }

    /// Kills every process of it at once (SIGKILL to its process group), as
    /// a crash would, and waits for it.
    pub fn kill(&mut self) {
        // SAFETY: signalling the process group this harness created.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
        // Its children may take a moment longer to go.
        std::thread::sleep(Duration::from_millis(500));
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether a server that loads our module crashed: a core file in its
/// working directory, or a crash in its log. A server that loads only the
/// C module under comparison is not checked (OpenSIPS 3.6.8's own tracer
/// aborts at shutdown in some tests, see doc/opensips.md).
pub struct CrashWatch {
    name: String,
    dir: PathBuf,
    ours: bool,
    cores_before: Vec<PathBuf>,
    checked: bool,
}

impl CrashWatch {
    /// For the server `name` started now in `dir` from `config`.
    pub fn new(name: &str, dir: &Path, config: &str) -> CrashWatch {
        CrashWatch {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            ours: loads_our_module(config),
            cores_before: core_files(dir),
            checked: false,
        }
    }

    /// Once the server stopped: panics, unless the thread already panics,
    /// if it loads our module and left a new core file or logged a crash.
    pub fn check(&mut self, log: &str) {
        if self.checked || !self.ours || std::thread::panicking() {
            return;
        }
        self.checked = true;
        let cores: Vec<PathBuf> =
            core_files(&self.dir).into_iter().filter(|c| !self.cores_before.contains(c)).collect();
        let signs = crash_signs(log);
        assert!(
            cores.is_empty() && signs.is_empty(),
            "{}, which loads our module, crashed: core files {cores:?}; in its log:\n{}",
            self.name,
            signs.join("\n")
        );
    }
}

/// Whether a server config loads our module (the one cargo built, or
/// SIPTRACE_MODULE), rather than only the C one it is compared with.
fn loads_our_module(config: &str) -> bool {
    let installed = std::env::var("SIPTRACE_MODULE").ok().filter(|m| !m.is_empty());
    config.contains("libsiptrace.so") || installed.is_some_and(|m| config.contains(&m))
}

/// The core files in `dir` (`core`, `core.<pid>`).
pub fn core_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            p.is_file()
                && (name == "core"
                    || name.strip_prefix("core.").is_some_and(|pid| pid.parse::<u32>().is_ok()))
        })
        .collect()
}

/// The lines of a server's log that tell of a crash: a process that died
/// of SIGILL, SIGABRT, SIGBUS, SIGFPE or SIGSEGV (as the server's main
/// process or our sender's supervisor reports it), a core dumped, the
/// memory manager aborting, or a panic our module caught.
pub fn crash_signs(log: &str) -> Vec<String> {
    const FATAL: [i32; 5] = [libc::SIGILL, libc::SIGABRT, libc::SIGBUS, libc::SIGFPE, libc::SIGSEGV];
    let killed_by = |line: &str, marker: &str| {
        line.split(marker).nth(1).and_then(|rest| {
            let digits: String = rest.trim_start().chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<i32>().ok()
        })
    };
    log.lines()
        .filter(|line| {
            ["exited by a signal", "was killed by signal"]
                .iter()
                .any(|m| killed_by(line, m).is_some_and(|sig| FATAL.contains(&sig)))
                || line.contains("core was generated")
                || line.contains("- aborting")
                || ["internal error at ", "recovered from an internal error", "on an internal error"]
                    .iter()
                    .any(|m| line.contains(m))
        })
        .map(str::to_string)
        .collect()
}

/// Stops a server started in a process group of its own: SIGTERM to the
/// group, then SIGKILL after 10 s.
pub fn stop_group(child: &mut Child) {
    let pgid = child.id() as i32;
    // SAFETY: signalling the process group this harness created.
    unsafe { libc::kill(-pgid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: as above.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let _ = child.wait();
}

/// A background sipp UAS that rings, then answers (tests/fixtures/uas.xml);
/// killed on drop.
pub struct SippUas {
    child: Child,
    pub port: u16,
}

impl SippUas {
    pub fn start(dir: &TestDir, ip: &str, port: u16) -> SippUas {
        Self::start_scenario(dir, ip, port, &fixture("uas.xml"), &[])
    }

    /// A UAS playing the sipp scenario file `scenario`, with `extra` sipp
    /// arguments (a transport, a call count).
    pub fn start_scenario(dir: &TestDir, ip: &str, port: u16, scenario: &Path, extra: &[&str]) -> SippUas {
        let child = Command::new("sipp")
            .args(["-sf", scenario.to_str().unwrap(), "-i", ip, "-p", &port.to_string()])
            .args(extra)
            .args(["-nostdin", "-nd"])
            .args([
                "-trace_err",
                "-error_file",
                dir.file(&format!("uas-{port}-errors.log")).to_str().unwrap(),
            ])
            .current_dir(&dir.path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(dir.file(&format!("uas-{port}.err"))).unwrap())
            .process_group(0)
            .spawn()
            .expect("spawn sipp uas");
        // sipp binds at once; give it a moment to open the socket.
        std::thread::sleep(Duration::from_millis(300));
        SippUas { child, port }
    }
}

impl Drop for SippUas {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The outcome of a sipp UAC run.
pub struct SippRun {
    pub ok: bool,
    pub output: String,
    /// The UAC's local port.
    pub port: u16,
}

/// Runs `calls` sipp UAC calls (INVITE, ACK, BYE) through `proxy`
/// ("ip:port") from `ip`.
pub fn sipp_calls(dir: &TestDir, ip: &str, proxy: &str, calls: u32, rate: u32) -> SippRun {
    let rate = rate.to_string();
    sipp_uac(dir, ip, proxy, free_port(), &["-sn", "uac", "-r", &rate, "-l", "50", "-d", "10"], calls, "60s")
}

/// Runs `calls` calls of a sipp UAC from `ip`:`port` to `proxy` ("ip:port"),
/// with `scenario` naming what it plays and how (`-sn uac`, or `-sf` and a
/// file, a rate, a transport); fails the run after `timeout` (sipp's syntax).
pub fn sipp_uac(
    dir: &TestDir,
    ip: &str,
    proxy: &str,
    port: u16,
    scenario: &[&str],
    calls: u32,
    timeout: &str,
) -> SippRun {
    let out = Command::new("sipp")
        .args(scenario)
        .args([proxy, "-i", ip, "-p", &port.to_string()])
        .args(["-m", &calls.to_string()])
        .args(["-timeout", timeout, "-timeout_error", "-nostdin", "-nd"])
        .args(["-trace_err", "-error_file", dir.file(&format!("uac-{port}-errors.log")).to_str().unwrap()])
        .current_dir(&dir.path)
        .stdin(Stdio::null())
        .output()
        .expect("run sipp uac");
    let output = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    SippRun { ok: out.status.success(), output, port }
}

/// Waits until `probe` returns true or `timeout` passes.
pub fn wait_for(timeout: Duration, mut probe: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if probe() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The sip_trace schema this project ships, applied to a new SQLite file.
pub fn sqlite_with_schema(path: &Path, schema: &str) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(schema).unwrap();
    conn
}

pub fn project_file(rel: &str) -> String {
    fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

/// A HEP collector: a second Kamailio running Debian's sipcapture module,
/// which stores every SIP packet it decodes into an SQLite table.
pub struct Sipcapture {
    pub kamailio: Kamailio,
    pub ip: String,
    pub port: u16,
    db: PathBuf,
}

/// An IP as it appears in a URI or listen line: IPv6 in brackets.
pub fn host_in_uri(ip: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    }
}

/// One packet as sipcapture decoded and stored it.
#[derive(Debug, Clone)]
pub struct Captured {
    pub src_ip: String,
    pub src_port: u16,
    pub dst_ip: String,
    pub dst_port: u16,
    /// Kamailio's protocol number (1 UDP, 2 TCP, ...), from HEP chunk 2.
    pub proto: i64,
    pub family: i64,
    /// Request method, or the status code of a reply.
    pub method: String,
    pub cseq: String,
    pub callid: String,
    pub from_tag: String,
    pub to_tag: String,
    pub correlation_id: String,
    /// "homer01:<capture id>".
    pub node: String,
    pub date: String,
    pub micro_ts: i64,
    pub msg: Vec<u8>,
}

/// What sipcapture needs to read HEP frames on TCP and TLS connections:
/// the core's HEP framing, and the non-SIP hook that hands each frame to
/// sipcapture, whose event route lets it on to the routes as SIP.
const STREAM_HEP: &str = "tcp_accept_hep3=yes\ntcp_accept_no_cl=yes\n\
    modparam(\"sipcapture\", \"nonsip_hook\", 1)\n\
    event_route[sipcapture:request] { return 1; }\n";

/// How a collector listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CollectorTransport {
    Udp,
    Tcp,
    /// With a certificate for 127.0.0.1 signed by the test's own CA.
    Tls,
}

impl Sipcapture {
    /// A UDP collector; `ip` is "127.0.0.1" or "::1".
    pub fn start(dir: &TestDir, ip: &str) -> Sipcapture {
        Self::start_on(dir, ip, CollectorTransport::Udp, free_port())
    }

    /// A collector on a given transport and port (to restart one in place).
    pub fn start_on(dir: &TestDir, ip: &str, transport: CollectorTransport, port: u16) -> Sipcapture {
        let db = dir.file("capture.db");
        if !db.exists() {
            let conn = sqlite_with_schema(&db, &fs::read_to_string(fixture("sip_capture.sql")).unwrap());
            // sipcapture's db_sqlite waits for no reader: in WAL mode the
            // test's polling never blocks its inserts.
            conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(())).unwrap();
        }
        let host = host_in_uri(ip);
        let (listen, transport_config) = match transport {
            CollectorTransport::Udp => (format!("udp:{host}:{port}"), String::new()),
            CollectorTransport::Tcp => (format!("tcp:{host}:{port}"), STREAM_HEP.to_string()),
            CollectorTransport::Tls => {
                let certs = test_certificates(dir);
                let tls_cfg = dir.file("collector-tls.cfg");
                fs::write(
                    &tls_cfg,
                    format!(
                        "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\n\
                         private_key = {}\ncertificate = {}\n",
                        certs.server_key.display(),
                        certs.server_cert.display()
                    ),
                )
                .unwrap();
                (
                    format!("tls:{host}:{port}"),
                    format!(
                        "enable_tls=yes\nloadmodule \"tls.so\"\nmodparam(\"tls\", \"config\", \"{}\")\n{STREAM_HEP}",
                        tls_cfg.display()
                    ),
                )
            }
        };
        // One worker: db_sqlite has no busy timeout, so two writers collide.
        let config = config_head_children(dir, "collector", &listen, 1)
            + &format!(
                "loadmodule \"db_sqlite.so\"\n\
                 loadmodule \"sipcapture.so\"\n\
                 modparam(\"sipcapture\", \"db_url\", \"sqlite:///{db}\")\n\
                 modparam(\"sipcapture\", \"capture_on\", 1)\n\
                 modparam(\"sipcapture\", \"hep_capture_on\", 1)\n",
                db = db.display()
            )
            + &transport_config
            + "request_route { sip_capture(); exit; }\nonreply_route { sip_capture(); drop; }\n";
        let kamailio = Kamailio::start(dir, "collector", &config);
        Sipcapture { kamailio, ip: ip.to_string(), port, db }
    }

    /// The SIP URI to give `duplicate_uri` or `sip_trace()`.
    pub fn uri(&self) -> String {
        format!("sip:{}:{}", host_in_uri(&self.ip), self.port)
    }

    pub fn count(&self) -> usize {
        let conn = rusqlite::Connection::open(&self.db).unwrap();
        conn.query_row("SELECT COUNT(*) FROM sip_capture", [], |r| r.get::<_, i64>(0)).unwrap() as usize
    }

    /// Waits until `expected` packets are stored, then a little longer to
    /// catch any extra ones, and returns them all.
    pub fn wait_for_packets(&self, expected: usize) -> Vec<Captured> {
        wait_for(Duration::from_secs(20), || self.count() >= expected);
        std::thread::sleep(Duration::from_millis(500));
        self.packets()
    }

    pub fn packets(&self) -> Vec<Captured> {
        let conn = rusqlite::Connection::open(&self.db).unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT source_ip, source_port, destination_ip, destination_port, proto, family, method, \
                 cseq, callid, from_tag, to_tag, correlation_id, node, date, micro_ts, msg \
                 FROM sip_capture ORDER BY id",
            )
            .unwrap();
        let rows = stmt
            .query_map([], |r| {
                Ok(Captured {
                    src_ip: r.get(0)?,
                    src_port: r.get(1)?,
                    dst_ip: r.get(2)?,
                    dst_port: r.get(3)?,
                    proto: r.get(4)?,
                    family: r.get(5)?,
                    method: r.get(6)?,
                    cseq: r.get(7)?,
                    callid: r.get(8)?,
                    from_tag: r.get(9)?,
                    to_tag: r.get(10)?,
                    correlation_id: r.get(11)?,
                    node: r.get(12)?,
                    date: r.get(13)?,
                    micro_ts: r.get(14)?,
                    msg: blob_or_text(r, 15)?,
                })
            })
            .unwrap();
        rows.map(Result::unwrap).collect()
    }
}

/// db_sqlite stores DB1_BLOB values as BLOB and strings as TEXT.
pub fn blob_or_text(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<Vec<u8>> {
    use rusqlite::types::ValueRef;
    Ok(match row.get_ref(idx)? {
        ValueRef::Blob(b) => b.to_vec(),
        ValueRef::Text(t) => t.to_vec(),
        ValueRef::Null => Vec::new(),
        other => format!("{other:?}").into_bytes(),
    })
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A row of our `sip_trace` table. db_sqlite stores the time as a Julian
/// day number; it is read as text, the form sipcapture's TEXT column has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceRow {
    pub time_stamp: String,
    pub time_us: i64,
    pub callid: String,
    pub traced_user: String,
    pub msg: Vec<u8>,
    pub method: String,
    pub status: String,
    pub fromip: String,
    pub toip: String,
    pub fromtag: String,
    pub totag: String,
    pub direction: String,
}

pub fn trace_rows(db: &Path) -> Vec<TraceRow> {
    read_trace_rows(db, false)
}

/// The sip_trace rows, in insertion order. A NULL tag is an error, unless
/// `null_tags_as_empty` (for a schema that lets NULL in, see diff.rs).
pub fn read_trace_rows(db: &Path, null_tags_as_empty: bool) -> Vec<TraceRow> {
    let tag = |r: &rusqlite::Row<'_>, idx: usize| -> rusqlite::Result<String> {
        if null_tags_as_empty {
            Ok(r.get::<_, Option<String>>(idx)?.unwrap_or_default())
        } else {
            r.get(idx)
        }
    };
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT CAST(time_stamp AS TEXT), time_us, callid, traced_user, msg, method, status, fromip, toip, \
             fromtag, totag, direction FROM sip_trace ORDER BY id",
        )
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok(TraceRow {
                time_stamp: r.get(0)?,
                time_us: r.get(1)?,
                callid: r.get(2)?,
                traced_user: r.get(3)?,
                msg: blob_or_text(r, 4)?,
                method: r.get(5)?,
                status: r.get(6)?,
                fromip: r.get(7)?,
                toip: r.get(8)?,
                fromtag: tag(r, 9)?,
                totag: tag(r, 10)?,
                direction: r.get(11)?,
            })
        })
        .unwrap();
    rows.map(Result::unwrap).collect()
}

pub fn count_trace_rows(db: &Path) -> usize {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("SELECT COUNT(*) FROM sip_trace", [], |r| r.get::<_, i64>(0)).unwrap() as usize
}

/// Where script calls to sip_trace() go in the test proxy's routes.
#[derive(Default)]
pub struct Hooks<'a> {
    pub on_request: &'a str,
    pub on_reply: &'a str,
    pub on_send: &'a str,
}

/// A proxy config: tm with record_route, relaying every request to the UAS
/// (in-dialog ones by their route set when they carry one), with the built module
/// loaded under the `siptrace` name and given `modparams`.
pub fn proxy_config(
    dir: &TestDir,
    ip: &str,
    port: u16,
    uas_port: u16,
    modparams: &str,
    hooks: &Hooks<'_>,
) -> String {
    let host = host_in_uri(ip);
    let setup = ProxySetup {
        module: &module_path(),
        listen: &[format!("udp:{host}:{port}")],
        uas_uri: &format!("sip:{host}:{uas_port}"),
        children: 2,
    };
    proxy_config_for(dir, &setup, modparams, hooks)
}

/// What a test proxy's config is built on, besides its parameters and hooks.
pub struct ProxySetup<'a> {
    /// The siptrace module to load: ours, or another build of `siptrace`.
    pub module: &'a Path,
    /// Its sockets, as `listen` takes them: "udp:127.0.0.1:5060".
    pub listen: &'a [String],
    /// Where it relays requests: "sip:127.0.0.1:5070;transport=tcp".
    pub uas_uri: &'a str,
    /// Worker processes per UDP socket (and TCP workers).
    pub children: u32,
}

/// The proxy config of [`proxy_config`], for any module, sockets and UAS.
pub fn proxy_config_for(dir: &TestDir, setup: &ProxySetup<'_>, modparams: &str, hooks: &Hooks<'_>) -> String {
    config_head_children(dir, "proxy", &setup.listen.join("\nlisten="), setup.children)
        + &format!(
            r#"loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "siputils.so"
loadmodule "textops.so"
loadmodule "kex.so"
loadmodule "db_sqlite.so"
loadmodule "db_postgres.so"
loadmodule "{module}"
{modparams}
request_route {{
    {on_request}
    if (has_totag()) {{
        # sipp's built-in UAC sends in-dialog requests without the route set.
        if (!loose_route()) {{ $du = "{uas_uri}"; }}
        t_relay();
        exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    record_route();
    $du = "{uas_uri}";
    t_relay();
}}
{on_reply}{on_send}"#,
            module = setup.module.display(),
            uas_uri = setup.uas_uri,
            on_request = hooks.on_request,
            on_reply = route_block("onreply_route", hooks.on_reply),
            on_send = route_block("onsend_route", hooks.on_send),
        )
}

/// A route block, or nothing: Kamailio refuses an empty one.
fn route_block(name: &str, body: &str) -> String {
    if body.trim().is_empty() {
        String::new()
    } else {
        format!("{name} {{\n    {body}\n}}\n")
    }
}

/// Kamailio 6.0 refuses to read a message of 32767 bytes or more
/// (`msg_recv_max_size`, which 5.6 does not have): tests that send larger
/// ones raise the limit with this line, so that they reach the module as
/// on 5.6.
#[cfg(kamailio_6_0)]
pub const RECEIVE_LIMIT: &str = "msg_recv_max_size=262144\n";
#[cfg(not(kamailio_6_0))]
pub const RECEIVE_LIMIT: &str = "";

/// The dialog module, and the script code that makes it create the dialog
/// of the initial INVITE being routed, after the code before it. Kamailio
/// 5.6 creates it at `t_relay()` for a request with `dlg_flag` set; 6.0
/// dropped `dlg_flag`, and `dlg_manage()` creates it at once.
#[cfg(kamailio_6_0)]
pub const DIALOG_MODULE: &str = "loadmodule \"dialog.so\"\n";
#[cfg(kamailio_6_0)]
pub const CREATE_DIALOG: &str = "dlg_manage();";
#[cfg(not(kamailio_6_0))]
pub const DIALOG_MODULE: &str = "loadmodule \"dialog.so\"\nmodparam(\"dialog\", \"dlg_flag\", 4)\n";
#[cfg(not(kamailio_6_0))]
pub const CREATE_DIALOG: &str = "setflag(4);";

/// A modparam line for the module under test.
pub fn modparam(name: &str, value: impl std::fmt::Display) -> String {
    let v = value.to_string();
    if v.parse::<i64>().is_ok() {
        format!("modparam(\"siptrace\", \"{name}\", {v})\n")
    } else {
        format!("modparam(\"siptrace\", \"{name}\", \"{v}\")\n")
    }
}

/// A new SQLite file with the project's sip_trace schema, and its db_url.
pub fn trace_db(dir: &TestDir) -> (PathBuf, String) {
    let db = dir.file("trace.db");
    sqlite_with_schema(&db, &project_file("sql/sqlite.sql"));
    let url = format!("sqlite:///{}", db.display());
    (db, url)
}

/// A HEP listener that decodes with the hep-js library (tests/hepjs);
/// killed on drop.
pub struct HepJs {
    child: Child,
    pub port: u16,
    out: PathBuf,
}

impl HepJs {
    pub fn start(dir: &TestDir) -> HepJs {
        HepJs::start_with(dir, &[])
    }

    /// With `mode` ["tcp"] or ["tls", cert, key], the listener takes HEPv3
    /// over TCP or TLS connections instead of datagrams.
    pub fn start_with(dir: &TestDir, mode: &[&str]) -> HepJs {
        let hepjs = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hepjs");
        assert!(
            hepjs.join("node_modules/hep-js").exists(),
            "hep-js is not installed; run scripts/setup-debian.sh (npm ci in tests/hepjs)"
        );
        let port = free_port();
        let out = dir.file(&format!("hepjs-{port}.jsonl"));
        let child = Command::new("node")
            .arg(hepjs.join("listen.js"))
            .args(["127.0.0.1", &port.to_string()])
            .args(mode)
            .stdout(File::create(&out).unwrap())
            .stderr(File::create(dir.file(&format!("hepjs-{port}.err"))).unwrap())
            .spawn()
            .expect("spawn node");
        let listener = HepJs { child, port, out };
        assert!(
            wait_for(Duration::from_secs(10), || fs::read_to_string(&listener.out)
                .is_ok_and(|t| t.contains("listening"))),
            "hep-js listener did not start"
        );
        listener
    }

    pub fn uri(&self) -> String {
        format!("sip:127.0.0.1:{}", self.port)
    }

    /// The packets received so far, one JSON object each.
    pub fn packets(&self) -> Vec<serde_json::Value> {
        fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v.get("listening").is_none())
            .collect()
    }

    pub fn wait_for_packets(&self, expected: usize) -> Vec<serde_json::Value> {
        wait_for(Duration::from_secs(20), || self.packets().len() >= expected);
        std::thread::sleep(Duration::from_millis(500));
        self.packets()
    }
}

impl Drop for HepJs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private PostgreSQL server for one test, in the test's directory, on
/// a free port, with trust authentication; stopped on drop.
pub struct Postgres {
    child: Child,
    pub port: u16,
    bin: PathBuf,
}

fn running_as_root() -> bool {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() == 0 }
}

/// Runs a PostgreSQL program, as the postgres user when this is root
/// (the server refuses to run as root).
fn pg_command(bin: &Path, program: &str) -> Command {
    if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(program));
        c
    } else {
        Command::new(bin.join(program))
    }
}

impl Postgres {
    pub fn start(dir: &TestDir) -> Postgres {
        let bin = fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.path().join("bin"))
                    .filter(|p| p.join("initdb").exists())
                    .max()
            })
            .expect("PostgreSQL server binaries are missing; run scripts/setup-debian.sh");
        let data = dir.file("pgdata");
        fs::create_dir_all(&data).unwrap();
        if running_as_root() {
            let ok = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&data).status().unwrap();
            assert!(ok.success());
        }
        let init = pg_command(&bin, "initdb")
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync", "-D"])
            .arg(&data)
            .output()
            .unwrap();
        assert!(init.status.success(), "initdb: {}", String::from_utf8_lossy(&init.stderr));
        let port = free_port();
        let child = Self::spawn(dir, &bin, port);
        let pg = Postgres { child, port, bin };
        pg.wait_until_up(dir);
        pg
    }

    fn spawn(dir: &TestDir, bin: &Path, port: u16) -> Child {
        let data = dir.file("pgdata");
        pg_command(bin, "postgres")
            .args(["-p", &port.to_string(), "-k"])
            .arg(&data)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-D"])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(fs::OpenOptions::new().create(true).append(true).open(dir.file("postgres.log")).unwrap())
            .process_group(0)
            .spawn()
            .expect("spawn postgres")
    }

    fn wait_until_up(&self, dir: &TestDir) {
        assert!(
            wait_for(Duration::from_secs(30), || self.try_psql("postgres", "SELECT 1").is_ok()),
            "PostgreSQL did not start; see {}",
            dir.file("postgres.log").display()
        );
    }

    /// Stops the server (a fast shutdown, which closes every connection).
    pub fn stop(&mut self) {
        // SAFETY: the process group this harness created; SIGINT is a fast shutdown.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the stopped server again, on the same port and data.
    pub fn start_again(&mut self, dir: &TestDir) {
        self.child = Self::spawn(dir, &self.bin, self.port);
        self.wait_until_up(dir);
    }

    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-d", db])
            .args(["-v", "ON_ERROR_STOP=1", "-X", "-A", "-t", "-F", "|", "-c", sql])
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.try_psql(db, sql).unwrap_or_else(|e| panic!("psql: {e}"))
    }

    /// Creates database `name` with the project's sip_trace schema and
    /// returns its db_url.
    pub fn trace_database(&self, name: &str) -> String {
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.psql(name, &project_file("sql/postgres.sql"));
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A CA and a server certificate for 127.0.0.1 it signed, made with openssl.
pub struct Certificates {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

pub fn test_certificates(dir: &TestDir) -> Certificates {
    let certs = Certificates {
        ca_cert: dir.file("ca.pem"),
        server_cert: dir.file("server.pem"),
        server_key: dir.file("server.key"),
    };
    if certs.server_cert.exists() {
        return certs;
    }
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(&dir.path).output().expect("run openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=siptrace-rs test CA"]
        .iter()
        .copied()
        .chain(["-keyout", "ca.key", "-out", "ca.pem"])
        .collect::<Vec<_>>());
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    fs::write(dir.file("san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    ]);
    certs
}
