//! `trace(trace_id, [scope], [type], [trace_attrs], [flags], [correlation_id])`,
//! the script function of OpenSIPS's tracer, in the message, transaction,
//! dialog and B2B scopes; and the requests that MI's dynamic trace ids
//! trace from the start of their processing.

use crate::core::counters::DropReason;
use crate::opensips::host::held::Trace;
use crate::opensips::host::msg::Msg;
use crate::opensips::host::script::{self, Args, Fixed, Fixup, Function, Messages, Param};
use crate::opensips::host::{b2b as b2b_api, dialog as dlg_api, tm};
use crate::opensips::state::dynamic::{Filter, FilterKind};
use crate::opensips::state::{self, State};
use crate::opensips::{b2b, dialog, trace_api, tracer, transaction};
use std::ffi::CStr;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(usize)]
enum Scope {
    Message = 1,
    Transaction = 2,
    Dialog = 3,
    B2b = 4,
}

/// The scope letters as the value the fixup makes of them (for MI).
pub fn scope_value(text: &[u8]) -> Option<usize> {
    let mut scope = None;
    for &c in text.iter().filter(|c| !c.is_ascii_whitespace()) {
        let this = match c.to_ascii_lowercase() {
            b'm' => Scope::Message,
            b't' => Scope::Transaction,
            b'd' => Scope::Dialog,
            _ => return None,
        };
        scope = scope.max(Some(this));
    }
    scope.map(|s| s as usize)
}

/// `trace()`.
pub struct TraceFn;

impl Function for TraceFn {
    const NAME: &'static CStr = c"trace";
    const ROUTES: u32 =
        script::REQUEST_ROUTE | script::FAILURE_ROUTE | script::ONREPLY_ROUTE | script::BRANCH_ROUTE;
    const PARAMS: &'static [Param] = &[
        Param::fixed::<TraceId>(false),
        Param::fixed::<ScopeLetters>(true),
        Param::fixed::<Types>(true),
        Param::text(true),
        Param::fixed::<Legs>(true),
        Param::text(true),
    ];

    fn run(msg: &mut Msg, args: &Args) -> i32 {
        let Some(state) = state::get() else { return -1 };
        let Some(id) = args.value(0).checked_sub(1).filter(|&i| i < state.ids.len()) else { return -1 };
        let types = match args.value(2) as u32 {
            0 => trace_api::SIP_BIT,
            mask => mask,
        };
        let trace = Trace { id, types, correlation: args.text(5), attrs: args.text(3) };
        start(state, msg, trace, args.value(1))
    }
}

/// The trace id name becomes its index (plus one, as 0 is no value).
struct TraceId;

impl Fixup for TraceId {
    fn fix(name: &[u8]) -> Fixed {
        let name = String::from_utf8_lossy(name);
        match state::get().and_then(|s| s.id_index(&name)) {
            Some(i) => Fixed::Value(i + 1),
            None => {
                crate::log_error!("trace(): no trace_id is called '{name}'");
                Fixed::Refuse
            }
        }
    }
}

/// The scope letters: `m` (the message), `t` (its transaction), `d` (its
/// dialog) and `b` (the B2B session b2b_logic makes of it). The parameter
/// becomes the scope.
struct ScopeLetters;

impl Fixup for ScopeLetters {
    fn fix(text: &[u8]) -> Fixed {
        let mut scope = None;
        for &c in text.iter().filter(|c| !c.is_ascii_whitespace()) {
            // The widest scope given wins, as in OpenSIPS's tracer.
            let this = match c.to_ascii_lowercase() {
                b'm' => Scope::Message,
                b't' if tm::loaded() => Scope::Transaction,
                b't' => {
                    crate::log_error!("trace(): scope 't' needs the tm module loaded");
                    return Fixed::Refuse;
                }
                b'd' if dlg_api::loaded() => Scope::Dialog,
                b'd' => {
                    crate::log_error!("trace(): scope 'd' needs the dialog module loaded");
                    return Fixed::Refuse;
                }
                b'b' if b2b_api::loaded() => Scope::B2b,
                b'b' => {
                    crate::log_error!("trace(): scope 'b' needs the b2b_logic module loaded");
                    return Fixed::Refuse;
                }
                _ => {
                    crate::log_error!("trace(): unknown scope '{}'", String::from_utf8_lossy(text));
                    return Fixed::Refuse;
                }
            };
            scope = scope.max(Some(this));
        }
        match scope {
            Some(scope) => Fixed::Value(scope as usize),
            None => {
                crate::log_error!("trace(): the scope is empty");
                Fixed::Refuse
            }
        }
    }
}

