//! RPC interposition, for `trace_rpc`: every command Kamailio runs, over
//! any transport, is seen with its parameters, its reply and its fault.
//!
//! Kamailio keeps one `rpc_export_t` per command, copied into its private
//! memory when the command is registered, and every transport (ctl,
//! jsonrpcs, xmlrpc, ...) looks the command up there and calls its
//! `function`. Before any process is forked, each traced command's
//! `function` is replaced with a trampoline that knows the command's
//! index. The trampoline hands the command an `rpc_t` whose functions
//! forward to the transport's own and report what passes: the variadic
//! ones are C (wrapper/kamailio/rpc_interpose.c), the others are here.
//! When the command returns, the handler gets what was seen. Tracing
//! failures never reach the command: a panic in the tracing code leaves
//! the command running untraced, or its records unsent.

use super::net::Received;
use super::{process, sys};
use crate::core::endpoint::Endpoint;
use crate::core::rpc_command::Execution;
use crate::ffi::guard::guard;
use crate::ffi::lock;
use crate::kamailio::c_format::format_g;
use std::cell::{Cell, RefCell};
use std::ffi::{c_void, CStr};
use std::os::raw::{c_char, c_int, c_long, c_longlong, c_uint, c_ulong, c_ulonglong};
use std::sync::{Mutex, OnceLock};

type RpcFunction = unsafe extern "C" fn(*mut sys::rpc_t, *mut c_void);

/// A command that ran, as the handler gets it.
pub struct CommandRun<'a> {
    pub name: &'a str,
    /// The transport: the module that gave the command its `rpc_t`, and
    /// for jsonrpcs the way the request came.
    pub backend: &'a str,
    /// For a request over HTTP: the peer's and the server's ends.
    pub ends: Option<(Endpoint, Endpoint)>,
    pub execution: &'a Execution,
}

/// What `install` did.
pub struct Installed {
    pub traced: usize,
    /// Left out by the filter.
    pub filtered: usize,
    /// Commands whose entry is not writable.
    pub read_only: Vec<String>,
    /// Commands beyond the trampolines there are.
    pub beyond: usize,
}

/// A traced command: its name and the function it had.
struct Command {
    name: String,
    original: RpcFunction,
}

/// Indexed like the trampolines; set once, in the main process, before
/// any command is patched.
static COMMANDS: OnceLock<Vec<Command>> = OnceLock::new();

