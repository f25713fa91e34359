//! Keeping noise out of the traces: `trace_skip_methods` (methods, such as
//! OPTIONS keepalives, that no trace path sends, nor their replies) and
//! `trace_sample` (a share of the calls, chosen by a hash of the Call-ID).
//!
//! # How sampling chooses
//!
//! A call is traced when `fnv1a64(Call-ID) % 1000 < trace_sample`, where
//! `fnv1a64` is the 64-bit FNV-1a hash (offset basis 0xcbf29ce484222325,
//! prime 0x100000001b3) of the Call-ID header's value as it is on the
//! wire, without the blanks around it. Every message of a call carries
//! the same Call-ID, so a call is traced whole or not at all; and every
//! proxy on its path that uses the same `trace_sample` makes the same
//! choice, so a cluster traces the same calls. A message without a
//! Call-ID is traced.

use crate::core::sip;

/// The 64-bit FNV-1a hash of `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// Whether the call with `call_id` is in a sample of `per_mille` calls in
/// a thousand.
pub fn sampled(call_id: &[u8], per_mille: u16) -> bool {
    per_mille >= 1000 || fnv1a64(call_id) % 1000 < u64::from(per_mille)
}

/// Most methods a list holds.
pub const MAX_METHODS: usize = 32;
/// Longest method name accepted.
pub const MAX_METHOD_LEN: usize = 32;

/// A set of SIP methods, written `INVITE|MESSAGE`. Names are compared
/// without regard to case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MethodSet {
    /// Upper-case, without duplicates, in the order given.
    methods: Vec<Box<[u8]>>,
}

impl MethodSet {
    /// Reads a `|` list of method names (RFC 3261 tokens). Blanks around
    /// names are allowed; an empty list is refused.
    pub fn parse(text: &str) -> Result<MethodSet, String> {
        let mut set = MethodSet::default();
        for name in text.split('|').map(str::trim_ascii) {
            if name.is_empty() {
                return Err(format!("'{text}' has an empty method name; write methods as INVITE|MESSAGE"));
            }
            if name.len() > MAX_METHOD_LEN || !name.bytes().all(is_token_char) {
                return Err(format!("'{name}' is not a SIP method name"));
            }
            let upper: Box<[u8]> = name.as_bytes().to_ascii_uppercase().into();
            if !set.methods.contains(&upper) {
                if set.methods.len() == MAX_METHODS {
                    return Err(format!("more than {MAX_METHODS} methods"));
                }
                set.methods.push(upper);
            }
        }
        Ok(set)
    }

    pub fn is_empty(&self) -> bool {
        self.methods.is_empty()
    }

    pub fn contains(&self, method: &[u8]) -> bool {
        self.methods.iter().any(|m| m.eq_ignore_ascii_case(method))
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.methods.iter().map(|m| &m[..])
    }
}

impl std::fmt::Display for MethodSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, m) in self.methods.iter().enumerate() {
            if i > 0 {
                f.write_str("|")?;
            }
            f.write_str(&String::from_utf8_lossy(m))?;
        }
        Ok(())
    }
}

/// RFC 3261 token characters.
fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&c)
}

/// What the noise settings say about one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Trace,
    /// Its method (a reply's CSeq method) is in `trace_skip_methods`.
    SkipMethod,
    /// Its call is not in the `trace_sample`.
    SkipSample,
}

/// `trace_skip_methods` and `trace_sample` together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Noise {
    pub skip_methods: MethodSet,
    /// Calls traced in a thousand; 1000 traces all.
    pub sample_per_mille: u16,
}

impl Default for Noise {
    fn default() -> Self {
        Noise { skip_methods: MethodSet::default(), sample_per_mille: 1000 }
    }
}

impl Noise {
    /// Whether nothing is ever skipped: the checks can be left out.
    pub fn is_off(&self) -> bool {
        self.skip_methods.is_empty() && self.sample_per_mille >= 1000
    }

    pub fn samples_all(&self) -> bool {
        self.sample_per_mille >= 1000
    }

    /// The verdict on a message, from its bytes: first its method, then
    /// its call's place in the sample.
    pub fn verdict(&self, payload: &[u8]) -> Verdict {
        if self.is_off() {
            return Verdict::Trace;
        }
        let Some(s) = sip::summary(payload) else { return Verdict::Trace };
        self.verdict_of(s.method(), s.call_id)
    }

    /// The verdict on a message whose method and Call-ID are known.
    pub fn verdict_of(&self, method: Option<&[u8]>, call_id: Option<&[u8]>) -> Verdict {
        if method.is_some_and(|m| self.skip_methods.contains(m)) {
            return Verdict::SkipMethod;
        }
        if !self.samples_call(call_id) {
            return Verdict::SkipSample;
        }
        Verdict::Trace
    }

