//! Differential runs: one sipp scenario through a real Kamailio proxy twice,
//! once with Debian's C `siptrace` module and once with ours, under the same
//! config (but for the `loadmodule` line, the ports and the file paths),
//! tracing to SQLite through db_sqlite and to a hep-js HEP listener; then
//! the rows and packets of the two runs are compared after normalization.
//!
//! What is compared:
//! - rows: every column except `id`, `time_stamp` and `time_us`, as a sorted
//!   multiset; `msg` byte for byte. Not its SQLite storage class: the C
//!   module binds it as a blob, ours as text (a documented difference).
//! - HEP packets: the chunk list in order (vendor, type), and the value of
//!   every chunk except those of the timestamps (0x0009 seconds, 0x000a
//!   microseconds; their length is compared), as a sorted multiset; and
//!   what hep-js, the independent decoder, made of each, minus the same two
//!   timestamps. Every packet must decode with hep-js.
//! - the counts of both.
//!
//! Normalizations, each applied to both runs alike:
//! - Ports. Every run takes free ports of its own, so a port is replaced by
//!   the role of its owner (`<UAC>`, `<proxy>`, `<UAS>`, `<HEP>`) where it
//!   appears: in `fromip`/`toip`, in HEP chunks 0x0007 and 0x0008, and in
//!   the SIP text after `127.0.0.1:` (Via, Contact, Record-Route, Route,
//!   request URIs), only where the digits are exactly one of those ports.
//!   Over TCP, a port no role owns (a connection's ephemeral end) is named
//!   by the role at the other end of the same message, `<ephemeral, peer
//!   UAS>`, in `fromip`/`toip` and chunks 0x0007/0x0008 only. Any other
//!   port is left as it is, and shows as a difference.
//! - Hashes Kamailio computes over data that includes those ports: the MD5
//!   in tm's Via branches and the To tags of the replies sl and tm make.
//!   They are renamed consistently within each run (see
//!   [`relabel_kamailio_hashes`]). Call-IDs, tags and branches of the UAs
//!   are fixed by the scenarios, so they need none.
//! - HEP chunk 0x0011: ours sends the Call-ID as correlation id when the
//!   script gives none; C then sends no chunk 0x0011 (a documented,
//!   deliberate difference). A packet of ours matches a C packet without
//!   0x0011 only if that is the whole difference and the value is exactly
//!   the Call-ID of its payload; such matches are counted and printed.
//!   Where C sends a correlation id, ours must send the same.
//! - The `totag` column of what Kamailio sends in transaction mode: the C
//!   module takes it from the request (its 200 to a CANCEL, its ACK of a
//!   negative reply, sl's replies to a REGISTER: '' where the request has
//!   no To tag), ours from the message stored in `msg` (a documented,
//!   deliberate difference). A row of ours matches a C row whose `totag`
//!   is '' only if that is the whole difference and ours is exactly the
//!   To tag of its own `msg`; such matches are counted and printed.
//! - SQL NULL in C's tag columns reads as '' (see [`c_trace_db`]).
//!
//! `SIPTRACE_DIFF_ONLY_C=1` runs the C side alone, checks its expected
//! counts and prints what it traced: for trying a scenario out
//! (`cargo test --test differential -- --include-ignored --nocapture`).

use super::*;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

/// The C module of the server under test: Debian's from the kamailio
/// package on 5.6, the one built from the same tree on 6.0.
pub fn c_module() -> PathBuf {
    Path::new(&modules_dir()).join("siptrace.so")
}

/// The capture id both configs set.
pub const CAPTURE_ID: u32 = 2468;

/// In a scenario's hooks, replaced by the URI of the run's HEP listener.
pub const HEP_URI: &str = "@HEP_URI@";

const IP: &str = "127.0.0.1";

/// Which module a run loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    C,
    Ours,
}

impl Side {
    pub fn module(self) -> PathBuf {
        match self {
            Side::C => c_module(),
            Side::Ours => module_path(),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Side::C => "C",
            Side::Ours => "ours",
        }
    }
}

/// The transport of the UAC, the proxy and the UAS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    /// sipp's `-t`: one socket for all calls.
    fn sipp(self) -> &'static str {
        match self {
            Transport::Udp => "u1",
            Transport::Tcp => "t1",
        }
    }
}

