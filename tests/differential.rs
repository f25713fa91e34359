//! Differential tests: each scenario runs through a real Kamailio twice,
//! once with Debian's C siptrace module and once with ours, under the same
//! config; the sip_trace rows and the HEP packets of the two runs must be
//! the same, but for timestamps and the ports each run picked (see
//! tests/common/diff.rs for what is compared and normalized, and how).
//!
//! The sipp scenarios are written here, with fixed Call-IDs, tags and
//! branches, so that the two runs send the same SIP. Each scenario also
//! states how many rows and HEP packets the C module makes of it, so that
//! a scenario that went wrong cannot pass as "no difference".
//!
//! The deliberate differences listed in doc/admin.md are allowed, narrowly,
//! by the comparison (see tests/common/diff.rs); anything else fails.
//! `SIPTRACE_DIFF_ONLY_C=1` runs the C side alone and prints its output.

mod common;

use common::diff::*;
use common::*;

/// An INVITE, ACK, BYE call through the proxy, with the route set.
const UAC_CALL: &str = include_str!("fixtures/uac-call.xml");

/// The UAS of [`UAC_CALL`]: rings, answers, takes the ACK and the BYE.
const UAS_CALL: &str = include_str!("fixtures/uas-call.xml");

/// Script-function style, message mode: `sip_trace()` on every request
/// received, every reply received and every request sent.
#[test]
fn invite_call_sip_trace_in_routes() {
    differential(&sip_trace_in_routes(
        "call-sip-trace",
        vec![modparam("hep_mode_on", 1), modparam("auth_key", "diff-secret")],
    ));
}

/// The same through Kamailio's DB API (db_native=0).
#[test]
fn invite_call_sip_trace_in_routes_through_the_db_api() {
    differential(&sip_trace_in_routes(
        "call-sip-trace-dbapi",
        vec![modparam("hep_mode_on", 1), modparam("auth_key", "diff-secret"), modparam("db_native", 0)],
    ));
}

/// The scenario above with other parameters: `sip_trace()` on every
/// request received, every reply received and every request sent, with
/// rows and HEP.
fn sip_trace_in_routes(name: &str, mut modparams: Vec<String>) -> Scenario<'_> {
    modparams.insert(0, modparam("trace_to_database", 1));
    Scenario {
        name,
        transport: Transport::Udp,
        uac: UAC_CALL,
        uas: Some(UAS_CALL),
        calls: 2,
        modparams,
        hooks: Hooks { on_request: "sip_trace();", on_reply: "sip_trace();", on_send: "sip_trace();" },
        // Per call: INVITE, ACK, BYE received and sent; 180, 200, 200 received.
        expect_rows: 18,
        expect_hep: 18,
        c_hooks: None,
        extra_in_ours: None,
        advertise: None,
    }
}

/// `xheaders_write`: what goes to the collector carries the
/// `X-Siptrace-*` headers (the rows do not).
#[test]
fn invite_call_xheaders_write() {
    differential(&sip_trace_in_routes(
        "call-xheaders",
        vec![modparam("hep_mode_on", 1), modparam("xheaders_write", 1)],
    ));
}

/// `traced_user_avp`: a row per value of the AVP, with the value in
/// `traced_user`; the HEP packet once.
#[test]
fn invite_call_traced_user_avp() {
    differential(&Scenario {
        name: "call-traced-user",
        transport: Transport::Udp,
        uac: UAC_CALL,
        uas: Some(UAS_CALL),
        calls: 2,
        modparams: vec![modparam("hep_mode_on", 1), modparam("traced_user_avp", "$avp(tu)")],
        hooks: Hooks {
            on_request:
                "if (is_method(\"INVITE\")) { $avp(tu) = \"alice\"; $avp(tu) = \"bob\"; } sip_trace();",
            ..Default::default()
        },
        // Per call, INVITE: rows for '', alice and bob; ACK and BYE: one row.
        expect_rows: 10,
        expect_hep: 6,
        c_hooks: None,
        extra_in_ours: None,
        advertise: None,
    });
}

/// Core-callback style: `trace_mode` 3 (HEP and rows) for every message.
#[test]
fn invite_call_trace_mode() {
    differential(&trace_mode_scenario("call-trace-mode", vec![]));
}

/// The same, with our rows through Kamailio's DB API (db_sqlite) rather
/// than the native writer: both paths write the C module's rows.
#[test]
fn invite_call_trace_mode_through_the_db_api() {
    differential(&trace_mode_scenario("call-trace-mode-dbapi", vec![modparam("db_native", 0)]));
}

fn trace_mode_scenario(name: &str, ours: Vec<String>) -> Scenario<'_> {
    let mut modparams = vec![modparam("trace_mode", 3), modparam("trace_to_database", 0)];
    modparams.extend(ours);
    Scenario {
        name,
        transport: Transport::Udp,
        uac: UAC_CALL,
        uas: Some(UAS_CALL),
        calls: 2,
        modparams,
        hooks: Hooks::default(),
        expect_rows: 26,
        expect_hep: 26,
        c_hooks: None,
        extra_in_ours: None,
        advertise: None,
    }
}