/// The kinds of records to trace (`sip|xlog|rest`, see `trace_api`); the
/// parameter becomes their mask.
struct Types;

impl Fixup for Types {
    fn fix(types: &[u8]) -> Fixed {
        match trace_api::mask_of(types) {
            Ok(mask) => Fixed::Value(mask as usize),
            Err(e) => {
                crate::log_error!("trace(): {e}");
                Fixed::Refuse
            }
        }
    }
}

/// Checks the C/c flags; in the message scope there is only one leg.
struct Legs;

impl Fixup for Legs {
    fn fix(flags: &[u8]) -> Fixed {
        match flags.iter().find(|&&c| c != b'C' && c != b'c') {
            Some(bad) => {
                crate::log_error!("trace(): unknown flag '{}' (C and c are known)", *bad as char);
                Fixed::Refuse
            }
            None => Fixed::Keep,
        }
    }
}

/// Starts tracing `msg` in `scope` (0: none given, else a `Scope`), as
/// trace() does: for trace() itself and for dynamic trace ids.
fn start(state: &State, msg: &mut Msg, trace: Trace<'_>, scope: usize) -> i32 {
    trace_api::enter(msg.id(), trace.id, trace.types);
    let request = msg.is_request();
    // Without a scope: the dialog's for an initial INVITE when the dialog
    // module is there, else the transaction's when tm is. A scope the
    // message cannot have falls back: the dialog's to the transaction's for
    // all but an initial INVITE, the transaction's to the message's for a
    // reply. As in OpenSIPS's tracer. Parsed only when the scope depends on it.
    let initial_invite = |msg: &Msg| request && is_initial_invite(msg);
    let scope = match scope {
        0 if dlg_api::loaded() && initial_invite(msg) => Scope::Dialog,
        0 if tm::loaded() => Scope::Transaction,
        3 if initial_invite(msg) => Scope::Dialog,
        2 | 3 => Scope::Transaction,
        // b2b_logic's entities trace what the session receives and sends,
        // this request included; nothing is traced here.
        4 => return if b2b::start(msg, trace) { 1 } else { -1 },
        _ => Scope::Message,
    };
    let started = match scope {
        Scope::Dialog => dialog::start(msg, trace),
        Scope::Transaction if request => transaction::start(msg, trace),
        _ => true,
    };
    if !started {
        state.report(DropReason::NoDestination, "trace(): tm or dialog refused the callbacks");
        return -1;
    }
    if trace.types & trace_api::SIP_BIT == 0 || tracer::incoming(state, trace, msg, false) {
        1
    } else {
        -1
    }
}

/// Registers the check of each request against the dynamic trace ids.
pub fn init_dynamic() -> Result<(), String> {
    script::before_script(Messages::Requests, match_dynamic)
}

/// Traces a request that the filters of a started dynamic trace id match.
fn match_dynamic(msg: &mut Msg) {
    let Some(state) = state::get() else { return };
    // What trace() kept for b2b_logic belongs to the previous request.
    b2b::forget_current();
    if !state.dynamic.any_active() {
        return;
    }
    let bytes = msg.buffer().to_vec();
    // The socket's peer, even behind a PROXY-protocol listener, as
    // OpenSIPS 4.0's tracer compares it.
    let source = msg.peer_ip();
    let initial_invite = is_initial_invite(msg);
    for (slot, entry) in state.dynamic.snapshot() {
        if entry.scope == Scope::Dialog as usize && !initial_invite {
            continue;
        }
        if entry.filters().iter().all(|f| filter_matches(f, &bytes, source)) {
            let trace =
                Trace { id: state.ids.len() + slot, types: entry.types, correlation: None, attrs: None };
            start(state, msg, trace, entry.scope);
        }
    }
}

fn filter_matches(filter: &Filter, msg: &[u8], source: Option<IpAddr>) -> bool {
    let uri = match filter.kind {
        FilterKind::Ip => {
            let want = std::str::from_utf8(filter.text()).ok().and_then(|t| t.parse().ok());
            return want.is_some() && want == source;
        }
        FilterKind::Caller => crate::core::sip::header_uri(msg, b"From", b"f"),
        FilterKind::Callee => crate::core::sip::request_uri(msg),
    };
    let Some(uri) = uri else { return false };
    let (user, host) = crate::core::sip::uri_user_host(uri);
    crate::core::sip::user_host_matches(filter.text(), user, host)
}

/// An INVITE without a To tag.
fn is_initial_invite(msg: &Msg) -> bool {
    let Ok(fields) = crate::core::sip::extract(msg.buffer()) else { return false };
    fields.method() == b"INVITE" && fields.to_tag.is_empty()
}