/// One scenario, run the same way for both modules.
pub struct Scenario<'a> {
    pub name: &'a str,
    pub transport: Transport,
    /// The sipp UAC scenario (XML).
    pub uac: &'a str,
    /// The sipp UAS scenario behind the proxy, when the proxy relays.
    pub uas: Option<&'a str>,
    /// Calls, one after the other.
    pub calls: u32,
    /// Module parameters besides those of every run (`trace_on`, `db_url`,
    /// `duplicate_uri`, `hep_version` 3 and `hep_capture_id`).
    pub modparams: Vec<String>,
    /// Script code; [`HEP_URI`] in it stands for the run's HEP listener.
    pub hooks: Hooks<'a>,
    /// Rows and HEP packets the C module is expected to produce: proof
    /// that the scenario ran as designed, so that an empty or broken run
    /// cannot pass as "no difference".
    pub expect_rows: usize,
    pub expect_hep: usize,
    /// Script code the C module's run uses instead of `hooks`, where the C
    /// module fails the scenario's own form (a documented bug of C's):
    /// code that means the same to it.
    pub c_hooks: Option<Hooks<'a>>,
    /// Messages ours traces and the C module misses (a documented
    /// difference): the start of their key, and how many of them there are
    /// per call, as rows and as HEP packets.
    pub extra_in_ours: Option<(&'a str, usize)>,
    /// What the proxy's UDP socket advertises (`listen=... advertise
    /// <this>`), if anything.
    pub advertise: Option<&'a str>,
}

impl Default for Scenario<'_> {
    /// An empty scenario, for `..Default::default()` after the fields a
    /// scenario sets.
    fn default() -> Self {
        Scenario {
            name: "",
            transport: Transport::Udp,
            uac: "",
            uas: None,
            calls: 1,
            modparams: Vec::new(),
            hooks: Hooks::default(),
            expect_rows: 0,
            expect_hep: 0,
            c_hooks: None,
            extra_in_ours: None,
            advertise: None,
        }
    }
}

/// The ports of one run and the roles they stand for.
#[derive(Debug, Clone)]
pub struct PortMap {
    pub uac: u16,
    pub proxy: u16,
    pub uas: u16,
    pub hep: u16,
    /// Whether a port no role owns may be a TCP connection's ephemeral
    /// end; over UDP every port must have a role.
    pub ephemeral: bool,
}

impl PortMap {
    pub fn role(&self, port: u16) -> Option<&'static str> {
        [(self.uac, "<UAC>"), (self.proxy, "<proxy>"), (self.uas, "<UAS>"), (self.hep, "<HEP>")]
            .into_iter()
            .find_map(|(p, role)| (p == port).then_some(role))
    }

    /// A port of a message from or to `peer`: its role; over TCP, for a
    /// port no role owns, the role of the other end of the same message;
    /// otherwise the port itself, which then differs between the runs.
    pub fn endpoint(&self, port: u16, peer: Option<u16>) -> String {
        match (self.role(port), peer.and_then(|p| self.role(p))) {
            (Some(role), _) => role.to_string(),
            (None, Some(peer_role)) if self.ephemeral => {
                format!("<ephemeral, peer {}>", peer_role.trim_matches(['<', '>']))
            }
            _ => port.to_string(),
        }
    }
}

/// What one run left behind.
pub struct RunOutput {
    pub side: Side,
    pub dir: PathBuf,
    pub ports: PortMap,
    pub rows: Vec<TraceRow>,
    pub packets: Vec<Value>,
}