/// Transaction mode from the script: every request starts its own
/// transaction trace, in-dialog ones included.
#[test]
fn invite_call_sip_trace_mode_t() {
    differential(&Scenario {
        name: "call-mode-t",
        transport: Transport::Udp,
        uac: UAC_CALL,
        uas: Some(UAS_CALL),
        calls: 2,
        modparams: vec![modparam("hep_mode_on", 1)],
        hooks: Hooks { on_request: "sip_trace_mode(\"t\");", ..Default::default() },
        // Per call, all 13 messages but the ACK the proxy forwards, which
        // belongs to no transaction.
        expect_rows: 24,
        expect_hep: 24,
        c_hooks: None,
        extra_in_ours: None,
        advertise: None,
    });
}

/// Dialog mode: the initial INVITE starts tracing its dialog, which then
/// traces every request within it. `start` is the script call that starts
/// it, on the initial INVITE; the dialog is created after it
/// ([`CREATE_DIALOG`]). Kamailio 5.6's C module misses the ACK that
/// confirms the dialog (it does not listen to that dialog event): ours
/// traces it, one more row and packet per call. 6.0's C module traces it
/// too (`trace_dialog_ack`, 1 by default).
fn dialog_scenario<'a>(name: &'a str, hooks: &'a DialogHooks) -> Scenario<'a> {
    Scenario {
        name,
        transport: Transport::Udp,
        uac: UAC_CALL,
        uas: Some(UAS_CALL),
        calls: 2,
        modparams: vec![modparam("hep_mode_on", 1), DIALOG_MODULE.to_string()],
        hooks: Hooks { on_request: &hooks.ours, ..Default::default() },
        // Per call: the INVITE's 7 messages, and BYE with its 200 both ways.
        expect_rows: 22 + C_DIALOG_ACK_ROWS,
        expect_hep: 22 + C_DIALOG_ACK_ROWS,
        c_hooks: hooks.c.as_deref().map(|on_request| Hooks { on_request, ..Default::default() }),
        extra_in_ours: (C_DIALOG_ACK_ROWS == 0).then_some(("ACK ", 1)),
        advertise: None,
    }
}

/// The rows (and HEP packets) of the ACK that confirms a traced dialog in
/// the C module's run of [`dialog_scenario`], for its 2 calls.
#[cfg(kamailio_6_0)]
const C_DIALOG_ACK_ROWS: usize = 2;
#[cfg(not(kamailio_6_0))]
const C_DIALOG_ACK_ROWS: usize = 0;

/// The request route of a dialog scenario, for ours and, where it differs,
/// for the C module.
struct DialogHooks {
    ours: String,
    c: Option<String>,
}

impl DialogHooks {
    /// `start` on the initial INVITE, then the dialog created.
    fn new(start: &str, c_start: Option<&str>) -> DialogHooks {
        let route = |start: &str| format!("if (!has_totag()) {{ {start} {CREATE_DIALOG} }}");
        DialogHooks { ours: route(start), c: c_start.map(route) }
    }
}

#[test]
fn invite_call_sip_trace_d_with_uri() {
    let hooks = DialogHooks::new("sip_trace(\"@HEP_URI@\", \"\", \"d\");", None);
    differential(&dialog_scenario("call-d-uri", &hooks));
}

/// `sip_trace_mode("d")` traces nothing with the C module (kamailio issues
/// #4178, #2250); its run uses the URI form, which means the same with
/// duplicate_uri set to that URI.
#[test]
fn invite_call_sip_trace_mode_d() {
    let hooks = DialogHooks::new("sip_trace_mode(\"d\");", Some("sip_trace(\"@HEP_URI@\", \"\", \"d\");"));
    differential(&dialog_scenario("call-mode-d", &hooks));
}

/// Transaction mode the old way: `trace_flag` set on the request, then
/// `sip_trace()`.
#[test]
fn invite_call_trace_flag() {
    differential(&Scenario {
        name: "call-trace-flag",
        transport: Transport::Udp,
        uac: UAC_CALL,
        uas: Some(UAS_CALL),
        calls: 2,
        modparams: vec![modparam("hep_mode_on", 1), modparam("trace_flag", 22)],
        hooks: Hooks { on_request: "setflag(22); sip_trace();", ..Default::default() },
        expect_rows: 24,
        expect_hep: 24,
        c_hooks: None,
        extra_in_ours: None,
        advertise: None,
    });
}

