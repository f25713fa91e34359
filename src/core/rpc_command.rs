//! What a traced RPC command leaves: its parameters as it scanned them,
//! what it added to its reply, a fault, and the two HEP payloads made from
//! them, with the field names of OpenSIPS's MI trace.
//!
//! - request: `{"command":"core.uptime","backend":"ctl","parameters":"[\"on\",5]"}`,
//!   `parameters` being a JSON array (as text) of the values the command
//!   read, strings quoted and numbers bare; absent when it read none.
//! - reply: `{"reply":"<status>"}`, the status being one of
//!   - `200 OK` then, when the command added values, `: ` and those values
//!     separated by `, `, a structure member as `name=value`;
//!   - `<code> <text>` for a fault;
//!   - `400 error reading the parameters` when a parameter scan failed and
//!     the command gave neither a fault nor a value (the transport words
//!     its own fault then);
//!   - `delayed: the reply is sent later and is not traced` for a command
//!     that took a delayed-reply context.
//!
//! Parameters and reply values are each cut at [`EXCERPT_MAX`] bytes, on a
//! character boundary, with `...` at the end of a cut.

use crate::core::event::{excerpt, JsonObject};
use std::fmt::Write as _;

/// The most bytes of parameters, and of reply values, a record carries.
pub const EXCERPT_MAX: usize = 1024;

/// Marks a text that was cut.
const CUT: &str = "...";

/// One command's execution, as far as it has gone.
#[derive(Debug, Default, Clone)]
pub struct Execution {
    params: Bounded,
    param_count: usize,
    values: Bounded,
    value_count: usize,
    fault: Option<(i32, String)>,
    scan_failed: bool,
    delayed: bool,
}

/// Text that stops growing at [`EXCERPT_MAX`] bytes.
#[derive(Debug, Default, Clone)]
struct Bounded {
    text: String,
    cut: bool,
}

impl Bounded {
    fn push(&mut self, s: &str) {
        if self.cut {
            return;
        }
        let room = EXCERPT_MAX - self.text.len();
        if s.len() <= room {
            self.text.push_str(s);
        } else {
            let part = excerpt(s.as_bytes(), room);
            // `excerpt` cuts on a character boundary of valid UTF-8.
            self.text.push_str(std::str::from_utf8(part).unwrap_or_default());
            self.cut = true;
        }
    }

    fn finish(&self) -> String {
        if self.cut {
            format!("{}{CUT}", self.text)
        } else {
            self.text.clone()
        }
    }
}

fn json_string(s: &str) -> String {
    // A one-field object gives the escaping; keep only the value.
    let mut o = JsonObject::new();
    o.string("v", s.as_bytes());
    let text = o.finish();
    text["{\"v\":".len()..text.len() - 1].to_string()
}

impl Execution {
    pub fn new() -> Execution {
        Execution::default()
    }

    /// A parameter the command read; `is_str` when it read it as a string.
    /// Parameters that no longer fit are left out, and the array ends with
    /// `"..."`; a string that does not fit whole is cut first, so that the
    /// array stays valid JSON.
    pub fn param(&mut self, text: &[u8], is_str: bool) {
        if self.params.cut {
            return;
        }
        let separator = usize::from(self.param_count > 0);
        let room = EXCERPT_MAX.saturating_sub(self.params.text.len() + separator);
        let text = String::from_utf8_lossy(text);
        let mut item = if is_str { json_string(&text) } else { text.to_string() };
        if item.len() > room && is_str {
            let mut keep = room.saturating_sub(2 + CUT.len());
            while keep > 0 {
                let cut = String::from_utf8_lossy(excerpt(text.as_bytes(), keep)).into_owned() + CUT;
                item = json_string(&cut);
                if item.len() <= room {
                    break;
                }
                keep = keep * 3 / 4;
            }
        }
        if item.len() > room {
            self.params.cut = true;
            return;
        }
        if separator == 1 {
            self.params.text.push(',');
        }
        self.params.text.push_str(&item);
        self.param_count += 1;
    }

