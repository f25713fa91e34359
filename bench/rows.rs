//! Rows shaped like a traced call's, for the row floors (sqlite_floor.rs,
//! copy_floor.rs): 13 per call, sharing the call's Call-ID and tags, with a
//! message of about the size the benchmark's rows had.

/// One row's column values, in the schema's types.
pub struct FloorRow {
    pub msg: String,
    pub callid: String,
    pub method: &'static str,
    pub status: &'static str,
    pub fromip: &'static str,
    pub toip: &'static str,
    pub secs: i64,
    pub direction: &'static str,
    pub fromtag: String,
    pub traced_user: &'static str,
    pub time_us: i32,
    pub totag: String,
}

const FLOW: [(&str, &str, &str); 13] = [
    ("INVITE", "", "in"),
    ("INVITE", "", "out"),
    ("INVITE", "100", "out"),
    ("INVITE", "100", "in"),
    ("INVITE", "180", "in"),
    ("INVITE", "180", "out"),
    ("INVITE", "200", "in"),
    ("INVITE", "200", "out"),
    ("ACK", "", "in"),
    ("ACK", "", "out"),
    ("BYE", "", "in"),
    ("BYE", "", "out"),
    ("BYE", "200", "in"),
];

/// `count` rows whose messages are `size` bytes.
pub fn rows(count: usize, size: usize) -> Vec<FloorRow> {
    let base = 1_800_000_000;
    (0..count)
        .map(|i| {
            let call = i / FLOW.len();
            let (method, status, direction) = FLOW[i % FLOW.len()];
            let callid = format!("{call:08x}-5f3c2a1b@127.0.0.1");
            let head = format!("{method} sip:service@127.0.0.1:5060 SIP/2.0\r\nCall-ID: {callid}\r\n");
            let mut msg = head;
            while msg.len() < size {
                msg.push_str("X-Pad: 0123456789abcdef0123456789abcdef0123456789abcdef\r\n");
            }
            msg.truncate(size.max(1));
            FloorRow {
                msg,
                callid,
                method,
                status,
                fromip: "udp:127.0.0.1:5061",
                toip: "udp:127.0.0.1:5060",
                secs: base + (i / 3900) as i64,
                direction,
                fromtag: format!("{call}SIPpTag00"),
                traced_user: "",
                time_us: (i * 37 % 1_000_000) as i32,
                totag: if status.is_empty() { String::new() } else { format!("{call}SIPpTag01") },
            }
        })
        .collect()
}

/// User and system CPU seconds of the calling thread.
pub fn thread_cpu() -> (f64, f64) {
    // SAFETY: getrusage writes into the zeroed struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid `who` and a pointer to a live rusage.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (seconds(usage.ru_utime), seconds(usage.ru_stime))
}

/// Argument `i` as a number, or `default`.
pub fn arg(args: &[String], i: usize, default: Option<usize>, usage: &str) -> usize {
    match args.get(i) {
        Some(a) => a.parse().unwrap_or_else(|_| panic!("argument {i} is not a number: {a}")),
        None => default.unwrap_or_else(|| panic!("usage: {usage}")),
    }
}