    /// Whether a message's method keeps it out: a request's own, a reply's
    /// CSeq method.
    pub fn skips_message(&self, payload: &[u8]) -> bool {
        if self.skip_methods.is_empty() {
            return false;
        }
        sip::summary(payload).and_then(|s| s.method()).is_some_and(|m| self.skip_methods.contains(m))
    }

    /// Whether the call of `call_id` is in the sample; a message without a
    /// Call-ID is.
    pub fn samples_call(&self, call_id: Option<&[u8]>) -> bool {
        match call_id {
            Some(id) => sampled(id, self.sample_per_mille),
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_has_the_published_values() {
        // From the FNV reference test suite.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn the_sample_is_a_fixed_function_of_the_call_id() {
        // Documented examples (doc/admin.md): these stay as they are.
        assert_eq!(fnv1a64(b"a84b4c76e66710@pc33.example.com"), 0x5389_3dec_217a_9801);
        assert_eq!(fnv1a64(b"a84b4c76e66710@pc33.example.com") % 1000, 185);
        assert!(sampled(b"a84b4c76e66710@pc33.example.com", 186));
        assert!(!sampled(b"a84b4c76e66710@pc33.example.com", 185));
        assert!(sampled(b"anything", 1000));
        assert!(!sampled(b"anything", 0));
        let ids: Vec<String> = (0..20_000).map(|i| format!("{i}-1234@192.0.2.1")).collect();
        for per_mille in [1u16, 100, 500, 999] {
            let n = ids.iter().filter(|id| sampled(id.as_bytes(), per_mille)).count();
            let expected = 20_000 * per_mille as usize / 1000;
            let spread = expected / 10 + 20;
            assert!(n.abs_diff(expected) <= spread, "{per_mille}: {n} of 20000, expected about {expected}");
        }
        // A larger sample holds every call of a smaller one.
        for id in &ids {
            if sampled(id.as_bytes(), 100) {
                assert!(sampled(id.as_bytes(), 101));
            }
        }
    }

    #[test]
    fn method_lists() {
        let set = MethodSet::parse("OPTIONS| notify |SUBSCRIBE|options").unwrap();
        assert_eq!(set.to_string(), "OPTIONS|NOTIFY|SUBSCRIBE");
        assert!(set.contains(b"OPTIONS") && set.contains(b"Notify"));
        assert!(!set.contains(b"INVITE") && !set.contains(b"OPTION"));
        for (bad, why) in [
            ("", "empty method"),
            ("INVITE||BYE", "empty method"),
            ("INVITE|", "empty method"),
            ("IN VITE", "not a SIP method"),
            ("INVITE;BYE", "not a SIP method"),
            (&"X".repeat(33), "not a SIP method"),
        ] {
            let e = MethodSet::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let many: Vec<String> = (0..33).map(|i| format!("M{i}")).collect();
        assert!(MethodSet::parse(&many.join("|")).unwrap_err().contains("more than 32"));
        assert_eq!(MethodSet::parse(&many[..32].join("|")).unwrap().iter().count(), 32);
    }

    const OPTIONS: &[u8] = b"OPTIONS sip:x SIP/2.0\r\nCall-ID: ping-1\r\nCSeq: 1 OPTIONS\r\n\r\n";
    const OPTIONS_OK: &[u8] = b"SIP/2.0 200 OK\r\nCall-ID: ping-1\r\nCSeq: 1 OPTIONS\r\n\r\n";
    const INVITE: &[u8] = b"INVITE sip:x SIP/2.0\r\nCall-ID: call-1\r\nCSeq: 1 INVITE\r\n\r\n";

    #[test]
    fn verdicts() {
        let off = Noise::default();
        assert!(off.is_off());
        assert_eq!(off.verdict(OPTIONS), Verdict::Trace);
        let skip = Noise { skip_methods: MethodSet::parse("OPTIONS").unwrap(), sample_per_mille: 1000 };
        assert_eq!(skip.verdict(OPTIONS), Verdict::SkipMethod);
        assert_eq!(skip.verdict(OPTIONS_OK), Verdict::SkipMethod, "a reply goes with its request");
        assert_eq!(skip.verdict(INVITE), Verdict::Trace);
        assert!(skip.skips_message(OPTIONS_OK) && !skip.skips_message(INVITE));
        assert_eq!(skip.verdict(b"not sip"), Verdict::Trace);
        let none = Noise { sample_per_mille: 0, ..Noise::default() };
        assert_eq!(none.verdict(INVITE), Verdict::SkipSample);
        assert_eq!(none.verdict_of(Some(b"INVITE"), None), Verdict::Trace, "no Call-ID: traced");
        let both = Noise { sample_per_mille: 0, ..skip };
        assert_eq!(both.verdict(OPTIONS), Verdict::SkipMethod, "the method is looked at first");
    }
}