/// Runs `scenario` with one module: a hep-js listener, a fresh SQLite
/// database, the sipp UAS, the proxy, then the sipp UAC; stops the proxy
/// (ours writes what it still holds then) and collects rows and packets.
pub fn run(side: Side, scenario: &Scenario<'_>) -> RunOutput {
    let dir = TestDir::new(&format!("diff-{}-{}", scenario.name, side.label()));
    let hep = HepJs::start(&dir);
    let (db, db_url) = match side {
        Side::Ours => trace_db(&dir),
        Side::C => c_trace_db(&dir),
    };
    let transport = scenario.transport;
    let ports = PortMap {
        uac: free_port(),
        proxy: free_port(),
        uas: free_port(),
        hep: hep.port,
        ephemeral: transport == Transport::Tcp,
    };
    let calls = scenario.calls.to_string();

    let _uas = scenario.uas.map(|xml| {
        let path = dir.file("uas.xml");
        fs::write(&path, xml).unwrap();
        SippUas::start_scenario(&dir, IP, ports.uas, &path, &["-t", transport.sipp(), "-m", &calls])
    });

    let advertise = scenario.advertise.map(|a| format!(" advertise {a}")).unwrap_or_default();
    let mut listen = vec![format!("udp:{IP}:{}{advertise}", ports.proxy)];
    if transport == Transport::Tcp {
        // UDP stays: the C module sends HEP from a UDP socket of Kamailio's.
        listen.push(format!("tcp:{IP}:{}", ports.proxy));
    }
    let uas_uri = match transport {
        Transport::Udp => format!("sip:{IP}:{}", ports.uas),
        Transport::Tcp => format!("sip:{IP}:{};transport=tcp", ports.uas),
    };
    let modparams = [
        modparam("trace_on", 1),
        modparam("hep_version", 3),
        modparam("hep_capture_id", CAPTURE_ID),
        modparam("duplicate_uri", hep.uri()),
        modparam("db_url", &db_url),
    ]
    .concat()
        + &scenario
            .modparams
            .iter()
            // Which writer stores our rows is ours alone to say.
            .filter(|p| side == Side::Ours || !p.contains("\"db_native\""))
            .cloned()
            .collect::<String>();
    // tm's first retransmission after 2 s rather than 0.5 s: a
    // retransmission in one run only, on a busy machine, would show as a
    // difference.
    let modparams = modparams + "modparam(\"tm\", \"retr_timer1\", 2000)\n";
    let hep_uri = hep.uri();
    let with_uri = |hook: &str| hook.replace(HEP_URI, &hep_uri);
    let scenario_hooks = match (side, &scenario.c_hooks) {
        (Side::C, Some(hooks)) => hooks,
        _ => &scenario.hooks,
    };
    let (on_request, on_reply, on_send) = (
        with_uri(scenario_hooks.on_request),
        with_uri(scenario_hooks.on_reply),
        with_uri(scenario_hooks.on_send),
    );
    let hooks = Hooks { on_request: &on_request, on_reply: &on_reply, on_send: &on_send };
    // One worker: the C module writes rows from the workers, and db_sqlite
    // has no busy timeout, so two workers writing at once would lose rows.
    let setup = ProxySetup { module: &side.module(), listen: &listen, uas_uri: &uas_uri, children: 1 };
    let mut proxy = Kamailio::start(&dir, "proxy", &proxy_config_for(&dir, &setup, &modparams, &hooks));

    let uac_xml = dir.file("uac.xml");
    fs::write(&uac_xml, scenario.uac).unwrap();
    // One call at a time. sipp matches replies to calls by Call-ID, so it
    // must make them: "call-1@siptrace-rs.test", ... ([call_id] in the
    // scenarios).
    let uac_args = ["-sf", uac_xml.to_str().unwrap(), "-t", transport.sipp(), "-l", "1", "-r", "50"];
    let uac_args = [&uac_args[..], &["-cid_str", "call-%u@siptrace-rs.test"]].concat();
    let uac =
        sipp_uac(&dir, IP, &format!("{IP}:{}", ports.proxy), ports.uac, &uac_args, scenario.calls, "15s");
    assert!(
        uac.ok,
        "{}: sipp UAC failed with the {} module:\n{}\nproxy log:\n{}",
        scenario.name,
        side.label(),
        uac.output,
        proxy.log_text()
    );
    // The last reply reached the UAC a moment before the C module, which
    // traces after sending, has written its row.
    std::thread::sleep(Duration::from_millis(300));
    proxy.stop();

    // Kamailio is gone; what it sent is in the listener's socket buffer.
    let mut packets = hep.packets();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = hep.packets();
        if now.len() == packets.len() || Instant::now() > deadline {
            packets = now;
            break;
        }
        packets = now;
    }
    RunOutput { side, dir: dir.path.clone(), ports, rows: read_trace_rows(&db, side == Side::C), packets }
}

/// The C module gives db_sqlite a missing tag (the To tag of an initial
/// request, say) as an empty string with a NULL pointer, meant as '' (it
/// sets `nul` = 0); db_sqlite binds that as SQL NULL (`sqlite3_bind_text(s,
/// 0)` in its dbase.c), which the NOT NULL tag columns of sql/sqlite.sql,
/// Kamailio's own SQLite schema too, refuse: the C module loses every such
/// row. The C side therefore gets the project's schema with NOT NULL
/// dropped from the two tag columns, and [`read_trace_rows`] reads a NULL there
/// as ''. Ours keeps the project's schema unchanged, so a NULL of ours
/// could not pass as ''.
fn c_trace_db(dir: &TestDir) -> (PathBuf, String) {
    let db = dir.file("trace.db");
    let mut schema = project_file("sql/sqlite.sql");
    for column in ["fromtag", "totag"] {
        let strict = format!("{column} VARCHAR(128) DEFAULT '' NOT NULL");
        assert!(schema.contains(&strict), "sql/sqlite.sql lacks `{strict}`");
        schema = schema.replace(&strict, &format!("{column} VARCHAR(128) DEFAULT ''"));
    }
    sqlite_with_schema(&db, &schema);
    let url = format!("sqlite:///{}", db.display());
    (db, url)
}