    /// A value the command added to its reply, with its member name in a
    /// structure.
    pub fn value(&mut self, name: Option<&[u8]>, text: &[u8]) {
        if self.value_count > 0 {
            self.values.push(", ");
        }
        if let Some(name) = name {
            self.values.push(&String::from_utf8_lossy(name));
            self.values.push("=");
        }
        self.values.push(&String::from_utf8_lossy(text));
        self.value_count += 1;
    }

    pub fn fault(&mut self, code: i32, text: &[u8]) {
        let text = String::from_utf8_lossy(excerpt(text, EXCERPT_MAX)).into_owned();
        self.fault = Some((code, text));
    }

    pub fn scan_failed(&mut self) {
        self.scan_failed = true;
    }

    pub fn delayed(&mut self) {
        self.delayed = true;
    }

    /// The parameters as a JSON array text, if the command read any.
    pub fn parameters(&self) -> Option<String> {
        (self.param_count > 0).then(|| {
            let mut text = String::with_capacity(self.params.text.len() + 8);
            text.push('[');
            text.push_str(&self.params.text);
            if self.params.cut {
                // The array is cut too: say so inside it, and close it.
                if self.param_count > 0 {
                    text.push(',');
                }
                text.push_str("\"...\"");
            }
            text.push(']');
            text
        })
    }

    /// The reply's status text, as described in the module documentation.
    pub fn reply(&self) -> String {
        if let Some((code, text)) = &self.fault {
            let mut s = String::new();
            let _ = write!(s, "{code} {text}");
            return s;
        }
        if self.delayed {
            return "delayed: the reply is sent later and is not traced".into();
        }
        if self.value_count == 0 {
            if self.scan_failed {
                return "400 error reading the parameters".into();
            }
            return "200 OK".into();
        }
        format!("200 OK: {}", self.values.finish())
    }

    /// The request record's payload.
    pub fn request_payload(&self, command: &str, backend: &str) -> String {
        let mut o = JsonObject::new();
        o.string("command", command.as_bytes()).string("backend", backend.as_bytes());
        if let Some(p) = self.parameters() {
            o.string("parameters", p.as_bytes());
        }
        o.finish()
    }

    /// The reply record's payload.
    pub fn reply_payload(&self) -> String {
        let mut o = JsonObject::new();
        o.string("reply", self.reply().as_bytes());
        o.finish()
    }
}

/// Which RPC commands are traced: `allow:` or `deny:` then a list of
/// names separated by commas, semicolons or blanks; a name ending in `*`
/// covers every command it begins.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandFilter {
    allow: bool,
    names: Vec<String>,
}

impl CommandFilter {
    pub fn parse(text: &str) -> Result<CommandFilter, String> {
        let (kind, list) = text.split_once(':').ok_or("expected allow: or deny: before the command names")?;
        let allow = match kind.trim().to_ascii_lowercase().as_str() {
            "allow" => true,
            "deny" => false,
            other => return Err(format!("'{other}' is neither allow nor deny")),
        };
        let names: Vec<String> = list
            .split(|c: char| c == ',' || c == ';' || c.is_whitespace())
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect();
        if let Some(bad) = names.iter().find(|n| n.strip_suffix('*').unwrap_or(n).contains('*')) {
            return Err(format!("'{bad}': '*' may only end a name"));
        }
        if names.is_empty() {
            return Err("the list names no command".into());
        }
        Ok(CommandFilter { allow, names })
    }