static HANDLER: OnceLock<fn(&CommandRun<'_>)> = OnceLock::new();

const ROW: usize = 32;
const ROWS: usize = 64;
/// Commands that can be traced; any beyond are counted and logged.
pub const MAX_COMMANDS: usize = ROW * ROWS;

/// The `function` of traced command number `R * ROW + C`.
unsafe extern "C" fn trampoline<const R: usize, const C: usize>(rpc: *mut sys::rpc_t, ctx: *mut c_void) {
    // SAFETY: called by a transport as the command's function would be.
    unsafe { run(R * ROW + C, rpc, ctx) }
}

#[rustfmt::skip]
macro_rules! row {
    ($r:literal) => {
        [
            trampoline::<$r, 0>, trampoline::<$r, 1>, trampoline::<$r, 2>, trampoline::<$r, 3>, trampoline::<$r, 4>, trampoline::<$r, 5>, trampoline::<$r, 6>, trampoline::<$r, 7>,
            trampoline::<$r, 8>, trampoline::<$r, 9>, trampoline::<$r, 10>, trampoline::<$r, 11>, trampoline::<$r, 12>, trampoline::<$r, 13>, trampoline::<$r, 14>, trampoline::<$r, 15>,
            trampoline::<$r, 16>, trampoline::<$r, 17>, trampoline::<$r, 18>, trampoline::<$r, 19>, trampoline::<$r, 20>, trampoline::<$r, 21>, trampoline::<$r, 22>, trampoline::<$r, 23>,
            trampoline::<$r, 24>, trampoline::<$r, 25>, trampoline::<$r, 26>, trampoline::<$r, 27>, trampoline::<$r, 28>, trampoline::<$r, 29>, trampoline::<$r, 30>, trampoline::<$r, 31>,
        ]
    };
}

#[rustfmt::skip]
static TRAMPOLINES: [[RpcFunction; ROW]; ROWS] = [
    row!(0), row!(1), row!(2), row!(3), row!(4), row!(5), row!(6), row!(7),
    row!(8), row!(9), row!(10), row!(11), row!(12), row!(13), row!(14), row!(15),
    row!(16), row!(17), row!(18), row!(19), row!(20), row!(21), row!(22), row!(23),
    row!(24), row!(25), row!(26), row!(27), row!(28), row!(29), row!(30), row!(31),
    row!(32), row!(33), row!(34), row!(35), row!(36), row!(37), row!(38), row!(39),
    row!(40), row!(41), row!(42), row!(43), row!(44), row!(45), row!(46), row!(47),
    row!(48), row!(49), row!(50), row!(51), row!(52), row!(53), row!(54), row!(55),
    row!(56), row!(57), row!(58), row!(59), row!(60), row!(61), row!(62), row!(63),
];

thread_local! {
    /// The executions under way in this process, innermost last: a
    /// command may run another.
    static RUNNING: RefCell<Vec<Execution>> = const { RefCell::new(Vec::new()) };
    /// The transport's rpc_t the forwarding functions call.
    static ORIGINAL: Cell<*const sys::rpc_t> = const { Cell::new(std::ptr::null()) };
}

/// Runs traced command `index` on behalf of a transport.
///
/// # Safety
/// `rpc` and `ctx` are what the transport passes to a command function.
unsafe fn run(index: usize, rpc: *mut sys::rpc_t, ctx: *mut c_void) {
    let Some(command) = COMMANDS.get().and_then(|c| c.get(index)) else {
        // Cannot happen: only commands in COMMANDS were patched.
        return;
    };
    let wrapped = guard("RPC tracing", None, || {
        // SAFETY: the transport's rpc_t, valid for the call.
        let rpc = unsafe { rpc.as_ref() }?;
        let wrapped = wrapped_for(rpc);
        RUNNING.with(|r| r.try_borrow_mut().ok().map(|mut r| r.push(Execution::new())))?;
        Some(wrapped)
    });
    let Some(wrapped) = wrapped else {
        // SAFETY: the command's own function, as the transport would call it.
        unsafe { (command.original)(rpc, ctx) };
        return;
    };
    // The forwarding functions reach the transport's through the original
    // set here, which stays valid: transports keep their rpc_t in static
    // storage. The last one stays in place after the outermost command,
    // for a command that would use its rpc_t after returning.
    let previous = ORIGINAL.replace(rpc);
    // SAFETY: the command's own function, with a table that forwards to
    // its transport's.
    unsafe { (command.original)(wrapped as *const sys::rpc_t as *mut sys::rpc_t, ctx) };
    if !previous.is_null() {
        ORIGINAL.set(previous);
    }
    let execution = RUNNING.with(|r| r.try_borrow_mut().ok().and_then(|mut r| r.pop()));
    guard("RPC tracing", (), || {
        let (Some(execution), Some(handler)) = (execution, HANDLER.get()) else { return };
        // SAFETY: as above; ctx is still the command's context.
        let (backend, ends) = unsafe { backend(&*rpc, ctx) };
        handler(&CommandRun { name: &command.name, backend: &backend, ends, execution: &execution });
    });
}

/// Which rpc_t tables have a wrapped copy, by the original's address; one
/// per transport, made on first use in each process and kept.
static WRAPPED: Mutex<Vec<(usize, &'static sys::rpc_t)>> = Mutex::new(Vec::new());

fn wrapped_for(rpc: &sys::rpc_t) -> &'static sys::rpc_t {
    let key = rpc as *const sys::rpc_t as usize;
    let mut known = lock(&WRAPPED);
    if let Some((_, w)) = known.iter().find(|(k, _)| *k == key) {
        return w;
    }
    let wrapped: &'static sys::rpc_t = Box::leak(Box::new(wrap(rpc)));
    known.push((key, wrapped));
    wrapped
}

/// A table whose functions forward to those of `orig` (none where it has
/// none) and report what passes.
fn wrap(orig: &sys::rpc_t) -> sys::rpc_t {
    fn like<T>(theirs: Option<T>, ours: T) -> Option<T> {
        theirs.map(|_| ours)
    }
    sys::rpc_t {
        fault: like(orig.fault, sys::siptrace_shim_rpc_fault),
        send: like(orig.send, send),
        add: like(orig.add, sys::siptrace_shim_rpc_add),
        scan: like(orig.scan, sys::siptrace_shim_rpc_scan),
        rpl_printf: like(orig.rpl_printf, sys::siptrace_shim_rpc_rpl_printf),
        struct_add: like(orig.struct_add, sys::siptrace_shim_rpc_struct_add),
        array_add: like(orig.array_add, sys::siptrace_shim_rpc_array_add),
        struct_scan: like(orig.struct_scan, sys::siptrace_shim_rpc_struct_scan),
        struct_printf: like(orig.struct_printf, sys::siptrace_shim_rpc_struct_printf),
        capabilities: like(orig.capabilities, capabilities),
        delayed_ctx_new: like(orig.delayed_ctx_new, delayed_ctx_new),
        delayed_ctx_close: like(orig.delayed_ctx_close, delayed_ctx_close),
    }
}

/// The transport's function `pick` chooses, for the running command's
/// call.
fn transport_fn<F>(pick: impl FnOnce(&sys::rpc_t) -> Option<F>) -> Option<F> {
    guard("RPC forwarding", None, || {
        // SAFETY: null or a transport's table, kept in static storage.
        unsafe { ORIGINAL.get().as_ref() }.and_then(pick)
    })
}

/// For the C forwarders: the transport's table, or null.
#[no_mangle]
pub extern "C" fn siptrace_rpc_original() -> *const sys::rpc_t {
    guard("RPC forwarding", std::ptr::null(), || ORIGINAL.get())
}

unsafe extern "C" fn send(ctx: *mut c_void) -> c_int {
    match transport_fn(|o| o.send) {
        // SAFETY: the transport's function, with its own context.
        Some(send) => unsafe { send(ctx) },
        None => -1,
    }
}

unsafe extern "C" fn capabilities(ctx: *mut c_void) -> sys::rpc_capabilities_t {
    match transport_fn(|o| o.capabilities) {
        // SAFETY: as above.
        Some(capabilities) => unsafe { capabilities(ctx) },
        None => 0,
    }
}

unsafe extern "C" fn delayed_ctx_new(ctx: *mut c_void) -> *mut sys::rpc_delayed_ctx {
    let Some(new) = transport_fn(|o| o.delayed_ctx_new) else { return std::ptr::null_mut() };
    // SAFETY: as above.
    let delayed = unsafe { new(ctx) };
    if !delayed.is_null() {
        guard("RPC tracing", (), || with_running(Execution::delayed));
    }
    delayed
}

unsafe extern "C" fn delayed_ctx_close(dctx: *mut sys::rpc_delayed_ctx) {
    if let Some(close) = transport_fn(|o| o.delayed_ctx_close) {
        // SAFETY: as above.
        unsafe { close(dctx) };
    }
}

fn with_running(f: impl FnOnce(&mut Execution)) {
    RUNNING.with(|r| {
        if let Ok(mut r) = r.try_borrow_mut() {
            if let Some(e) = r.last_mut() {
                f(e);
            }
        }
    });
}

/// `len` bytes at `text`: none for null or a negative length.
///
/// # Safety
/// Otherwise `text` points at `len` bytes.
unsafe fn bytes<'a>(text: *const c_char, len: c_int) -> Option<&'a [u8]> {
    let len = usize::try_from(len).ok()?;
    if text.is_null() {
        return None;
    }
    // SAFETY: see above.
    Some(unsafe { std::slice::from_raw_parts(text as *const u8, len) })
}

/// A NUL-terminated string, or none for null.
///
/// # Safety
/// `text` is null or NUL-terminated.
unsafe fn c_bytes<'a>(text: *const c_char) -> Option<&'a [u8]> {
    // SAFETY: see above.
    (!text.is_null()).then(|| unsafe { CStr::from_ptr(text) }.to_bytes())
}

/// The text of the value of format character `c` at `p`; `None` for what
/// is not reported. `scanned`: written by a scan, where `b` and `t` are
/// unsigned; else an argument given to an add.
///
/// # Safety
/// `p` points at a value of the type `c` gives it.
unsafe fn value_text(c: u8, p: *const c_void, scanned: bool) -> Option<(Vec<u8>, bool)> {
    // SAFETY: per the contract, for each format character.
    let number = unsafe {
        match c {
            b'd' => (*(p as *const c_int)).to_string(),
            b'b' | b't' if scanned => (*(p as *const c_uint)).to_string(),
            b'b' => (*(p as *const c_int)).to_string(),
            // An int for some transports, a time_t for others: the whole
            // argument slot was passed on, and is shown as an int.
            b't' => (*(p as *const c_longlong) as c_int).to_string(),
            b'u' => (*(p as *const c_uint)).to_string(),
            b'f' => format_g(*(p as *const f64)),
            b'l' => (*(p as *const c_long)).to_string(),
            b'j' => (*(p as *const c_ulong)).to_string(),
            b'L' => (*(p as *const c_longlong)).to_string(),
            b'J' => (*(p as *const c_ulonglong)).to_string(),
            b's' => return c_bytes(*(p as *const *const c_char)).map(|s| (s.to_vec(), true)),
            b'S' => {
                // A scan writes the str itself; a reply is given its address.
                let s = if scanned {
                    (p as *const sys::str_).as_ref()
                } else {
                    (*(p as *const *const sys::str_)).as_ref()
                };
                let s = s?;
                return bytes(s.s, s.len).map(|s| (s.to_vec(), true));
            }
            b'{' | b'[' if !scanned => return None,
            _ if scanned => {
                let close = if c == b'{' { b'}' } else { c };
                return Some((vec![c, b'.', b'.', b'.', close], false));
            }
            _ => return None,
        }
    };
    Some((number.into_bytes(), false))
}

/// From the C forwarders: a parameter the running command scanned, of
/// format character `c`, written at `p`.
///
/// # Safety
/// `p` is null or where the scan wrote a value of that type.
#[no_mangle]
pub unsafe extern "C" fn siptrace_rpc_scanned(c: c_char, p: *const c_void) {
    guard("siptrace_rpc_scanned", (), || {
        if p.is_null() {
            return;
        }
        // SAFETY: per the contract.
        if let Some((text, is_str)) = unsafe { value_text(c as u8, p, true) } {
            with_running(|e| e.param(&text, is_str));
        }
    })
}

/// From the C forwarders: a value of format character `c`, at `p`, that
/// the running command added to its reply; `name` is its member name in a
/// structure, or null.
///
/// # Safety
/// `name` is null or NUL-terminated; `p` points at the value as passed.
#[no_mangle]
pub unsafe extern "C" fn siptrace_rpc_added(name: *const c_char, c: c_char, p: *const c_void) {
    guard("siptrace_rpc_added", (), || {
        // SAFETY: per the contract.
        let Some((text, _)) = (unsafe { value_text(c as u8, p, false) }) else { return };
        // SAFETY: per the contract.
        let name = unsafe { c_bytes(name) };
        with_running(|e| e.value(name, &text));
    })
}

/// From the C forwarders: text the running command printed into its
/// reply; `name` is its member name in a structure, or null.
///
/// # Safety
/// `name` is null or NUL-terminated; `text` holds `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn siptrace_rpc_printed(name: *const c_char, text: *const c_char, len: c_int) {
    guard("siptrace_rpc_printed", (), || {
        // SAFETY: per the contract.
        let (name, text) = unsafe { (c_bytes(name), bytes(text, len).unwrap_or_default()) };
        with_running(|e| e.value(name, text));
    })
}