/// Runs `scenario` with both modules and fails with a readable report if
/// their rows or HEP packets differ. Returns our run, whose output then
/// equals C's (none with `SIPTRACE_DIFF_ONLY_C`), for a test to check
/// what the scenario is about.
pub fn differential(scenario: &Scenario<'_>) -> Option<RunOutput> {
    let c = run(Side::C, scenario);
    let (c_rows, c_packets) = items(&c.rows, &c.packets, &c.ports);
    let only_c = std::env::var_os("SIPTRACE_DIFF_ONLY_C").is_some();
    if only_c {
        eprintln!(
            "== {}: the C module's {} rows and {} HEP packets ({})",
            scenario.name,
            c_rows.len(),
            c_packets.len(),
            c.dir.display()
        );
        for item in c_rows.iter().chain(&c_packets) {
            eprintln!("{}\n", item.render);
        }
    }
    assert!(
        c.rows.len() == scenario.expect_rows && c.packets.len() == scenario.expect_hep,
        "{}: the C module traced {} rows and {} HEP packets, the scenario expects {} and {}; see {}",
        scenario.name,
        c.rows.len(),
        c.packets.len(),
        scenario.expect_rows,
        scenario.expect_hep,
        c.dir.display()
    );
    assert_hepjs_decoded(&c);
    if only_c {
        return None;
    }

    let ours = run(Side::Ours, scenario);
    assert_hepjs_decoded(&ours);
    let (ours_rows, ours_packets) = items(&ours.rows, &ours.packets, &ours.ports);
    let mut report = String::new();
    let extra = |items: Vec<Item>, what: &str| match scenario.extra_in_ours {
        None => items,
        Some((prefix, per_call)) => {
            let (extra, rest): (Vec<Item>, Vec<Item>) =
                items.into_iter().partition(|i| i.key.starts_with(prefix));
            let expected = per_call * scenario.calls as usize;
            assert_eq!(
                extra.len(),
                expected,
                "{}: ours should trace {expected} {what} starting '{prefix}' that C misses",
                scenario.name
            );
            eprintln!(
                "{}: {expected} {what} of ours C misses: '{prefix}…' (a documented difference)",
                scenario.name
            );
            rest
        }
    };
    let rows = compare("sip_trace rows", c_rows, extra(ours_rows, "rows"));
    let packets = compare("HEP packets", c_packets, extra(ours_packets, "HEP packets"));
    for outcome in [&rows, &packets] {
        if let Some(text) = &outcome.report {
            report += text;
        }
    }
    if rows.relaxed > 0 {
        eprintln!(
            "{}: {} rows of ours have the To tag of their own message in totag where C's have '' \
             (a documented difference)",
            scenario.name, rows.relaxed
        );
    }
    if packets.relaxed > 0 {
        eprintln!(
            "{}: {} HEP packets of ours carry the Call-ID as correlation id (chunk 0x0011) where C's carry none \
             (a documented difference)",
            scenario.name, packets.relaxed
        );
    }
    assert!(
        report.is_empty(),
        "{}: the C module and ours traced differently (C's run: {}, ours: {})\n{report}",
        scenario.name,
        c.dir.display(),
        ours.dir.display()
    );
    Some(ours)
}

/// hep-js, the independent decoder, must have decoded every packet of a
/// run: otherwise two runs could compare equal on undecodable packets.
fn assert_hepjs_decoded(run: &RunOutput) {
    for p in &run.packets {
        assert!(
            p["decoded"]["rcinfo"].is_object() && p["decoded"]["payload"].is_string(),
            "hep-js could not decode a packet of the {} module's run ({}): {p}",
            run.side.label(),
            run.dir.display()
        );
    }
}

/// The rows and packets of a run, normalized and rendered.
pub fn items(rows: &[TraceRow], packets: &[Value], ports: &PortMap) -> (Vec<Item>, Vec<Item>) {
    let mut rows: Vec<Item> = rows.iter().map(|r| row_item(r, ports)).collect();
    let mut packets: Vec<Item> = packets.iter().map(|p| packet_item(p, ports)).collect();
    relabel_kamailio_hashes(&mut rows, &mut packets);
    (rows, packets)
}

/// Kamailio derives two kinds of values from hashes over data that
/// includes the ports of the run, so they differ between the runs:
/// - the MD5 part of the branch tm puts in its Via,
///   `z9hG4bK<hash index>.<32 hex digits>.<branch number>` (tm hashes the
///   request's top Via, its sender's port included, and the request URI);
/// - the To tags of replies Kamailio makes itself, `<32 hex digits>.<8 hex
///   digits>` (sl) or `<32 hex digits>-<8 hex digits>` (tm): an MD5 over its
///   listening socket and a CRC of the request's top Via.
///
/// Each distinct such value of a run is renamed `<kamailio hash N>`, N
/// numbered by first appearance in the run's rows, then its packets, each
/// sorted by their message text with these values masked. Two runs thus
/// compare equal only if they
/// are the same up to a one-to-one renaming of these values: a value
/// changed in one message, or two messages sharing a value in one run but
/// not in the other, still shows.
fn relabel_kamailio_hashes(rows: &mut [Item], packets: &mut [Item]) {
    fn masked(text: &str) -> String {
        let mut out = text.to_string();
        for (start, end) in hash_spans(text).into_iter().rev() {
            out.replace_range(start..end, "<kamailio hash>");
        }
        out
    }
    // Rows first, then packets; each sorted by the text of its message
    // and its ends, hashes masked: not by the whole render, where the
    // documented differences (chunk 0x0011) would reorder them. Then the
    // whole renders, for a value found elsewhere than in a message.
    let sorted = |items: &[Item], text: fn(&Item) -> &String| {
        let mut order: Vec<(String, String)> =
            items.iter().map(|i| (masked(text(i)), text(i).clone())).collect();
        order.sort();
        order
    };
    let texts = [
        sorted(rows, |i| &i.message),
        sorted(packets, |i| &i.message),
        sorted(rows, |i| &i.render),
        sorted(packets, |i| &i.render),
    ];
    let mut names: HashMap<String, String> = HashMap::new();
    for (_, text) in texts.into_iter().flatten() {
        for (start, end) in hash_spans(&text) {
            let n = names.len() + 1;
            names.entry(text[start..end].to_string()).or_insert_with(|| format!("<kamailio hash {n}>"));
        }
    }
    let rename = |text: &mut String| {
        for (start, end) in hash_spans(text).into_iter().rev() {
            let name = names[&text[start..end]].clone();
            text.replace_range(start..end, &name);
        }
    };
    for item in rows.iter_mut().chain(packets.iter_mut()) {
        rename(&mut item.render);
        rename(&mut item.key);
        rename(&mut item.message);
        if let Some(alt) = item.documented_alternative.as_mut() {
            rename(alt);
        }
    }
}

