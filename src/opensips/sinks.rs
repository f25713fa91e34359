//! The row destinations of OpenSIPS's trace ids (`state::Sinks`):
//! database tables (of one or several databases), `file:` paths and
//! `syslog`. A trace id may have any number of each. Here they are set up
//! at startup, and the sender process writes the files and the log lines.
//! (HEP and SIP copies go through the core's sender as on Kamailio.)

use crate::core::counters::DropReason;
use crate::core::record::Row;
use crate::core::trace_id::TraceTarget;
use crate::core::trace_text;
use crate::opensips::host::log;
use crate::opensips::state::{Defaults, Sink, Sinks};
use std::os::raw::c_int;

/// Adds a row destination to trace id `id`. Returns false for a target
/// that is not one (hep:, sip:). A file that cannot be opened is an
/// error, as it is for OpenSIPS's tracer.
pub fn add(sinks: &mut Sinks, id: usize, target: &TraceTarget, defaults: &Defaults) -> Result<bool, String> {
    let sink = match target {
        TraceTarget::Db { url, table } => Sink::Db { db: sinks.database(url, table), table: table.clone() },
        TraceTarget::File(path) => {
            let fd = match sinks.all.iter().find_map(|s| match s {
                Sink::File { path: p, fd } if p == path => Some(*fd),
                _ => None,
            }) {
                Some(fd) => fd,
                None => open(path, defaults.file_mode)?,
            };
            Sink::File { path: path.clone(), fd }
        }
        TraceTarget::Syslog(uri) => {
            let spec = trace_text::parse_syslog(uri).map_err(|e| format!("'{uri}': {e}"))?;
            Sink::Syslog {
                facility: spec.facility.unwrap_or(defaults.syslog_facility),
                level: spec.level.unwrap_or(defaults.syslog_level),
            }
        }
        TraceTarget::Hep(_) | TraceTarget::Sip(_) => return Ok(false),
    };
    sinks.push(id, sink);
    Ok(true)
}

/// Whether `path` can be opened for tracing (made with `mode` if need be).
pub fn check_file(path: &str, mode: u32) -> Result<(), String> {
    let fd = open(path, mode)?;
    // SAFETY: closing the descriptor just opened.
    unsafe { libc::close(fd) };
    Ok(())
}

/// Appends `row` to the file at `path`, opened for this row only: a
/// dynamic trace id's file, which MI may stop at any time.
pub fn append_file(
    path: &str,
    mode: u32,
    row: &Row<'_>,
    buf: &mut Vec<u8>,
) -> Result<(), (DropReason, String)> {
    let fd = open(path, mode).map_err(|e| (DropReason::SendFailed, e))?;
    let result = write_file(fd, path, row, buf);
    // SAFETY: closing the descriptor just opened.
    unsafe { libc::close(fd) };
    result
}

fn open(path: &str, mode: u32) -> Result<c_int, String> {
    let c_path = std::ffi::CString::new(path).map_err(|_| format!("file '{path}' has a NUL in its name"))?;
    let flags = libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_CLOEXEC;
    // SAFETY: a NUL-terminated path; the descriptor is kept until exit.
    let fd = unsafe { libc::open(c_path.as_ptr(), flags, mode as libc::c_uint) };
    if fd < 0 {
        return Err(format!("cannot open file '{path}' for tracing: {}", std::io::Error::last_os_error()));
    }
    Ok(fd)
}

/// The tracer's text form of `row` in `buf`, with the time for a file.
fn text_of(row: &Row<'_>, time: bool, buf: &mut Vec<u8>) -> Result<(), (DropReason, String)> {
    buf.clear();
    trace_text::write(row, time, buf)
        .ok_or((DropReason::Unparsable, "a row without its addresses".to_string()))
}

/// Writes `row` to file descriptor `fd` in the tracer's text form, in one
/// write, so that rows from several processes never interleave.
pub fn write_file(
    fd: c_int,
    path: &str,
    row: &Row<'_>,
    buf: &mut Vec<u8>,
) -> Result<(), (DropReason, String)> {
    text_of(row, true, buf)?;
    // SAFETY: writing `buf`'s bytes to a descriptor we opened.
    let n = unsafe { libc::write(fd, buf.as_ptr() as *const libc::c_void, buf.len()) };
    match n {
        n if n as usize == buf.len() => Ok(()),
        n if n < 0 => {
            let e = std::io::Error::last_os_error();
            Err((DropReason::SendFailed, format!("cannot write to '{path}': {e}")))
        }
        n => Err((DropReason::SendFailed, format!("'{path}' took {n} of {} bytes", buf.len()))),
    }
}

/// Logs `row` in the tracer's text form through OpenSIPS's log, which
/// goes to syslog (and to its other log outputs).
pub fn write_syslog(
    facility: c_int,
    level: c_int,
    row: &Row<'_>,
    buf: &mut Vec<u8>,
) -> Result<(), (DropReason, String)> {
    text_of(row, false, buf)?;
    log::write_to(facility, level, buf);
    Ok(())
}