    /// Whether `command` is traced. With no filter every command is.
    pub fn traces(&self, command: &str) -> bool {
        let listed = self.names.iter().any(|n| match n.strip_suffix('*') {
            Some(prefix) => command.starts_with(prefix),
            None => n == command,
        });
        if self.names.is_empty() {
            true
        } else {
            listed == self.allow
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> serde_json::Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn request_without_and_with_parameters() {
        let e = Execution::new();
        assert_eq!(e.request_payload("core.uptime", "ctl"), r#"{"command":"core.uptime","backend":"ctl"}"#);
        let mut e = Execution::new();
        e.param(b"on", true);
        e.param(b"5", false);
        e.param(b"say \"hi\"", true);
        let v = json(&e.request_payload("x.y", "jsonrpcs_http"));
        assert_eq!(v["command"], "x.y");
        assert_eq!(v["backend"], "jsonrpcs_http");
        let params = json(v["parameters"].as_str().unwrap());
        assert_eq!(params, serde_json::json!(["on", 5, "say \"hi\""]));
    }

    #[test]
    fn replies() {
        assert_eq!(Execution::new().reply(), "200 OK");
        let mut e = Execution::new();
        e.value(Some(b"now"), b"Mon");
        e.value(Some(b"uptime"), b"12");
        e.value(None, b"plain");
        assert_eq!(e.reply(), "200 OK: now=Mon, uptime=12, plain");
        assert_eq!(json(&e.reply_payload())["reply"], "200 OK: now=Mon, uptime=12, plain");
        e.fault(500, b"Bad parameter (on, off or check)");
        assert_eq!(e.reply(), "500 Bad parameter (on, off or check)");
        let mut e = Execution::new();
        e.scan_failed();
        assert_eq!(e.reply(), "400 error reading the parameters");
        e.value(None, b"x");
        assert_eq!(e.reply(), "200 OK: x", "a scan retried with success is no error");
        let mut e = Execution::new();
        e.delayed();
        assert!(e.reply().starts_with("delayed"));
    }

    #[test]
    fn bounded_excerpts() {
        let mut e = Execution::new();
        for _ in 0..500 {
            e.value(Some("é".as_bytes()), b"0123456789");
        }
        let reply = e.reply();
        assert!(reply.ends_with("..."), "{reply}");
        assert!(reply.len() <= "200 OK: ".len() + EXCERPT_MAX + 3);
        let mut e = Execution::new();
        for _ in 0..300 {
            e.param(b"abcdefgh", true);
        }
        let params = e.parameters().unwrap();
        assert!(params.len() <= EXCERPT_MAX + 10, "{}", params.len());
        assert!(params.ends_with("\"...\"]"), "{params}");
        json(&params);
        // One long string is cut inside, and the array stays valid JSON.
        let mut e = Execution::new();
        e.param(&[b'x'; 3000], true);
        e.param(b"7", false);
        let params = e.parameters().unwrap();
        assert!(params.len() <= EXCERPT_MAX + 10, "{}", params.len());
        let v = json(&params);
        assert!(v[0].as_str().unwrap().ends_with("xx..."), "{params}");
        assert_eq!(v[1], "...");
        let mut e = Execution::new();
        e.param(&[b'\n'; 3000], true);
        json(&e.parameters().unwrap());
    }

    #[test]
    fn rpc_command_filters_with_names_ending_in_a_multibyte_character() {
        // Found by the modparams fuzz target: the '*' check sliced the name
        // one byte before its end, inside the last character.
        let f = CommandFilter::parse("allow: e.uptime,\u{31b}").unwrap();
        assert!(f.traces("\u{31b}") && !f.traces("e.upti"));
        let f = CommandFilter::parse("deny: dlg.é, stats.ü*").unwrap();
        assert!(!f.traces("dlg.é") && !f.traces("stats.üx") && f.traces("dlg.e"));
        assert!(CommandFilter::parse("allow: é*é").unwrap_err().contains("é*é"));
    }

    #[test]
    fn rpc_command_filters() {
        let any = CommandFilter::default();
        assert!(any.traces("core.uptime"));
        let allow = CommandFilter::parse("allow: core.uptime, dlg.*").unwrap();
        assert!(allow.traces("core.uptime") && allow.traces("dlg.list"));
        assert!(!allow.traces("core.version") && !allow.traces("dl"));
        let deny = CommandFilter::parse("DENY:stats.get_statistics;core.*").unwrap();
        assert!(!deny.traces("core.echo") && !deny.traces("stats.get_statistics"));
        assert!(deny.traces("tm.stats"));
        assert!(CommandFilter::parse("core.uptime").is_err());
        assert!(CommandFilter::parse("maybe: core.uptime").unwrap_err().contains("maybe"));
        assert!(CommandFilter::parse("allow:").is_err());
        assert!(CommandFilter::parse("allow: co*re").unwrap_err().contains("co*re"));
        assert!(CommandFilter::parse("allow: a**").unwrap_err().contains("a**"));
    }
}