/// Where the values [`relabel_kamailio_hashes`] renames are in a text: the
/// MD5 in `branch=z9hG4bK<hex>.<md5>.`, and a `<md5>.<hex>` or
/// `<md5>-<hex>` tag (4 to 8 hex digits after the separator) after `tag=`
/// or in the `totag:`/`fromtag:` lines of a row.
fn hash_spans(text: &str) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let hex_run = |from: usize| {
        b[from.min(b.len())..].iter().take_while(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')).count()
    };
    let mut spans = Vec::new();
    for (at, _) in text.match_indices("branch=z9hG4bK") {
        let index = at + "branch=z9hG4bK".len();
        let index_len = hex_run(index);
        let md5 = index + index_len + 1;
        if index_len > 0
            && b.get(md5 - 1) == Some(&b'.')
            && hex_run(md5) == 32
            && b.get(md5 + 32) == Some(&b'.')
        {
            spans.push((md5, md5 + 32));
        }
    }
    for prefix in ["tag=", "totag: ", "fromtag: "] {
        for (at, _) in text.match_indices(prefix) {
            let tag = at + prefix.len();
            let suffix = tag + 33;
            let suffix_len = hex_run(suffix);
            if hex_run(tag) == 32
                && matches!(b.get(tag + 32), Some(b'-' | b'.'))
                && (4..=8).contains(&suffix_len)
                && !b.get(suffix + suffix_len).is_some_and(|c| c.is_ascii_alphanumeric())
            {
                spans.push((tag, suffix + suffix_len));
            }
        }
    }
    spans.sort();
    spans.dedup();
    spans
}

/// One row or packet, normalized and rendered as lines of text.
#[derive(Debug, Clone)]
pub struct Item {
    /// Pairs an item only one side has with its counterpart on the other
    /// side, for the report: what the message is and where it went.
    pub key: String,
    pub render: String,
    /// The message and its ends, as rendered: what orders the items when
    /// Kamailio's hashes are named (see [`relabel_kamailio_hashes`]).
    pub message: String,
    /// The render a documented difference allows in place of `render`: for
    /// a packet of ours that carries the Call-ID as correlation id, without
    /// that chunk; for a row of ours, with an empty `totag` when it is the
    /// message's own To tag (see the module documentation).
    pub documented_alternative: Option<String>,
}

/// A row with ports replaced by roles; every column but id and the times.
pub fn row_item(r: &TraceRow, ports: &PortMap) -> Item {
    let (from, to) = (address_port(&r.fromip), address_port(&r.toip));
    let fromip = normalize_address(&r.fromip, ports, to);
    let toip = normalize_address(&r.toip, ports, from);
    let msg = normalize_sip(&r.msg, ports);
    let render_with = |totag: &str| {
        let mut render = String::new();
        for (name, value) in [
            ("callid", r.callid.as_str()),
            ("traced_user", &r.traced_user),
            ("method", &r.method),
            ("status", &r.status),
            ("fromip", &fromip),
            ("toip", &toip),
            ("fromtag", &r.fromtag),
            ("totag", totag),
            ("direction", &r.direction),
        ] {
            writeln!(render, "{name}: {}", escape(value.as_bytes())).unwrap();
        }
        write!(render, "msg ({} bytes as normalized):\n{}", msg.len(), render_text(&msg)).unwrap();
        render
    };
    let render = render_with(&r.totag);
    let own_to_tag = sip_header(&r.msg, "To")
        .and_then(|to| to.split(';').find_map(|p| p.trim().strip_prefix("tag=").map(str::to_string)));
    let totag_is_own = !r.totag.is_empty() && own_to_tag.as_deref() == Some(r.totag.as_str());
    Item {
        key: format!("{} {} -> {} {}", first_line_of(&msg), fromip, toip, r.direction),
        message: render.clone(),
        render,
        documented_alternative: totag_is_own.then(|| render_with("")),
    }
}

