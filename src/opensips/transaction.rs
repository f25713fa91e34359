//! The transaction scope, `trace(id, "t")`: tm callbacks on the traced
//! request's transaction catch what it receives (retransmissions, ACK,
//! CANCEL, replies) and what it sends (the relayed requests and the
//! replies). What tm forwards statelessly (the ACK of a 2xx, say) is caught
//! by the core's stateless callbacks, for messages flagged by `trace()`.

use crate::ffi::guard::guard;
use crate::opensips::module;
use crate::opensips::sys;
use crate::opensips::trace_api;
use crate::opensips::tracer::{self, Trace};
use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// tm's API, when tm is loaded.
struct Tm(sys::tm_binds);
// SAFETY: a table of function pointers filled once before forking.
unsafe impl Sync for Tm {}
unsafe impl Send for Tm {}

static TM: OnceLock<Option<Tm>> = OnceLock::new();

/// Binds tm if it is loaded, and registers the stateless callbacks. From
/// mod_init.
pub fn init() -> Result<(), String> {
    // SAFETY: looking up another module's export by name.
    let load = unsafe { sys::find_export(c"load_tm".as_ptr(), 0) };
    let tm = load.map(|f| {
        let mut binds = sys::tm_binds::default();
        // SAFETY: tm's load_tm has this signature and fills `binds`.
        let load: sys::load_tm_f = unsafe { std::mem::transmute(f) };
        let ok = load.is_some_and(|load| unsafe { load(&mut binds) } >= 0);
        ok.then_some(Tm(binds))
    });
    let _ = TM.set(tm.flatten());
    // Requests and replies sent statelessly are traced alike.
    for (kind, f) in [
        (sys::sl_cb_type_SLCB_REQUEST_OUT, stateless_sent as StatelessCb),
        (sys::sl_cb_type_SLCB_REPLY_OUT, stateless_sent as StatelessCb),
    ] {
        // SAFETY: registering a callback for the messages trace() flags.
        if unsafe { sys::register_slcb(kind, sys::FL_USE_SIPTRACE, Some(f)) } != 0 {
            return Err("cannot register the stateless callbacks".into());
        }
    }
    Ok(())
}

pub fn tm_loaded() -> bool {
    TM.get().is_some_and(Option::is_some)
}

/// Registers `f` for `kind` on `msg`'s transaction, with `param`.
pub fn register(msg: &mut sys::sip_msg, kind: u32, f: sys::transaction_cb, param: *mut c_void) -> bool {
    let Some(Some(tm)) = TM.get() else { return false };
    let Some(register) = tm.0.register_tmcb else { return false };
    // SAFETY: registering on the message being processed, without release.
    unsafe { register(msg, std::ptr::null_mut(), kind as c_int, f, param, None) > 0 }
}

type StatelessCb = unsafe extern "C" fn(
    *mut sys::sip_msg,
    *mut sys::str_,
    c_int,
    *const sys::sockaddr_union,
    *const sys::socket_info,
    c_int,
);

/// One traced transaction, in shared memory: tm's two callbacks each hold
/// a reference, and the last one to be released frees it.
#[repr(C)]
pub struct TxTrace {
    refs: AtomicU32,
    id: usize,
    types: u32,
    correlation_len: usize,
    attrs_len: usize,
    // The correlation id's bytes follow, then the attributes'.
}

impl TxTrace {
    fn tail(&self, from: usize, len: usize) -> Option<&[u8]> {
        (len > 0).then(|| {
            // SAFETY: `new` copied the bytes right after the block.
            unsafe {
                std::slice::from_raw_parts(((self as *const TxTrace).add(1) as *const u8).add(from), len)
            }
        })
    }

    /// `n` more holders.
    fn add_refs(&self, n: u32) {
        self.refs.fetch_add(n, Ordering::AcqRel);
    }

