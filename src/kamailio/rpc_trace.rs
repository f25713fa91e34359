//! RPC command tracing (`trace_rpc`): every command Kamailio runs, over
//! any transport, gives a request and a reply record (HEP type 0x57, with
//! OpenSIPS's MI trace fields; see `core::rpc_command`).
//!
//! Kamailio keeps one `rpc_export_t` per command, copied into its private
//! memory when the command is registered, and every transport (ctl,
//! jsonrpcs, xmlrpc, ...) looks the command up there and calls its
//! `function`. In child_init(PROC_INIT), after every module's mod_init and
//! before any process is forked, each traced command's `function` is
//! replaced with a trampoline that knows the command's index. The
//! trampoline hands the command an `rpc_t` from the C shim whose functions
//! forward to the transport's own and report the parameters read, the
//! values replied and a fault; when the command returns, both records are
//! queued. Tracing failures never reach the command: a panic in the tracing
//! code leaves the command running untraced, or its records unsent.

use crate::core::rpc_command::CommandFilter;
use crate::core::endpoint::{Endpoint, Transport};
use crate::core::hep::proto_type;
use crate::core::record::{Direction, Timestamp, TraceRecord};
use crate::core::rpc_command::Execution;
use crate::ffi::guard::guard;
use crate::kamailio::{net, sys, tracer};
use std::cell::RefCell;
use std::ffi::{c_void, CStr};
use std::net::{IpAddr, Ipv4Addr};
use std::os::raw::{c_char, c_int};
use std::sync::{Mutex, OnceLock};

type RpcFunction = unsafe extern "C" fn(*mut sys::rpc_t, *mut c_void);

/// A traced command: its name and the function it had.
struct Command {
    name: String,
    original: RpcFunction,
}

/// Indexed like the trampolines; set once, in the main process, before
/// any command is patched.
static COMMANDS: OnceLock<Vec<Command>> = OnceLock::new();

const ROW: usize = 32;
const ROWS: usize = 64;
/// Commands that can be traced; any beyond are counted and logged.
const MAX_COMMANDS: usize = ROW * ROWS;

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
    // SAFETY: the shim's forwarding functions reach the transport's through
    // the original set here, which stays valid (transports keep their
    // rpc_t in static storage).
    unsafe {
        let previous = sys::siptrace_shim_rpc_enter(rpc);
        (command.original)(wrapped as *const sys::rpc_t as *mut sys::rpc_t, ctx);
        sys::siptrace_shim_rpc_leave(previous);
    }
    let execution = RUNNING.with(|r| r.try_borrow_mut().ok().and_then(|mut r| r.pop()));
    guard("RPC tracing", (), || {
        if let Some(execution) = execution {
            // SAFETY: as above; ctx is still the command's context.
            unsafe { send(command, &*rpc, ctx, &execution) };
        }
    });
}

/// Which rpc_t tables have a wrapped copy, by the original's address; one
/// per transport, made on first use in each process and kept.
static WRAPPED: Mutex<Vec<(usize, &'static sys::rpc_t)>> = Mutex::new(Vec::new());

fn wrapped_for(rpc: &sys::rpc_t) -> &'static sys::rpc_t {
    let key = rpc as *const sys::rpc_t as usize;
    let mut known = WRAPPED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, w)) = known.iter().find(|(k, _)| *k == key) {
        return w;
    }
    let wrapped: &'static mut sys::rpc_t = Box::leak(Box::default());
    // SAFETY: fills `wrapped` from the transport's table.
    unsafe { sys::siptrace_shim_rpc_wrap(rpc, wrapped) };
    known.push((key, wrapped));
    wrapped
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

/// # Safety
/// `text` points at `len` bytes, or is null.
unsafe fn bytes<'a>(text: *const c_char, len: c_int) -> &'a [u8] {
    if text.is_null() || len <= 0 {
        return &[];
    }
    // SAFETY: see above.
    unsafe { std::slice::from_raw_parts(text as *const u8, len as usize) }
}

/// From the shim: a parameter the running command read.
#[no_mangle]
pub unsafe extern "C" fn siptrace_rpc_param(text: *const c_char, len: c_int, is_str: c_int) {
    guard("siptrace_rpc_param", (), || {
        // SAFETY: the shim passes `len` bytes.
        let text = unsafe { bytes(text, len) };
        with_running(|e| e.param(text, is_str != 0));
    })
}

/// From the shim: a value the running command added to its reply.
#[no_mangle]
pub unsafe extern "C" fn siptrace_rpc_value(
    name: *const c_char,
    name_len: c_int,
    text: *const c_char,
    len: c_int,
    _is_str: c_int,
) {
    guard("siptrace_rpc_value", (), || {
        // SAFETY: the shim passes `name_len` and `len` bytes.
        let (name, text) = unsafe { ((!name.is_null()).then(|| bytes(name, name_len)), bytes(text, len)) };
        with_running(|e| e.value(name, text));
    })
}

/// From the shim: the running command replied with a fault.
#[no_mangle]
pub unsafe extern "C" fn siptrace_rpc_fault_seen(code: c_int, text: *const c_char, len: c_int) {
    guard("siptrace_rpc_fault_seen", (), || {
        // SAFETY: the shim passes `len` bytes.
        let text = unsafe { bytes(text, len) };
        with_running(|e| e.fault(code, text));
    })
}