/// "udp:127.0.0.1:5060" with the port replaced by its role; the peer's
/// port names an ephemeral one.
fn normalize_address(address: &str, ports: &PortMap, peer: Option<u16>) -> String {
    match address.rsplit_once(':') {
        Some((head, port)) if port.parse::<u16>().is_ok() => {
            format!("{head}:{}", ports.endpoint(port.parse().unwrap(), peer))
        }
        _ => address.to_string(),
    }
}

fn address_port(address: &str) -> Option<u16> {
    address.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
}

/// One HEP chunk as it was on the wire.
#[derive(Debug, Clone)]
struct Chunk {
    vendor: u16,
    kind: u16,
    value: Vec<u8>,
}

/// Splits a HEPv3 datagram into its chunks, or says why it cannot.
fn hep_chunks(raw: &[u8]) -> Result<Vec<Chunk>, String> {
    if raw.len() < 6 || &raw[..4] != b"HEP3" {
        return Err(format!("not HEP3: {}", escape(&raw[..raw.len().min(16)])));
    }
    let total = u16::from_be_bytes([raw[4], raw[5]]) as usize;
    if total != raw.len() {
        return Err(format!("header length {total}, datagram {} bytes", raw.len()));
    }
    let mut chunks = Vec::new();
    let mut at = 6;
    while at < raw.len() {
        if at + 6 > raw.len() {
            return Err(format!("truncated chunk header at {at}"));
        }
        let field = |i: usize| u16::from_be_bytes([raw[at + i], raw[at + i + 1]]);
        let (vendor, kind, len) = (field(0), field(2), field(4) as usize);
        if len < 6 || at + len > raw.len() {
            return Err(format!("chunk 0x{kind:04x} at {at} has length {len}"));
        }
        chunks.push(Chunk { vendor, kind, value: raw[at + 6..at + len].to_vec() });
        at += len;
    }
    Ok(chunks)
}

/// A packet as hep-js reported it, rendered chunk by chunk from its raw
/// bytes, plus what hep-js decoded.
pub fn packet_item(p: &Value, ports: &PortMap) -> Item {
    let raw = p["raw"].as_str().map(calls::hex_decode).unwrap_or_default();
    let chunks = match hep_chunks(&raw) {
        Ok(chunks) => chunks,
        Err(why) => {
            let render = format!("malformed HEP packet: {why}\n{}", escape(&raw));
            return Item {
                key: "malformed".into(),
                message: render.clone(),
                render,
                documented_alternative: None,
            };
        }
    };
    let get = |kind: u16| chunks.iter().find(|c| c.kind == kind && c.vendor == 0).map(|c| c.value.as_slice());
    let port = |kind: u16| get(kind).filter(|v| v.len() == 2).map(|v| u16::from_be_bytes([v[0], v[1]]));
    let (src, dst) = (port(0x0007), port(0x0008));
    let payload = get(0x000f).unwrap_or_default();
    let callid = sip_header(payload, "Call-ID");
    let render_with = |skip_callid_correlation: bool| {
        let mut out = String::new();
        let mut listed = Vec::new();
        let mut lines = Vec::new();
        for c in &chunks {
            if skip_callid_correlation && c.vendor == 0 && c.kind == 0x0011 {
                continue;
            }
            listed.push(if c.vendor == 0 {
                format!("{:04x}", c.kind)
            } else {
                format!("{:04x}:{:04x}", c.vendor, c.kind)
            });
            let value = match (c.vendor, c.kind) {
                (0, 0x0007) => src.map(|s| ports.endpoint(s, dst)).unwrap_or_else(|| hex(&c.value)),
                (0, 0x0008) => dst.map(|d| ports.endpoint(d, src)).unwrap_or_else(|| hex(&c.value)),
                (0, 0x0009) | (0, 0x000a) => {
                    format!("({}-byte timestamp, value not compared)", c.value.len())
                }
                (0, 0x0003) | (0, 0x0004) if c.value.len() == 4 => {
                    std::net::Ipv4Addr::new(c.value[0], c.value[1], c.value[2], c.value[3]).to_string()
                }
                (0, 0x0005) | (0, 0x0006) if c.value.len() == 16 => {
                    std::net::Ipv6Addr::from(<[u8; 16]>::try_from(c.value.as_slice()).unwrap()).to_string()
                }
                (0, 0x000e) | (0, 0x0011) => escape(&normalize_sip(&c.value, ports)),
                (0, 0x000f) => {
                    let text = normalize_sip(&c.value, ports);
                    format!("({} bytes as normalized)\n{}", text.len(), render_text(&text))
                }
                _ => hex(&c.value),
            };
            lines.push(format!("chunk {}: {value}", listed.last().unwrap()));
        }
        writeln!(out, "HEP3 chunks in order: {}", listed.join(" ")).unwrap();
        for line in lines {
            writeln!(out, "{line}").unwrap();
        }
        write!(out, "hep-js: {}", hepjs_summary(p, ports, src, dst, skip_callid_correlation)).unwrap();
        out
    };
    let has_callid_correlation =
        get(0x0011).is_some_and(|v| callid.as_deref().is_some_and(|id| id.as_bytes() == v));
    let normalized_payload = normalize_sip(payload, ports);
    let ends = format!(
        "{} -> {}",
        src.map(|s| ports.endpoint(s, dst)).unwrap_or_default(),
        dst.map(|d| ports.endpoint(d, src)).unwrap_or_default()
    );
    Item {
        key: format!("{} {ends}", first_line_of(&normalized_payload)),
        message: format!("{ends}\n{}", render_text(&normalized_payload)),
        render: render_with(false),
        documented_alternative: has_callid_correlation.then(|| render_with(true)),
    }
}