/// An INVITE the UAC cancels after the 180.
const UAC_CANCEL: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="diff uac cancel">
  <send retrans="2000"><![CDATA[

INVITE sip:uas@siptrace-rs.test SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=z9hG4bK-uac-[call_number]-1
From: <sip:uac@siptrace-rs.test>;tag=uac-[call_number]
To: <sip:uas@siptrace-rs.test>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:uac@[local_ip]:[local_port];transport=[transport]>
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="100" optional="true"/>
  <recv response="180"/>
  <send retrans="2000"><![CDATA[

CANCEL sip:uas@siptrace-rs.test SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=z9hG4bK-uac-[call_number]-1
From: <sip:uac@siptrace-rs.test>;tag=uac-[call_number]
To: <sip:uas@siptrace-rs.test>
Call-ID: [call_id]
CSeq: 1 CANCEL
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
  <recv response="487"/>
  <send><![CDATA[

ACK sip:uas@siptrace-rs.test SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=z9hG4bK-uac-[call_number]-1
From: <sip:uac@siptrace-rs.test>;tag=uac-[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
  <pause milliseconds="100"/>
</scenario>
"#;

/// The UAS of [`UAC_CANCEL`]: rings and never answers; on the CANCEL it
/// answers 200 and ends the INVITE with 487 (with the INVITE's two Vias,
/// kept when it came), then takes the ACK.
const UAS_CANCEL: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="diff uas cancel">
  <recv request="INVITE" crlf="true">
    <action>
      <ereg regexp="SIP/2.0/.*" search_in="hdr" header="Via:" occurrence="1" assign_to="via1"/>
      <ereg regexp="SIP/2.0/.*" search_in="hdr" header="Via:" occurrence="2" assign_to="via2"/>
    </action>
  </recv>
  <send><![CDATA[

SIP/2.0 180 Ringing
[last_Via:]
[last_Record-Route:]
[last_From:]
[last_To:];tag=uas-[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:uas@[local_ip]:[local_port];transport=[transport]>
Content-Length: 0

]]></send>
  <recv request="CANCEL"/>
  <send><![CDATA[

SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=uas-[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <send retrans="2000"><![CDATA[

SIP/2.0 487 Request Terminated
Via: [$via1]
Via: [$via2]
[last_From:]
[last_To:];tag=uas-[call_number]
[last_Call-ID:]
CSeq: 1 INVITE
Content-Length: 0

]]></send>
  <recv request="ACK"/>
</scenario>
"#;

/// CANCEL: the proxy answers it, relays it, the UAS ends the INVITE with
/// 487, tm ACKs that and relays it; transaction mode.
#[test]
fn cancelled_invite_sip_trace_mode_t() {
    differential(&Scenario {
        name: "cancel-mode-t",
        transport: Transport::Udp,
        uac: UAC_CANCEL,
        uas: Some(UAS_CANCEL),
        calls: 1,
        modparams: vec![modparam("hep_mode_on", 1)],
        hooks: Hooks { on_request: "sip_trace_mode(\"t\");", ..Default::default() },
        // INVITE in and out, 100, 180 in and out, CANCEL in and out, 200 of
        // the proxy and of the UAS, 487 in and out, tm's ACK, the UAC's ACK.
        expect_rows: 13,
        expect_hep: 13,
        c_hooks: None,
        extra_in_ours: None,
        advertise: None,
    });
}

/// A REGISTER the proxy challenges, then one it accepts, both answered
/// statelessly.
const UAC_REGISTER: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="diff uac register">
  <send retrans="2000"><![CDATA[

REGISTER sip:siptrace-rs.test SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=z9hG4bK-uac-[call_number]-1
From: <sip:alice@siptrace-rs.test>;tag=uac-[call_number]
To: <sip:alice@siptrace-rs.test>
Call-ID: [call_id]
CSeq: 1 REGISTER
Contact: <sip:alice@[local_ip]:[local_port];transport=[transport]>
Expires: 3600
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="401"/>
  <send retrans="2000"><![CDATA[

REGISTER sip:siptrace-rs.test SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=z9hG4bK-uac-[call_number]-2
From: <sip:alice@siptrace-rs.test>;tag=uac-[call_number]
To: <sip:alice@siptrace-rs.test>
Call-ID: [call_id]
CSeq: 2 REGISTER
Contact: <sip:alice@[local_ip]:[local_port];transport=[transport]>
Authorization: Digest username="alice", realm="siptrace-rs.test", nonce="diff-nonce", uri="sip:siptrace-rs.test", response="not-checked"
Expires: 3600
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
</scenario>
"#;

/// The proxy's answers to REGISTER: a challenge without credentials, 200
/// with them; stateless.
const REGISTRAR: &str = r#"
    if (is_method("REGISTER")) {
        if (!is_present_hf("Authorization")) {
            append_to_reply("WWW-Authenticate: Digest realm=\"siptrace-rs.test\", nonce=\"diff-nonce\"\r\n");
            sl_send_reply("401", "Unauthorized");
            exit;
        }
        sl_send_reply("200", "OK");
        exit;
    }"#;

/// REGISTER in transaction mode: the stateless replies are traced too.
#[test]
fn register_challenge_sip_trace_mode_t() {
    let on_request = format!("sip_trace_mode(\"t\");{REGISTRAR}");
    differential(&Scenario {
        name: "register-mode-t",
        transport: Transport::Udp,
        uac: UAC_REGISTER,
        uas: None,
        calls: 1,
        modparams: vec![modparam("hep_mode_on", 1)],
        hooks: Hooks { on_request: &on_request, ..Default::default() },
        expect_rows: 4,
        expect_hep: 4,
        c_hooks: None,
        extra_in_ours: None,
        advertise: None,
    });
}

/// REGISTER in message mode: `sip_trace()` stores the requests (rows
/// only, `hep_mode_on` 0), and `trace_mode` 1 sends HEP of every message,
/// the stateless replies included.
#[test]
fn register_challenge_sip_trace_and_trace_mode() {
    let on_request = format!("sip_trace();{REGISTRAR}");
    differential(&Scenario {
        name: "register-mode-m",
        transport: Transport::Udp,
        uac: UAC_REGISTER,
        uas: None,
        calls: 1,
        modparams: vec![modparam("hep_mode_on", 0), modparam("trace_mode", 1)],
        hooks: Hooks { on_request: &on_request, ..Default::default() },
        expect_rows: 2,
        expect_hep: 4,
        c_hooks: None,
        extra_in_ours: None,
        advertise: None,
    });
}

const UAC_OPTIONS: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="diff uac options">
  <send retrans="2000"><![CDATA[

OPTIONS sip:siptrace-rs.test SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=z9hG4bK-uac-[call_number]-1
From: <sip:uac@siptrace-rs.test>;tag=uac-[call_number]
To: <sip:siptrace-rs.test>
Call-ID: [call_id]
CSeq: 1 OPTIONS
Contact: <sip:uac@[local_ip]:[local_port];transport=[transport]>
Accept: application/sdp
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
</scenario>
"#;

/// OPTIONS answered statelessly: rows of both messages from `trace_mode`
/// 2, HEP of the request from `sip_trace()`. With `trace_mode` 2 the C
/// module's `sip_trace()` writes a row as well, although
/// `trace_to_database` is 0: two rows of each OPTIONS.
#[test]
fn options_answered_statelessly() {
    differential(&Scenario {
        name: "options",
        transport: Transport::Udp,
        uac: UAC_OPTIONS,
        uas: None,
        calls: 2,
        modparams: vec![
            modparam("trace_mode", 2),
            modparam("trace_to_database", 0),
            modparam("hep_mode_on", 1),
        ],
        hooks: Hooks {
            on_request: r#"sip_trace();
    if (is_method("OPTIONS")) { sl_send_reply("200", "OK"); exit; }"#,
            ..Default::default()
        },
        expect_rows: 6,
        expect_hep: 2,
        c_hooks: None,
        extra_in_ours: None,
        advertise: None,
    });
}

const UAC_MESSAGE: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="diff uac message">
  <send retrans="2000"><![CDATA[

MESSAGE sip:uas@siptrace-rs.test SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=z9hG4bK-uac-[call_number]-1
From: <sip:uac@siptrace-rs.test>;tag=uac-[call_number]
To: <sip:uas@siptrace-rs.test>
Call-ID: [call_id]
CSeq: 1 MESSAGE
Max-Forwards: 70
Content-Type: text/plain
Content-Length: [len]

Hello from the differential test, message [call_number].
]]></send>
  <recv response="200"/>
</scenario>
"#;

const UAS_MESSAGE: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="diff uas message">
  <recv request="MESSAGE"/>
  <send><![CDATA[

SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=uas-[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
</scenario>
"#;

/// MESSAGE relayed through the proxy, transaction mode.
#[test]
fn message_relayed_sip_trace_mode_t() {
    differential(&Scenario {
        name: "message-mode-t",
        transport: Transport::Udp,
        uac: UAC_MESSAGE,
        uas: Some(UAS_MESSAGE),
        calls: 2,
        modparams: vec![modparam("hep_mode_on", 1)],
        hooks: Hooks { on_request: "sip_trace_mode(\"t\");", ..Default::default() },
        expect_rows: 8,
        expect_hep: 8,
        c_hooks: None,
        extra_in_ours: None,
        advertise: None,
    });
}

/// A call with a re-INVITE: INVITE, 200, ACK; re-INVITE, 200, ACK; BYE, 200.
const UAC_REINVITE: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="diff uac reinvite">
  <send retrans="2000"><![CDATA[

INVITE sip:uas@siptrace-rs.test SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=z9hG4bK-uac-[call_number]-1
From: <sip:uac@siptrace-rs.test>;tag=uac-[call_number]
To: <sip:uas@siptrace-rs.test>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:uac@[local_ip]:[local_port];transport=[transport]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=uac 1 1 IN IP4 [local_ip]
s=-
c=IN IP4 [local_ip]
t=0 0
m=audio 6000 RTP/AVP 0
a=rtpmap:0 PCMU/8000

]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rrs="true"/>
  <send><![CDATA[

ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=z9hG4bK-uac-[call_number]-2
[routes]
From: <sip:uac@siptrace-rs.test>;tag=uac-[call_number]
To: <sip:uas@siptrace-rs.test>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
  <pause milliseconds="20"/>
  <send retrans="2000"><![CDATA[

INVITE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=z9hG4bK-uac-[call_number]-3
[routes]
From: <sip:uac@siptrace-rs.test>;tag=uac-[call_number]
To: <sip:uas@siptrace-rs.test>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 INVITE
Contact: <sip:uac@[local_ip]:[local_port];transport=[transport]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=uac 1 2 IN IP4 [local_ip]
s=-
c=IN IP4 [local_ip]
t=0 0
m=audio 6000 RTP/AVP 0
a=sendonly

]]></send>
  <recv response="100" optional="true"/>
  <recv response="200"/>
  <send><![CDATA[

ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=z9hG4bK-uac-[call_number]-4
[routes]
From: <sip:uac@siptrace-rs.test>;tag=uac-[call_number]
To: <sip:uas@siptrace-rs.test>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
  <pause milliseconds="20"/>
  <send retrans="2000"><![CDATA[

BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=z9hG4bK-uac-[call_number]-5
[routes]
From: <sip:uac@siptrace-rs.test>;tag=uac-[call_number]
To: <sip:uas@siptrace-rs.test>[peer_tag_param]
Call-ID: [call_id]
CSeq: 3 BYE
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
</scenario>
"#;

const UAS_REINVITE: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="diff uas reinvite">
  <recv request="INVITE" crlf="true"/>
  <send><![CDATA[

SIP/2.0 180 Ringing
[last_Via:]
[last_Record-Route:]
[last_From:]
[last_To:];tag=uas-[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:uas@[local_ip]:[local_port];transport=[transport]>
Content-Length: 0

]]></send>
  <pause milliseconds="20"/>
  <send retrans="2000"><![CDATA[

SIP/2.0 200 OK
[last_Via:]
[last_Record-Route:]
[last_From:]
[last_To:];tag=uas-[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:uas@[local_ip]:[local_port];transport=[transport]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=uas 1 1 IN IP4 [local_ip]
s=-
c=IN IP4 [local_ip]
t=0 0
m=audio 6002 RTP/AVP 0
a=rtpmap:0 PCMU/8000

]]></send>
  <recv request="ACK" crlf="true"/>
  <recv request="INVITE"/>
  <send retrans="2000"><![CDATA[

SIP/2.0 200 OK
[last_Via:]
[last_Record-Route:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:uas@[local_ip]:[local_port];transport=[transport]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=uas 1 2 IN IP4 [local_ip]
s=-
c=IN IP4 [local_ip]
t=0 0
m=audio 6002 RTP/AVP 0
a=recvonly

]]></send>
  <recv request="ACK" crlf="true"/>
  <recv request="BYE"/>
  <send><![CDATA[

SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:uas@[local_ip]:[local_port];transport=[transport]>
Content-Length: 0

]]></send>
</scenario>
"#;

/// A re-INVITE in the dialog, every message traced by `trace_mode` 3.
#[test]
fn reinvite_in_dialog_trace_mode() {
    differential(&Scenario {
        name: "reinvite",
        transport: Transport::Udp,
        uac: UAC_REINVITE,
        uas: Some(UAS_REINVITE),
        calls: 1,
        modparams: vec![modparam("trace_mode", 3), modparam("trace_to_database", 0)],
        hooks: Hooks::default(),
        // The 13 of a call, plus re-INVITE, 100, re-INVITE, 200, 200, ACK, ACK.
        expect_rows: 20,
        expect_hep: 20,
        c_hooks: None,
        extra_in_ours: None,
        advertise: None,
    });
}

/// The call over TCP: rows of every message from `trace_mode` 2, HEP from
/// `sip_trace()` in the routes, which writes rows too (as with OPTIONS).
/// The requests received carry a correlation id of the script's, which
/// both modules must send alike.
#[test]
fn invite_call_over_tcp() {
    differential(&Scenario {
        name: "call-tcp",
        transport: Transport::Tcp,
        uac: UAC_CALL,
        uas: Some(UAS_CALL),
        calls: 2,
        modparams: vec![
            modparam("trace_mode", 2),
            modparam("trace_to_database", 0),
            modparam("hep_mode_on", 1),
        ],
        // A URI and a correlation id of the script's on the requests received.
        hooks: Hooks {
            on_request: "sip_trace(\"@HEP_URI@\", \"tcp-$ci-$cs\");",
            on_reply: "sip_trace();",
            on_send: "sip_trace();",
        },
        // Per call, 13 rows of trace_mode and 9 of sip_trace().
        expect_rows: 44,
        expect_hep: 18,
        c_hooks: None,
        extra_in_ours: None,
        advertise: None,
    });
}

/// An INVITE rejected statelessly: the ACK of the 486 never reaches the
/// script, as the sl module absorbs it; the C module traces it still
/// (`trace_sl_acks`, 1 by default).
const UAC_REJECTED: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="diff uac rejected">
  <send retrans="2000"><![CDATA[

INVITE sip:busy@siptrace-rs.test SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=z9hG4bK-uac-[call_number]-1
From: <sip:uac@siptrace-rs.test>;tag=uac-[call_number]
To: <sip:busy@siptrace-rs.test>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:uac@[local_ip]:[local_port];transport=[transport]>
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="486"/>
  <send><![CDATA[

ACK sip:busy@siptrace-rs.test SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=z9hG4bK-uac-[call_number]-1
From: <sip:uac@siptrace-rs.test>;tag=uac-[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
  <pause milliseconds="100"/>
</scenario>
"#;

/// `sip_trace()` in message mode on an INVITE the proxy rejects with
/// `sl_send_reply`; the ACK is traced by the sl callback.
#[test]
fn invite_rejected_statelessly() {
    differential(&Scenario {
        name: "rejected",
        transport: Transport::Udp,
        uac: UAC_REJECTED,
        uas: None,
        calls: 2,
        modparams: vec![modparam("hep_mode_on", 1)],
        hooks: Hooks {
            on_request: r#"sip_trace();
    if (is_method("INVITE") && !has_totag()) { sl_send_reply("486", "Busy Here"); exit; }"#,
            ..Default::default()
        },
        expect_rows: 4,
        expect_hep: 4,
        c_hooks: None,
        extra_in_ours: None,
        advertise: None,
    });
}

// Kamailio 6.0's siptrace: what it added and fixed since 5.6, each run
// against 6.0's own C module.

/// `trace_dialog_ack` 0: neither module traces the ACK that confirms a
/// traced dialog (with 1, the default, both do: the dialog tests above).
#[test]
#[cfg_attr(not(kamailio_6_0), ignore = "needs Kamailio 6.0")]
fn dialog_without_its_ack() {
    let hooks = DialogHooks::new("sip_trace(\"@HEP_URI@\", \"\", \"d\");", None);
    let mut scenario = dialog_scenario("call-d-no-ack", &hooks);
    scenario.modparams.push(modparam("trace_dialog_ack", 0));
    (scenario.expect_rows, scenario.expect_hep, scenario.extra_in_ours) = (22, 22, None);
    let ours = differential(&scenario);
    if let Some(ours) = ours {
        assert!(!ours.rows.iter().any(|r| r.method == "ACK"), "no ACK traced: {:?}", ours.rows);
    }
}

/// `sip_trace_msg(vmsg, saddr, taddr, daddr, corrid)`: the text, as HEP,
/// with the script's addresses, to the URI given or to `duplicate_uri`,
/// whatever `hep_mode_on` says; no row. The second call gives no
/// correlation id: C's packet then has none, ours the Call-ID (a
/// documented difference the comparison allows).
#[test]
#[cfg_attr(not(kamailio_6_0), ignore = "needs Kamailio 6.0")]
fn sip_trace_msg_sends_what_the_script_gives() {
    let ours = differential(&Scenario {
        name: "sip-trace-msg",
        uac: UAC_OPTIONS,
        calls: 2,
        modparams: vec![modparam("trace_to_database", 1), modparam("hep_mode_on", 0)],
        hooks: Hooks {
            on_request: r#"sip_trace_msg("$mb", "udp:$si:$sp", "udp:$Ri:$Rp", "@HEP_URI@", "msg-$ci");
    sip_trace_msg("$mb", "tcp:$Ri:$Rp", "udp:$si:$sp", "", "");
    if (is_method("OPTIONS")) { sl_send_reply("200", "OK"); exit; }"#,
            ..Default::default()
        },
        expect_rows: 0,
        expect_hep: 4,
        ..Default::default()
    });
    if let Some(ours) = ours {
        let correlated = ours.packets.iter().filter(|p| {
            p["decoded"]["rcinfo"]["correlation_id"].as_str().is_some_and(|c| c.starts_with("msg-"))
        });
        assert_eq!(correlated.count(), 2, "{:?}", ours.packets);
    }
}

/// `data_mode` 1: `trace_mode` records the address the proxy's socket
/// advertises as the proxy's end, in rows and HEP.
#[test]
#[cfg_attr(not(kamailio_6_0), ignore = "needs Kamailio 6.0")]
fn data_mode_records_the_advertised_address() {
    let ours = differential(&Scenario {
        name: "data-mode",
        uac: UAC_OPTIONS,
        calls: 2,
        modparams: vec![
            modparam("trace_mode", 3),
            modparam("trace_to_database", 0),
            modparam("data_mode", 1),
        ],
        hooks: Hooks {
            on_request: r#"if (is_method("OPTIONS")) { sl_send_reply("200", "OK"); exit; }"#,
            ..Default::default()
        },
        expect_rows: 4,
        expect_hep: 4,
        advertise: Some("127.0.0.2:5999"),
        ..Default::default()
    });
    if let Some(ours) = ours {
        for r in &ours.rows {
            let proxy_end = if r.direction == "in" { &r.toip } else { &r.fromip };
            assert_eq!(proxy_end, "udp:127.0.0.2:5999", "{r:?}");
        }
    }
}

/// `$siptrace(direction)` in `event_route[siptrace:msg]`: 5.6's C module
/// does not know the name (it refuses the config); 6.0's does, and drops
/// what it is told to as ours does.
#[test]
#[cfg_attr(not(kamailio_6_0), ignore = "needs Kamailio 6.0")]
fn siptrace_direction_in_the_event_route() {
    let ours = differential(&Scenario {
        name: "direction",
        uac: UAC_CALL,
        uas: Some(UAS_CALL),
        calls: 2,
        modparams: vec![
            modparam("trace_mode", 3),
            modparam("trace_to_database", 0),
            "event_route[siptrace:msg] {\n    if ($siptrace(direction) == \"out\") { drop; }\n}\n"
                .to_string(),
        ],
        // Per call, the 6 messages the proxy receives of its 13: INVITE,
        // ACK, BYE; 180, 200, 200.
        expect_rows: 12,
        expect_hep: 12,
        ..Default::default()
    });
    if let Some(ours) = ours {
        assert!(ours.rows.iter().all(|r| r.direction == "in"), "{:?}", ours.rows);
    }
}

/// A dialog whose INVITE spirals: the proxy relays it to itself once
/// (marked with a header), and on its second pass to the UAS; every
/// request within the dialog passes the proxy twice too (its Route set has
/// the proxy twice). Each pass of the INVITE starts a dialog trace.
fn spiral_scenario<'a>(name: &'a str, on_request: &'a str, spiral: Option<i32>) -> Scenario<'a> {
    let mut modparams = vec![modparam("hep_mode_on", 1), DIALOG_MODULE.to_string()];
    modparams.extend(spiral.map(|n| modparam("trace_dialog_spiral", n)));
    Scenario {
        name,
        uac: UAC_CALL,
        uas: Some(UAS_CALL),
        calls: 1,
        modparams,
        hooks: Hooks { on_request, ..Default::default() },
        ..Default::default()
    }
}

/// The request route of [`spiral_scenario`].
fn spiral_route() -> String {
    format!(
        r#"if (!has_totag() && is_method("INVITE")) {{
        sip_trace("@HEP_URI@", "", "d");
        {CREATE_DIALOG}
        if (!is_present_hf("X-Spiral")) {{
            append_hf("X-Spiral: 1\r\n");
            record_route();
            $du = "sip:" + $Ri + ":" + $Rp;
            t_relay();
            exit;
        }}
    }}"#
    )
}

/// `trace_dialog_spiral` 1 (the default): the trace the spiraled INVITE
/// starts follows the dialog as well, so each pass of a request within it
/// is traced once per trace.
#[test]
#[cfg_attr(not(kamailio_6_0), ignore = "needs Kamailio 6.0")]
fn spiraled_dialog_traced_again() {
    let route = spiral_route();
    let mut scenario = spiral_scenario("spiral-on", &route, Some(1));
    (scenario.expect_rows, scenario.expect_hep) = (SPIRAL_ON, SPIRAL_ON);
    differential(&scenario);
}

/// `trace_dialog_spiral` 0: the spiraled INVITE's trace covers its own
/// transaction only.
#[test]
#[cfg_attr(not(kamailio_6_0), ignore = "needs Kamailio 6.0")]
fn spiraled_dialog_not_traced_again() {
    let route = spiral_route();
    let mut scenario = spiral_scenario("spiral-off", &route, Some(0));
    (scenario.expect_rows, scenario.expect_hep) = (SPIRAL_OFF, SPIRAL_OFF);
    differential(&scenario);
}

/// Kamailio 5.6's siptrace has no spiral tracing, and neither has ours
/// there: as `trace_dialog_spiral` 0 on 6.0, but for the ACK that
/// confirms the dialog, which 5.6's C module misses.
#[test]
#[cfg_attr(not(kamailio_5_6), ignore = "checks Kamailio 5.6")]
fn spiraled_dialog_on_5_6() {
    let route = spiral_route();
    let mut scenario = spiral_scenario("spiral-5.6", &route, None);
    (scenario.expect_rows, scenario.expect_hep) = (SPIRAL_OFF - 1, SPIRAL_OFF - 1);
    scenario.extra_in_ours = Some(("ACK ", 1));
    differential(&scenario);
}

/// The rows (and HEP packets) of [`spiral_scenario`]'s call with spirals
/// not traced: the 15 messages of the INVITE's two passes (INVITE in and
/// out, 100, 180 and 200 in and out, each twice), the ACK that confirms
/// the dialog, the BYE in and out and its 200 in and out: the BYE's first
/// pass through the proxy; neither module traces its second.
const SPIRAL_OFF: usize = 20;
/// With spirals traced, two traces follow the dialog: the ACK, the BYE
/// and its 200 are traced twice.
const SPIRAL_ON: usize = 25;

/// The comparison itself, on made-up rows and packets: what its
/// normalizations must leave apart.
mod harness {
    use super::*;
    use serde_json::json;

    const PORTS: PortMap = PortMap { uac: 5071, proxy: 5060, uas: 5080, hep: 9060, ephemeral: false };

    fn row(msg: &str, fromip: &str, toip: &str, totag: &str) -> TraceRow {
        TraceRow {
            time_stamp: String::new(),
            time_us: 0,
            callid: "c1".into(),
            traced_user: String::new(),
            msg: msg.as_bytes().to_vec(),
            method: "INVITE".into(),
            status: String::new(),
            fromip: fromip.into(),
            toip: toip.into(),
            fromtag: "f1".into(),
            totag: totag.into(),
            direction: "out".into(),
        }
    }

    /// A HEPv3 packet as the listener reports it: chunks of vendor 0.
    fn packet(chunks: &[(u16, &[u8])]) -> serde_json::Value {
        let mut body = Vec::new();
        for (kind, value) in chunks {
            body.extend_from_slice(&0u16.to_be_bytes());
            body.extend_from_slice(&kind.to_be_bytes());
            body.extend_from_slice(&(6 + value.len() as u16).to_be_bytes());
            body.extend_from_slice(value);
        }
        let mut raw = b"HEP3".to_vec();
        raw.extend_from_slice(&(6 + body.len() as u16).to_be_bytes());
        raw.extend_from_slice(&body);
        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        json!({ "raw": hex, "decoded": { "rcinfo": {}, "payload": "" } })
    }

    fn sip_packet(correlation: Option<&str>) -> serde_json::Value {
        let payload = b"OPTIONS sip:x SIP/2.0\r\nCall-ID: c1\r\nContent-Length: 0\r\n\r\n";
        let mut chunks: Vec<(u16, &[u8])> = vec![
            (1, &[2]),
            (2, &[17]),
            (3, &[127, 0, 0, 1]),
            (4, &[127, 0, 0, 1]),
            (7, &[0x13, 0xdf]), // 5087: no role
            (8, &[0x13, 0xc4]), // 5060: the proxy
            (9, &[0, 0, 0, 1]),
            (10, &[0, 0, 0, 2]),
            (11, &[1]),
            (12, &[0, 0, 9, 164]),
        ];
        if let Some(c) = correlation {
            chunks.push((17, c.as_bytes()));
        }
        chunks.push((15, payload));
        packet(&chunks)
    }

    fn differs(c: Vec<Item>, ours: Vec<Item>) -> bool {
        compare("items", c, ours).report.is_some()
    }

    #[test]
    fn an_own_totag_of_ours_passes_for_an_empty_one_only() {
        let msg = "SIP/2.0 200 OK\r\nTo: <sip:x>;tag=abc\r\nCall-ID: c1\r\n\r\n";
        let one = |totag: &str| {
            let rows = [row(msg, "udp:127.0.0.1:5060", "udp:127.0.0.1:5071", totag)];
            items(&rows, &[], &PORTS).0
        };
        // C stores '' where ours stores the message's own To tag: allowed.
        assert!(!differs(one(""), one("abc")));
        // Any other tag of ours, or a C tag ours lacks: different.
        assert!(differs(one(""), one("abd")));
        assert!(differs(one("abc"), one("")));
        assert!(differs(one("zzz"), one("abc")));
    }

    #[test]
    fn ports_are_replaced_only_where_they_are_exactly_a_run_port() {
        let text = b"Via: SIP/2.0/UDP 127.0.0.1:5071;branch=x\r\nContact: <sip:127.0.0.1:50710>\r\n\
                     X: 127.0.0.2:5071 5071 127.0.0.1:5060\r\n";
        let expected = b"Via: SIP/2.0/UDP 127.0.0.1:<UAC>;branch=x\r\nContact: <sip:127.0.0.1:50710>\r\n\
                         X: 127.0.0.2:5071 5071 127.0.0.1:<proxy>\r\n";
        assert_eq!(String::from_utf8_lossy(&normalize_sip(text, &PORTS)), String::from_utf8_lossy(expected));
        assert_eq!(PORTS.endpoint(5080, Some(40000)), "<UAS>");
        assert_eq!(PORTS.endpoint(40000, Some(5080)), "40000", "UDP");
        let tcp = PortMap { ephemeral: true, ..PORTS };
        assert_eq!(tcp.endpoint(40000, Some(5080)), "<ephemeral, peer UAS>");
        assert_eq!(tcp.endpoint(40000, Some(40001)), "40000");
    }

    #[test]
    fn kamailio_hashes_compare_up_to_a_consistent_renaming_only() {
        let msg = |md5: &str, tag: &str| {
            format!("INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKca84.{md5}.0\r\nTo: <sip:x>;tag={tag}\r\n\r\n")
        };
        let (a, b, c) = ("a".repeat(32), "b".repeat(32), "c".repeat(32));
        let (t1, t2) = (format!("{}.1234abcd", "d".repeat(32)), format!("{}-1234abcd", "e".repeat(32)));
        let run = |rows: &[(String, &str)]| {
            let rows: Vec<TraceRow> = rows
                .iter()
                .map(|(m, totag)| row(m, "udp:127.0.0.1:5060", "udp:127.0.0.1:5080", totag))
                .collect();
            items(&rows, &[], &PORTS).0
        };
        // The same messages, with other hash values: equal.
        let c_run = run(&[(msg(&a, &t1), &t1), (msg(&b, &t1), &t1)]);
        let same = run(&[(msg(&c, &t2), &t2), (msg(&a, &t2), &t2)]);
        assert!(!differs(c_run.clone(), same));
        // Two messages sharing a branch where C's had two: different.
        let shared = run(&[(msg(&c, &t2), &t2), (msg(&c, &t2), &t2)]);
        assert!(differs(c_run.clone(), shared));
        // The totag column not the tag of the message: different.
        let other_tag = run(&[(msg(&a, &t1), &t2), (msg(&b, &t1), &t1)]);
        assert!(differs(c_run.clone(), other_tag));
        // Anything else changed: different.
        let changed = run(&[(msg(&a, &t1).replace("ca84", "ca85"), &t1), (msg(&b, &t1), &t1)]);
        assert!(differs(c_run, changed));
    }

    #[test]
    fn a_correlation_id_of_ours_passes_for_none_only_if_it_is_the_call_id() {
        let items_of = |p: serde_json::Value| items(&[], &[p], &PORTS).1;
        let without = items_of(sip_packet(None));
        let with_callid = compare("packets", without.clone(), items_of(sip_packet(Some("c1"))));
        assert!(with_callid.report.is_none());
        assert_eq!(with_callid.relaxed, 1);
        assert!(differs(without.clone(), items_of(sip_packet(Some("other")))));
        // C's correlation id must be ours exactly, and present.
        assert!(differs(items_of(sip_packet(Some("c1"))), without));
        assert!(differs(items_of(sip_packet(Some("x"))), items_of(sip_packet(Some("c1")))));
    }

    #[test]
    fn the_report_shows_what_only_each_side_has() {
        let r = |toip: &str| row("BYE sip:x SIP/2.0\r\n\r\n", "udp:127.0.0.1:5060", toip, "t");
        let c = items(&[r("udp:127.0.0.1:5080"), r("udp:127.0.0.1:5071")], &[], &PORTS).0;
        let ours = items(&[r("udp:127.0.0.1:5080"), r("udp:127.0.0.1:5099")], &[], &PORTS).0;
        let report = compare("rows", c, ours).report.expect("a difference");
        assert!(report.contains("C 2, ours 2; 1 only in C, 1 only in ours"), "{report}");
        let bye = "BYE sip:x SIP/2.0 udp:127.0.0.1:<proxy> -> udp:127.0.0.1";
        assert!(report.contains(&format!("--- only in C: {bye}:<UAC> out")), "{report}");
        assert!(report.contains(&format!("+++ only in ours: {bye}:5099 out")), "{report}");
        // A timestamp's value is not compared; its length is.
        let chunks = |ts: &[u8]| items(&[], &[packet(&[(9, ts), (15, b"x")])], &PORTS).1;
        assert!(!differs(chunks(&[0, 0, 0, 1]), chunks(&[0, 0, 0, 2])));
        assert!(differs(chunks(&[0, 0, 0, 1]), chunks(&[0, 0, 0, 0, 0, 0, 0, 1])));
    }
}