/// From the C forwarders: the running command replied with a fault.
///
/// # Safety
/// `text` holds `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn siptrace_rpc_fault_seen(code: c_int, text: *const c_char, len: c_int) {
    guard("siptrace_rpc_fault_seen", (), || {
        // SAFETY: per the contract.
        let text = unsafe { bytes(text, len) }.unwrap_or_default();
        with_running(|e| e.fault(code, text));
    })
}

/// From the C forwarders: a scan that failed or found too few values.
#[no_mangle]
pub extern "C" fn siptrace_rpc_scan_failed() {
    guard("siptrace_rpc_scan_failed", (), || with_running(Execution::scan_failed))
}

/// The file name, without `.so`, of the module that holds `addr`.
fn module_of(addr: usize) -> Option<String> {
    // SAFETY: an all-zero Dl_info is a valid value to be written.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only reads the loader's tables.
    if unsafe { libc::dladdr(addr as *const c_void, &mut info) } == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: the loader's NUL-terminated path.
    let path = unsafe { CStr::from_ptr(info.dli_fname) }.to_string_lossy();
    let file = path.rsplit('/').next().unwrap_or_default();
    Some(file.strip_suffix(".so").unwrap_or(file).to_string())
}

/// The transport a command came over, by the module that provides its
/// rpc_t, and for HTTP the peer's and the server's ends.
///
/// # Safety
/// `rpc` and `ctx` are a transport's, as passed to a command.
unsafe fn backend(rpc: &sys::rpc_t, ctx: *mut c_void) -> (String, Option<(Endpoint, Endpoint)>) {
    let Some(module) = rpc.fault.and_then(|f| module_of(f as usize)) else {
        return ("unknown".into(), None);
    };
    if module != "jsonrpcs" {
        return (module, None);
    }
    // jsonrpcs passes its jsonrpc_ctx_t; over HTTP it holds the request.
    // SAFETY: jsonrpcs's rpc_t is only ever given with its own context.
    let ctx = unsafe { (ctx as *const sys::jsonrpc_ctx_t).as_ref() };
    if let Some(ctx) = ctx.filter(|c| c.transport == sys::JSONRPC_TRANS_HTTP as c_int) {
        // SAFETY: the HTTP request being answered, received before.
        let ends = unsafe { ctx.msg.as_ref() }.and_then(|m| Received::new(&m.rcv).ends());
        return ("jsonrpcs_http".into(), ends);
    }
    let desc = process::description();
    let name = if desc.eq_ignore_ascii_case("JSONRPCS FIFO") {
        "jsonrpcs_fifo"
    } else if desc.eq_ignore_ascii_case("JSONRPCS DATAGRAM") {
        "jsonrpcs_dgram"
    } else {
        // jsonrpc_exec() from the script.
        "jsonrpcs"
    };
    (name.into(), None)
}