/// hep-js's decoding of a packet, without the timestamps, with ports as
/// roles and the payload only checked against the raw payload chunk.
fn hepjs_summary(
    p: &Value,
    ports: &PortMap,
    src: Option<u16>,
    dst: Option<u16>,
    skip_correlation: bool,
) -> String {
    let decoded = &p["decoded"];
    let Some(info) = decoded["rcinfo"].as_object() else {
        return format!("could not decode: {decoded}");
    };
    let mut fields: BTreeMap<&str, String> = BTreeMap::new();
    for (k, v) in info {
        let value = match k.as_str() {
            "timeSeconds" | "timeUseconds" => continue,
            "correlation_id" if skip_correlation => continue,
            "srcPort" => v.as_u64().map(|s| ports.endpoint(s as u16, dst)).unwrap_or_else(|| v.to_string()),
            "dstPort" => v.as_u64().map(|d| ports.endpoint(d as u16, src)).unwrap_or_else(|| v.to_string()),
            _ => match v.as_str() {
                Some(s) => escape(&normalize_sip(s.as_bytes(), ports)),
                None => v.to_string(),
            },
        };
        fields.insert(k, value);
    }
    let raw_payload = p["raw"].as_str().map(calls::hex_decode).and_then(|raw| {
        hep_chunks(&raw).ok()?.into_iter().find(|c| c.kind == 0x000f && c.vendor == 0).map(|c| c.value)
    });
    let payload_check = match (decoded["payload"].as_str(), raw_payload) {
        (Some(text), Some(raw)) if text.as_bytes() == raw => "payload = chunk 000f".to_string(),
        (Some(_), Some(_)) => "payload differs from chunk 000f".to_string(),
        (None, _) => "no payload".to_string(),
        (Some(_), None) => "payload without chunk 000f".to_string(),
    };
    let fields: Vec<String> = fields.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{}; {payload_check}", fields.join(" "))
}

/// The value of a SIP header (by its full name) in a message.
fn sip_header(msg: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(msg);
    text.split("\r\n").take_while(|l| !l.is_empty()).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

/// Replaces, in SIP text, each port that follows `127.0.0.1:` and is
/// exactly one of the run's ports, by its role.
pub fn normalize_sip(msg: &[u8], ports: &PortMap) -> Vec<u8> {
    const HOST: &[u8] = b"127.0.0.1:";
    // The dialog module's id in the Record-Route, "did=<entry>.<id>": the
    // id starts at a random value in each run.
    const DIALOG_ID: &[u8] = b"did=";
    // The time xheaders_write adds, in seconds and microseconds.
    const XTIME: &[u8] = b"X-Siptrace-Time: ";
    let mut out = Vec::with_capacity(msg.len());
    let mut i = 0;
    while i < msg.len() {
        if msg[i..].starts_with(XTIME) {
            out.extend_from_slice(b"X-Siptrace-Time: <time>");
            i += XTIME.len();
            i += msg[i..].iter().take_while(|b| b.is_ascii_digit() || **b == b' ').count();
        } else if msg[i..].starts_with(DIALOG_ID) {
            out.extend_from_slice(b"did=<dialog id>");
            i += DIALOG_ID.len();
            i += msg[i..].iter().take_while(|b| b.is_ascii_hexdigit() || **b == b'.').count();
        } else if msg[i..].starts_with(HOST) {
            out.extend_from_slice(HOST);
            i += HOST.len();
            let digits = msg[i..].iter().take_while(|b| b.is_ascii_digit()).count();
            let role = std::str::from_utf8(&msg[i..i + digits])
                .ok()
                .and_then(|d| d.parse::<u16>().ok())
                .and_then(|p| ports.role(p));
            match role {
                Some(role) => out.extend_from_slice(role.as_bytes()),
                None => out.extend_from_slice(&msg[i..i + digits]),
            }
            i += digits;
        } else {
            out.push(msg[i]);
            i += 1;
        }
    }
    out
}

fn first_line_of(msg: &[u8]) -> String {
    let end = msg.windows(2).position(|w| w == b"\r\n").unwrap_or(msg.len());
    escape(&msg[..end])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes as printable text: `\\`, `\r`, `\n`, `\t` and `\xNN` for the rest
/// of what is not printable ASCII. Different bytes render differently.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(b as char),
            _ => write!(out, "\\x{b:02x}").unwrap(),
        }
    }
    out
}