/// From the shim: a failed parameter scan, or a delayed reply.
#[no_mangle]
pub unsafe extern "C" fn siptrace_rpc_event(what: c_int) {
    guard("siptrace_rpc_event", (), || {
        with_running(|e| match what as u32 {
            sys::SIPTRACE_RPC_SCAN_FAILED => e.scan_failed(),
            sys::SIPTRACE_RPC_DELAYED => e.delayed(),
            _ => {}
        })
    })
}

/// The file name, without `.so`, of the module that holds `addr`.
fn module_of(addr: usize) -> Option<String> {
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

/// The description Kamailio gives the current process ("ctl handler",
/// "JSONRPCS FIFO", ...).
fn process_desc() -> String {
    // SAFETY: the process table is in shared memory for the server's life;
    // process_no is this process's index in it.
    unsafe {
        let table = sys::pt;
        let index = sys::process_no;
        if table.is_null() || index < 0 {
            return String::new();
        }
        let desc = &(*table.add(index as usize)).desc;
        let bytes: &[u8] = std::slice::from_raw_parts(desc.as_ptr() as *const u8, desc.len());
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        String::from_utf8_lossy(&bytes[..end]).into_owned()
    }
}

/// The stand-in end of a command that did not come over the network.
fn local_end() -> Endpoint {
    Endpoint::new(Transport::Tcp, IpAddr::V4(Ipv4Addr::LOCALHOST), 0)
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
        // SAFETY: the HTTP request being answered.
        let ends = unsafe { ctx.msg.as_ref() }.and_then(|m| net::received(&m.rcv));
        return ("jsonrpcs_http".into(), ends);
    }
    let desc = process_desc();
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

/// Queues the request and reply records of a command that returned.
///
/// # Safety
/// As [`backend`].
unsafe fn send(command: &Command, rpc: &sys::rpc_t, ctx: *mut c_void, execution: &Execution) {
    // SAFETY: see above.
    let (backend, ends) = unsafe { backend(rpc, ctx) };
    let (peer, local) = ends.unwrap_or((local_end(), local_end()));
    let now = Timestamp::now();
    // Shared by the command's two records.
    let correlation = crate::core::event::new_correlation_id("rpc");
    let request = execution.request_payload(&command.name, &backend);
    let reply = execution.reply_payload();
    let outputs = tracer::event_outputs();
    let record = TraceRecord {
        time: now,
        direction: Direction::In,
        src: peer,
        dst: local,
        payload: request.as_bytes(),
        correlation_id: Some(correlation.as_bytes()),
        extra_correlation: None,
        proto_type: proto_type::RPC,
        traced_users: None,
    };
    tracer::enqueue(&record, &outputs);
    let record =
        TraceRecord { direction: Direction::Out, src: local, dst: peer, payload: reply.as_bytes(), ..record };
    tracer::enqueue(&record, &outputs);
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

/// Patches every command the filter traces. Called in the main process
/// after all modules' mod_init and before the first fork, so that every
/// process inherits the patched table.
pub fn install(filter: &CommandFilter) -> Result<(), String> {
    if COMMANDS.get().is_some() {
        return Ok(());
    }
    let writable = writable_ranges();
    let is_writable = |at: usize, len: usize| writable.iter().any(|&(s, e)| s <= at && at + len <= e);
    let mut commands = Vec::new();
    let mut patches: Vec<*mut sys::rpc_export_t> = Vec::new();
    let (mut filtered, mut read_only, mut beyond) = (0usize, Vec::new(), 0usize);
    // SAFETY: the core's sorted array of registered commands, complete once
    // every mod_init has run; nothing else runs in the main process now.
    let (array, count) = unsafe { (sys::rpc_sarray, sys::rpc_sarray_crt_size) };
    for i in 0..usize::try_from(count).unwrap_or(0) {
        // SAFETY: `count` entries, each null or a registered command.
        let Some(entry) = (unsafe { (*array.add(i)).as_mut() }) else { continue };
        let Some(function) = entry.function else { continue };
        if entry.name.is_null() {
            continue;
        }
        // SAFETY: a registered command's NUL-terminated name.
        let name = unsafe { CStr::from_ptr(entry.name) }.to_string_lossy().into_owned();
        if !filter.traces(&name) {
            filtered += 1;
            continue;
        }
        let at = std::ptr::addr_of_mut!(entry.function) as usize;
        if !is_writable(at, std::mem::size_of::<sys::rpc_function_t>()) {
            read_only.push(name);
            continue;
        }
        if commands.len() == MAX_COMMANDS {
            beyond += 1;
            continue;
        }
        patches.push(entry as *mut sys::rpc_export_t);
        commands.push(Command { name, original: function });
    }
    let traced = commands.len();
    COMMANDS.set(commands).map_err(|_| "RPC tracing installed twice".to_string())?;
    for (i, entry) in patches.into_iter().enumerate() {
        // SAFETY: a writable entry found above; processes are not forked yet.
        unsafe { (*entry).function = Some(TRAMPOLINES[i / ROW][i % ROW]) };
    }
    crate::log_info!(
        "RPC tracing: {traced} command(s) traced, {filtered} left out by trace_rpc_filter{}{}",
        if read_only.is_empty() {
            String::new()
        } else {
            format!(", {} not traced (read-only entry): {}", read_only.len(), read_only.join(", "))
        },
        if beyond == 0 { String::new() } else { format!(", {beyond} not traced (more than {MAX_COMMANDS})") },
    );
    Ok(())
}
