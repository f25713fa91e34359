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
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::raw::c_int;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;

/// Adds a row destination to trace id `id`. Returns false for a target
/// that is not one (hep:, sip:). A file that cannot be opened is an
/// error, as it is for OpenSIPS's tracer.
pub fn add(sinks: &mut Sinks, id: usize, target: &TraceTarget, defaults: &Defaults) -> Result<bool, String> {
    let sink = match target {
        TraceTarget::Db { url, table } => Sink::Db { db: sinks.database(url, table), table: table.clone() },
        TraceTarget::File(path) => {
            let file = match sinks.all.iter().find_map(|s| match s {
                Sink::File { path: p, file } if p == path => Some(file.clone()),
                _ => None,
            }) {
                Some(file) => file,
                None => Arc::new(open(path, defaults.file_mode)?),
            };
            Sink::File { path: path.clone(), file }
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
    open(path, mode).map(drop)
}

/// Appends `row` to the file at `path`, opened for this row only: a
/// dynamic trace id's file, which MI may stop at any time.
pub fn append_file(
    path: &str,
    mode: u32,
    row: &Row<'_>,
    buf: &mut Vec<u8>,
) -> Result<(), (DropReason, String)> {
    let file = open(path, mode).map_err(|e| (DropReason::SendFailed, e))?;
    write_file(&file, path, row, buf)
}

fn open(path: &str, mode: u32) -> Result<File, String> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(mode)
        .open(path)
        .map_err(|e| format!("cannot open file '{path}' for tracing: {e}"))
}

/// The tracer's text form of `row` in `buf`, with the time for a file.
fn text_of(row: &Row<'_>, time: bool, buf: &mut Vec<u8>) -> Result<(), (DropReason, String)> {
    buf.clear();
    trace_text::write(row, time, buf)
        .ok_or((DropReason::Unparsable, "a row without its addresses".to_string()))
}

/// Writes `row` to `file` in the tracer's text form, in one write, so
/// that rows from several processes never interleave.
pub fn write_file(
    mut file: &File,
    path: &str,
    row: &Row<'_>,
    buf: &mut Vec<u8>,
) -> Result<(), (DropReason, String)> {
    text_of(row, true, buf)?;
    match file.write(buf) {
        Ok(n) if n == buf.len() => Ok(()),
        Ok(n) => Err((DropReason::SendFailed, format!("'{path}' took {n} of {} bytes", buf.len()))),
        Err(e) => Err((DropReason::SendFailed, format!("cannot write to '{path}': {e}"))),
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