    fn trace(&self) -> Trace<'_> {
        Trace {
            id: self.id,
            types: self.types,
            correlation: self.tail(0, self.correlation_len),
            attrs: self.tail(self.correlation_len, self.attrs_len),
        }
    }

    /// A block held by `refs` callbacks.
    fn new(trace: Trace<'_>, refs: u32) -> *mut TxTrace {
        let correlation = trace.correlation.unwrap_or_default();
        let attrs = trace.attrs.unwrap_or_default();
        let size = std::mem::size_of::<TxTrace>() + correlation.len() + attrs.len();
        // SAFETY: plain allocation from shared memory.
        let p = unsafe { sys::siptrace_os_shm_malloc(size) } as *mut TxTrace;
        if !p.is_null() {
            // SAFETY: a fresh block of `size` bytes, aligned for any scalar.
            unsafe {
                p.write(TxTrace {
                    refs: AtomicU32::new(refs),
                    id: trace.id,
                    types: trace.types,
                    correlation_len: correlation.len(),
                    attrs_len: attrs.len(),
                });
                let tail = p.add(1) as *mut u8;
                std::ptr::copy_nonoverlapping(correlation.as_ptr(), tail, correlation.len());
                std::ptr::copy_nonoverlapping(attrs.as_ptr(), tail.add(correlation.len()), attrs.len());
            }
        }
        p
    }
}

/// A trace as a callback's parameter: in the pointer's own bits when it has
/// no correlation id and no attributes, else a `TxTrace` block. Most traces
/// then cost no shared-memory allocation, which in OpenSIPS is a search
/// under a lock.
#[derive(Debug, Clone, Copy)]
pub struct Held(usize);

impl Held {
    /// The low bit marks a trace held inline: a block is aligned.
    const INLINE: usize = 1;

    /// `refs` holders of `trace`; None when shared memory is short.
    pub fn new(trace: Trace<'_>, refs: u32) -> Option<Held> {
        let inline = trace.correlation.is_none() && trace.attrs.is_none() && trace.id < 1 << 31;
        if inline && usize::BITS == 64 {
            return Some(Held(Self::INLINE | trace.id << 1 | (trace.types as usize) << 32));
        }
        let p = TxTrace::new(trace, refs);
        (!p.is_null()).then_some(Held(p as usize))
    }

    pub fn param(self) -> *mut c_void {
        self.0 as *mut c_void
    }

    /// The trace a callback's parameter holds.
    ///
    /// # Safety
    /// `p` must be null or a `param()` whose holder has not released it.
    pub unsafe fn from_param(p: *mut c_void) -> Option<Held> {
        (!p.is_null()).then_some(Held(p as usize))
    }

    fn block<'a>(self) -> Option<&'a TxTrace> {
        // SAFETY: not inline, so a live block (see from_param).
        (self.0 & Self::INLINE == 0).then(|| unsafe { &*(self.0 as *const TxTrace) })
    }

    pub fn trace<'a>(self) -> Trace<'a> {
        match self.block() {
            Some(block) => block.trace(),
            None => Trace {
                id: (self.0 >> 1) & 0x7fff_ffff,
                types: (self.0 >> 32) as u32,
                correlation: None,
                attrs: None,
            },
        }
    }

    /// `n` more holders (each to release it once).
    pub fn add_refs(self, n: u32) {
        if let Some(block) = self.block() {
            block.add_refs(n);
        }
    }
}

/// tm's (or the dialog module's) release of a callback's parameter.
pub unsafe extern "C" fn release(param: *mut c_void) {
    guard("callback release", (), || {
        if param as usize & Held::INLINE != 0 {
            return;
        }
        let p = param as *mut TxTrace;
        // SAFETY: the block `new` made, alive until its last reference goes.
        if let Some(tx) = unsafe { p.as_ref() } {
            if tx.refs.fetch_sub(1, Ordering::AcqRel) == 1 {
                // SAFETY: no callback refers to it any more.
                unsafe { sys::siptrace_os_shm_free(p as *mut c_void) };
            }
        }
    })
}