/// A SIP message, one indented line per CRLF-terminated line; a last line
/// without CRLF is marked `(no CRLF)`.
fn render_text(msg: &[u8]) -> String {
    let mut out = String::new();
    let mut rest = msg;
    while let Some(at) = rest.windows(2).position(|w| w == b"\r\n") {
        writeln!(out, "  | {}", escape(&rest[..at])).unwrap();
        rest = &rest[at + 2..];
    }
    if !rest.is_empty() {
        writeln!(out, "  | {} (no CRLF)", escape(rest)).unwrap();
    }
    out.trim_end_matches('\n').to_string()
}

/// How two multisets of items compared.
pub struct Comparison {
    pub report: Option<String>,
    /// Packets of ours matched only through the correlation-id allowance.
    pub relaxed: usize,
}

/// Compares the items of the two runs as multisets; on a difference, the
/// report lists what only C has and what only ours has, pairing items of
/// the same key to show just the lines that differ.
pub fn compare(what: &str, c: Vec<Item>, ours: Vec<Item>) -> Comparison {
    let (c_count, ours_count) = (c.len(), ours.len());
    let mut remaining: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, item) in c.iter().enumerate() {
        remaining.entry(item.render.as_str()).or_default().push(i);
    }
    let mut unmatched_ours = Vec::new();
    for item in &ours {
        match remaining.get_mut(item.render.as_str()).and_then(Vec::pop) {
            Some(_) => {}
            None => unmatched_ours.push(item),
        }
    }
    let mut relaxed = 0;
    let mut only_ours = Vec::new();
    for item in unmatched_ours {
        let alt = item.documented_alternative.as_deref();
        match alt.and_then(|a| remaining.get_mut(a)).and_then(Vec::pop) {
            Some(_) => relaxed += 1,
            None => only_ours.push(item),
        }
    }
    let mut only_c: Vec<&Item> = remaining.values().flatten().map(|&i| &c[i]).collect();
    only_c.sort_by(|a, b| (&a.key, &a.render).cmp(&(&b.key, &b.render)));
    only_ours.sort_by(|a, b| (&a.key, &a.render).cmp(&(&b.key, &b.render)));
    if only_c.is_empty() && only_ours.is_empty() {
        return Comparison { report: None, relaxed };
    }

    let mut out = String::new();
    writeln!(
        out,
        "\n==== {what}: C {c_count}, ours {ours_count}; {} only in C, {} only in ours",
        only_c.len(),
        only_ours.len()
    )
    .unwrap();
    let mut paired_ours = vec![false; only_ours.len()];
    let mut unpaired_c = Vec::new();
    for c_item in &only_c {
        let pair = (0..only_ours.len()).find(|&j| !paired_ours[j] && only_ours[j].key == c_item.key);
        match pair {
            Some(j) => {
                paired_ours[j] = true;
                writeln!(
                    out,
                    "\n--- differs: {} (\"- C\" lines only in C's, \"+ ours\" only in ours)",
                    c_item.key
                )
                .unwrap();
                out += &line_diff(&c_item.render, &only_ours[j].render);
            }
            None => unpaired_c.push(c_item),
        }
    }
    for c_item in unpaired_c {
        writeln!(out, "\n--- only in C: {}\n{}", c_item.key, c_item.render).unwrap();
    }
    for (j, item) in only_ours.iter().enumerate() {
        if !paired_ours[j] {
            writeln!(out, "\n+++ only in ours: {}\n{}", item.key, item.render).unwrap();
        }
    }
    Comparison { report: Some(out), relaxed }
}

/// The lines of `a` and `b` with those only in `a` marked "- C    " and
/// those only in `b` marked "+ ours " (a longest-common-subsequence diff),
/// and common lines around them for context.
fn line_diff(a: &str, b: &str) -> String {
    let a: Vec<&str> = a.lines().collect();
    let b: Vec<&str> = b.lines().collect();
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let mut out = String::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            writeln!(out, "        {}", a[i]).unwrap();
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            writeln!(out, "+ ours  {}", b[j]).unwrap();
            j += 1;
        } else {
            writeln!(out, "- C     {}", a[i]).unwrap();
            i += 1;
        }
    }
    out
}
