//! Calls through a proxy under test, and what tracing them must show.

use super::*;
use std::collections::HashMap;

/// Who sent or received a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Uac,
    Proxy,
    Uas,
}

/// The 13 messages of one INVITE/ACK/BYE call through the proxy, as
/// (sender, receiver, request method or "status CSeq-method").
pub const CALL_FLOW: [(Role, Role, &str); 13] = [
    (Role::Uac, Role::Proxy, "INVITE"),
    (Role::Proxy, Role::Uac, "100 INVITE"),
    (Role::Proxy, Role::Uas, "INVITE"),
    (Role::Uas, Role::Proxy, "180 INVITE"),
    (Role::Proxy, Role::Uac, "180 INVITE"),
    (Role::Uas, Role::Proxy, "200 INVITE"),
    (Role::Proxy, Role::Uac, "200 INVITE"),
    (Role::Uac, Role::Proxy, "ACK"),
    (Role::Proxy, Role::Uas, "ACK"),
    (Role::Uac, Role::Proxy, "BYE"),
    (Role::Proxy, Role::Uas, "BYE"),
    (Role::Uas, Role::Proxy, "200 BYE"),
    (Role::Proxy, Role::Uac, "200 BYE"),
];

pub struct Ports {
    pub uac: u16,
    pub proxy: u16,
    pub uas: u16,
}

impl Ports {
    pub fn role(&self, port: u16) -> Role {
        match port {
            p if p == self.uac => Role::Uac,
            p if p == self.proxy => Role::Proxy,
            p if p == self.uas => Role::Uas,
            other => panic!("unexpected port {other}"),
        }
    }
}

/// "INVITE" for a request, "200 BYE" for a reply, from sipcapture's columns.
pub fn kind(p: &Captured) -> String {
    if p.method.chars().all(|c| c.is_ascii_digit()) {
        let cseq_method = p.cseq.split_whitespace().nth(1).unwrap_or_default();
        format!("{} {cseq_method}", p.method)
    } else {
        p.method.clone()
    }
}

/// Checks that the messages seen, as (Call-ID, sender, receiver, kind),
/// are `calls` calls of exactly `flow` each.
pub fn assert_flows(
    seen: impl IntoIterator<Item = (String, Role, Role, String)>,
    flow: &[(Role, Role, &str)],
    calls: usize,
) {
    let mut by_call: HashMap<String, Vec<(Role, Role, String)>> = HashMap::new();
    for (callid, from, to, kind) in seen {
        by_call.entry(callid).or_default().push((from, to, kind));
    }
    assert_eq!(by_call.len(), calls, "distinct Call-IDs");
    let mut expected: Vec<(Role, Role, String)> =
        flow.iter().map(|(a, b, k)| (*a, *b, k.to_string())).collect();
    expected.sort();
    for (callid, mut messages) in by_call {
        messages.sort();
        assert_eq!(messages, expected, "messages of call {callid}");
    }
}

/// The call flow of the packets sipcapture stored.
pub fn assert_captured_flows(packets: &[Captured], ports: &Ports, calls: usize) {
    let seen =
        packets.iter().map(|p| (p.callid.clone(), ports.role(p.src_port), ports.role(p.dst_port), kind(p)));
    assert_flows(seen, &CALL_FLOW, calls);
}

/// A proxy under test with a sipp UAS behind it, on loopback.
pub struct Proxy {
    pub kamailio: Kamailio,
    pub port: u16,
    pub ip: &'static str,
    pub uas: SippUas,
}

impl Proxy {
    pub fn start(dir: &TestDir, ip: &'static str, params: &[String], hooks: &Hooks<'_>) -> Proxy {
        let uas = SippUas::start(dir, ip, free_port());
        let port = free_port();
        let config = proxy_config(dir, ip, port, uas.port, &params.concat(), hooks);
        Proxy { kamailio: Kamailio::start(dir, "proxy", &config), port, ip, uas }
    }

    /// Runs `n` sipp calls through the proxy; returns the ports of the call.
    pub fn calls(&self, dir: &TestDir, n: u32) -> Ports {
        let run = sipp_calls(dir, self.ip, &format!("{}:{}", host_in_uri(self.ip), self.port), n, 10);
        assert!(run.ok, "sipp calls failed:\n{}\nproxy log:\n{}", run.output, self.kamailio.log_text());
        Ports { uac: run.port, proxy: self.port, uas: self.uas.port }
    }

    pub fn stat(&self, name: &str) -> u64 {
        self.kamailio.stat(name)
    }

    /// Waits until the senders stored `rows` rows: they write asynchronously.
    pub fn wait_for_rows(&self, rows: usize) {
        let stored = wait_for(std::time::Duration::from_secs(10), || self.stat("db_rows") >= rows as u64);
        assert!(
            stored,
            "{} of {rows} rows stored; proxy log:\n{}",
            self.stat("db_rows"),
            self.kamailio.log_text()
        );
    }
}

pub fn first_line(msg: &[u8]) -> String {
    String::from_utf8_lossy(msg).lines().next().unwrap_or_default().to_string()
}

/// A header value from a SIP message text, by exact name.
pub fn header<'a>(msg: &'a str, name: &str) -> &'a str {
    msg.split("\r\n")
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {name} in {msg}"))
}

/// "INVITE" or "200 BYE" for a SIP message text.
pub fn kind_of_text(msg: &str) -> String {
    let first = msg.split("\r\n").next().unwrap();
    match first.strip_prefix("SIP/2.0 ") {
        Some(rest) => {
            let cseq_method = header(msg, "CSeq").split_whitespace().nth(1).unwrap();
            format!("{} {cseq_method}", &rest[..3])
        }
        None => first.split(' ').next().unwrap().to_string(),
    }
}

pub fn hex_decode(hex: &str) -> Vec<u8> {
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}