/// The traces of the message this process works on now, for the
/// stateless callbacks: its id, and each trace started on it (trace() and
/// every dynamic trace id that matched it), up to `CURRENT_TRACES`.
static CURRENT_MSG: AtomicU32 = AtomicU32::new(0);
const CURRENT_TRACES: usize = 8;
static CURRENT_TX: [AtomicUsize; CURRENT_TRACES] = [const { AtomicUsize::new(0) }; CURRENT_TRACES];

/// Notes trace `tx` as one of message `id`'s. A later trace of the same
/// trace id takes the place of the earlier (the route's trace() and the
/// dialog's callback both trace a request within a dialog; what goes out
/// statelessly for it is traced once, as by OpenSIPS's tracer).
fn note_current(id: u32, tx: Held) {
    if CURRENT_MSG.swap(id, Ordering::Relaxed) != id {
        CURRENT_TX.iter().for_each(|slot| slot.store(0, Ordering::Relaxed));
    }
    let trace_id = tx.trace().id;
    let same_or_free = CURRENT_TX.iter().find(|slot| {
        // SAFETY: a trace noted for this message, alive while tm holds it.
        match unsafe { Held::from_param(slot.load(Ordering::Relaxed) as *mut c_void) } {
            Some(noted) => noted.trace().id == trace_id,
            None => true,
        }
    });
    if let Some(slot) = same_or_free {
        slot.store(tx.0, Ordering::Relaxed);
    }
}

/// Starts tracing the transaction of `msg`, a request. Returns false when
/// tm refuses.
pub fn start(msg: &mut sys::sip_msg, trace: Trace<'_>) -> bool {
    let Some(tx) = Held::new(trace, 2) else { return false };
    if !watch(msg, std::ptr::null_mut(), tx) {
        return false;
    }
    msg.msg_flags |= sys::FL_USE_SIPTRACE;
    note_current(msg.id, tx);
    true
}

/// Registers the two tm callbacks, for the transaction of `msg` or for
/// transaction `t`, each holding one of the two references `tx` holds for
/// them. Returns false when tm refuses; the references are then dropped.
pub fn watch(msg: *mut sys::sip_msg, t: *mut sys::cell, tx: Held) -> bool {
    let register = match TM.get() {
        Some(Some(tm)) => tm.0.register_tmcb,
        _ => None,
    };
    let callbacks = [
        (sys::TMCB_MSG_MATCHED_IN as c_int, matched_in as unsafe extern "C" fn(_, _, _)),
        (sys::TMCB_MSG_SENT_OUT as c_int, sent_out as unsafe extern "C" fn(_, _, _)),
    ];
    for (i, (kind, f)) in callbacks.into_iter().enumerate() {
        // SAFETY: registering on the message being processed or on a live
        // transaction; tm calls `release` once per registration.
        let ok = register.is_some_and(|register| unsafe {
            register(msg, t, kind, Some(f), tx.param(), Some(release)) > 0
        });
        if !ok {
            // The registrations that will not happen hold no reference.
            for _ in i..callbacks.len() {
                // SAFETY: dropping the references nobody will release.
                unsafe { release(tx.param()) };
            }
            return false;
        }
    }
    true
}

/// The transaction block of a tm callback.
///
/// # Safety
/// `ps` must be the parameters tm passes, with a block `start` registered.
unsafe fn block<'a>(ps: *mut sys::tmcb_params) -> Option<(&'a sys::tmcb_params, Held)> {
    // SAFETY: per the contract.
    let ps = unsafe { ps.as_ref()? };
    let tx = unsafe { Held::from_param(*ps.param)? };
    Some((ps, tx))
}

/// tm's FAKED_REPLY: a reply it made up, not a message.
fn is_message(msg: *mut sys::sip_msg) -> bool {
    !msg.is_null() && msg as isize != -1
}