/// The address ranges of this process that are mapped writable.
fn writable_ranges() -> Vec<(usize, usize)> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (range, perms) = (fields.next()?, fields.next()?);
            if !perms.contains('w') {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            Some((usize::from_str_radix(start, 16).ok()?, usize::from_str_radix(end, 16).ok()?))
        })
        .collect()
}

/// What the core's array of registered commands holds: from Kamailio 5.8
/// on, an `rpc_exportx_t` that wraps the command's `rpc_export_t` with
/// data of the core's own; before, the `rpc_export_t` itself.
#[cfg(kamailio_6_0)]
type SortedEntry = sys::rpc_exportx_t;
#[cfg(kamailio_5_6)]
type SortedEntry = sys::rpc_export_t;

/// The command's export in an entry of the array.
#[cfg(kamailio_6_0)]
fn command_export(entry: &mut SortedEntry) -> &mut sys::rpc_export_t {
    &mut entry.r
}

#[cfg(kamailio_5_6)]
fn command_export(entry: &mut SortedEntry) -> &mut sys::rpc_export_t {
    entry
}

/// Patches every registered command `traces` accepts, so that `handler`
/// gets each run of it. Called in the main process after all modules'
/// mod_init and before the first fork, so that every process inherits the
/// patched table. `None` when it was done before.
pub fn install(
    traces: &dyn Fn(&str) -> bool,
    handler: fn(&CommandRun<'_>),
) -> Result<Option<Installed>, String> {
    if COMMANDS.get().is_some() {
        return Ok(None);
    }
    let writable = writable_ranges();
    let is_writable = |at: usize, len: usize| writable.iter().any(|&(s, e)| s <= at && at + len <= e);
    let mut commands = Vec::new();
    let mut patches: Vec<*mut sys::rpc_export_t> = Vec::new();
    let mut installed = Installed { traced: 0, filtered: 0, read_only: Vec::new(), beyond: 0 };
    // SAFETY: the core's sorted array of registered commands, complete once
    // every mod_init has run; nothing else runs in the main process now.
    let (array, count) = unsafe { (sys::rpc_sarray, sys::rpc_sarray_crt_size) };
    for i in 0..usize::try_from(count).unwrap_or(0) {
        // SAFETY: `count` entries, each null or a registered command.
        let Some(entry) = (unsafe { (*array.add(i)).as_mut() }) else { continue };
        let entry = command_export(entry);
        let Some(function) = entry.function else { continue };
        if entry.name.is_null() {
            continue;
        }
        // SAFETY: a registered command's NUL-terminated name.
        let name = unsafe { CStr::from_ptr(entry.name) }.to_string_lossy().into_owned();
        if !traces(&name) {
            installed.filtered += 1;
            continue;
        }
        let at = std::ptr::addr_of_mut!(entry.function) as usize;
        if !is_writable(at, std::mem::size_of::<sys::rpc_function_t>()) {
            installed.read_only.push(name);
            continue;
        }
        if commands.len() == MAX_COMMANDS {
            installed.beyond += 1;
            continue;
        }
        patches.push(entry as *mut sys::rpc_export_t);
        commands.push(Command { name, original: function });
    }
    installed.traced = commands.len();
    let _ = HANDLER.set(handler);
    COMMANDS.set(commands).map_err(|_| "RPC tracing installed twice".to_string())?;
    for (i, entry) in patches.into_iter().enumerate() {
        // SAFETY: a writable entry found above; processes are not forked yet.
        unsafe { (*entry).function = Some(TRAMPOLINES[i / ROW][i % ROW]) };
    }
    Ok(Some(installed))
}