/// A transaction this server started (b2b_entities' calls out, say): it has
/// no request it received. OpenSIPS's tracer leaves the replies of such a
/// transaction out; so does this module.
fn is_local(t: *mut sys::cell) -> bool {
    // SAFETY: tm's transaction, or null.
    unsafe { t.as_ref() }.map_or(true, |t| t.uas.request.is_null())
}

unsafe extern "C" fn matched_in(t: *mut sys::cell, _type: c_int, ps: *mut sys::tmcb_params) {
    guard("tm callback", (), || {
        let Some(module) = module::get() else { return };
        // SAFETY: tm's parameters for our registration.
        let Some((ps, tx)) = (unsafe { block(ps) }) else { return };
        if !is_message(ps.req) && is_local(t) {
            return;
        }
        let msg = if is_message(ps.req) { ps.req } else { ps.rpl };
        if is_message(msg) {
            // SAFETY: a message tm received.
            let msg = unsafe { &*msg };
            // What the reply's routes log belongs to the traced call too.
            let trace = tx.trace();
            trace_api::enter(msg.id, trace.id, trace.types);
            tracer::incoming(module, trace, msg, true);
        }
    })
}

unsafe extern "C" fn sent_out(t: *mut sys::cell, _type: c_int, ps: *mut sys::tmcb_params) {
    guard("tm callback", (), || {
        let Some(module) = module::get() else { return };
        // SAFETY: tm's parameters for our registration.
        let Some((ps, tx)) = (unsafe { block(ps) }) else { return };
        if !is_message(ps.req) && is_local(t) {
            return;
        }
        // For a request out, ps.req is it; for a reply out, ps.rpl is the
        // reply relayed, or none for one tm made up (a 100 Trying, say).
        let msg = [ps.req, ps.rpl].into_iter().find(|m| is_message(*m));
        // SAFETY: what tm sent, and where, when it says.
        let bytes = unsafe { tracer::str_at(ps.extra1 as *const sys::str_) };
        let Some(bytes) = bytes.filter(|b| !b.is_empty()) else { return };
        let dest = unsafe { (ps.extra2 as *const sys::dest_info).as_ref() };
        let (sock, proto, to) = match dest {
            Some(d) => (d.send_sock, d.proto, &d.to as *const sys::sockaddr_union),
            None => (std::ptr::null(), 0, std::ptr::null()),
        };
        // SAFETY: a message of the transaction, when there is one.
        let msg = msg.map(|m| unsafe { &*m });
        tracer::outgoing(module, tx.trace(), msg, bytes, sock, proto, to);
    })
}

/// A request or reply sent statelessly for a message `trace()` flagged.
fn stateless_out(
    req: *mut sys::sip_msg,
    buffer: *mut sys::str_,
    to: *const sys::sockaddr_union,
    sock: *const sys::socket_info,
    proto: c_int,
) {
    let Some(module) = module::get() else { return };
    // SAFETY: the message being processed, and what is sent for it.
    let (Some(req), Some(buffer)) = (unsafe { req.as_ref() }, unsafe { buffer.as_ref() }) else { return };
    if CURRENT_MSG.load(Ordering::Relaxed) != req.id {
        return;
    }
    // SAFETY: the buffer is valid for its length.
    let bytes = unsafe { tracer::str_bytes(buffer) };
    if bytes.is_empty() {
        return;
    }
    let proto = if proto == 0 { req.rcv.proto } else { proto };
    for slot in &CURRENT_TX {
        // SAFETY: a trace of this message's transaction, alive while tm holds it.
        let Some(tx) = (unsafe { Held::from_param(slot.load(Ordering::Relaxed) as *mut c_void) }) else {
            break;
        };
        tracer::outgoing(module, tx.trace(), Some(req), bytes, sock, proto, to);
    }
}

unsafe extern "C" fn stateless_sent(
    req: *mut sys::sip_msg,
    buffer: *mut sys::str_,
    _code: c_int,
    to: *const sys::sockaddr_union,
    sock: *const sys::socket_info,
    proto: c_int,
) {
    guard("stateless callback", (), || stateless_out(req, buffer, to, sock, proto))
}
