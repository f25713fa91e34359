//! Rows in OpenSIPS's `sip_trace` table (version 5) through OpenSIPS's DB
//! API, written by the sender process, to one or several databases. The
//! columns are those of OpenSIPS's tracer, renamed by its `*_column`
//! parameters; `trace_attrs` takes the script's attributes.

use crate::core::counters::DropReason;
use crate::core::endpoint::Endpoint;
use crate::core::record::Row;
use crate::opensips::sys;
use std::ffi::CString;
use std::os::raw::c_int;
use std::sync::OnceLock;

pub const TABLE_VERSION: u32 = 5;

/// The column names by default, in the order of a row's values.
pub const COLUMNS: [&str; 14] = [
    "msg",
    "callid",
    "method",
    "status",
    "from_proto",
    "from_ip",
    "from_port",
    "to_proto",
    "to_ip",
    "to_port",
    "time_stamp",
    "direction",
    "fromtag",
    "trace_attrs",
];

/// A driver bound at startup, with its URL and the column names, kept for
/// the life of the process.
struct Bound {
    funcs: sys::db_func_t,
    url: sys::str_,
    keys: [sys::str_; 14],
}
// SAFETY: set once in mod_init before forking, only read after; the
// pointers are to strings leaked for the life of the process.
unsafe impl Sync for Bound {}
unsafe impl Send for Bound {}

/// One per database URL, in the order `bind` was given them.
static BOUND: OnceLock<Vec<Bound>> = OnceLock::new();

fn leak(s: &str) -> sys::str_ {
    let len = s.len() as c_int;
    sys::str_ { s: CString::new(s).unwrap_or_default().into_raw(), len }
}

fn str_of(bytes: &[u8]) -> sys::str_ {
    sys::str_ { s: bytes.as_ptr() as *mut _, len: bytes.len() as c_int }
}

/// Binds the driver of each database URL and checks the version of its
/// tables; `columns` are the column names. A database that does not answer
/// now is not an error: the sender counts the rows it cannot store until
/// it does.
pub fn bind(databases: &[(String, Vec<String>)], columns: &[String; 14]) -> Result<(), String> {
    let bound =
        databases.iter().map(|(url, tables)| bind_one(url, tables, columns)).collect::<Result<_, _>>()?;
    BOUND.set(bound).map_err(|_| "database bound twice".to_string())
}

fn bind_one(url: &str, tables: &[String], columns: &[String; 14]) -> Result<Bound, String> {
    let redacted = crate::core::sql::redact_url(url);
    let url_str = leak(url);
    let mut funcs = sys::db_func_t::default();
    // SAFETY: a valid str; the driver fills `funcs`.
    if unsafe { sys::db_bind_mod(&url_str, &mut funcs) } < 0 || funcs.insert.is_none() || funcs.init.is_none()
    {
        return Err(format!("cannot bind a database module for '{redacted}'; is its driver module loaded?"));
    }
    let bound = Bound { funcs, url: url_str, keys: std::array::from_fn(|i| leak(&columns[i])) };
    match connect(&bound) {
        Some(con) => {
            for table in tables {
                let t = leak(table);
                let mut funcs = bound.funcs;
                // SAFETY: an open connection and valid strings.
                if unsafe { sys::db_check_table_version(&mut funcs, con, &t, TABLE_VERSION) } < 0 {
                    return Err(format!(
                        "table '{table}' of '{redacted}' is missing or not at version {TABLE_VERSION} \
                         (create it with OpenSIPS's tracer-create.sql)"
                    ));
                }
            }
            close(&bound, con);
        }
        None => crate::log_warn!(
            "the database '{redacted}' does not answer now; rows are dropped and counted until it does"
        ),
    }
    Ok(bound)
}

fn connect(bound: &Bound) -> Option<*mut sys::db_con_t> {
    // SAFETY: the driver's init with the leaked URL.
    let con = unsafe { (bound.funcs.init?)(&bound.url) };
    (!con.is_null()).then_some(con)
}

fn close(bound: &Bound, con: *mut sys::db_con_t) {
    if let Some(close) = bound.funcs.close {
        // SAFETY: a connection `connect` opened.
        unsafe { close(con) };
    }
}

/// A sender's connection to database `index` (of those given to `bind`).
pub struct Connection {
    con: *mut sys::db_con_t,
    index: usize,
}

impl Connection {
    pub fn open(index: usize) -> Option<Connection> {
        let con = connect(BOUND.get()?.get(index)?)?;
        Some(Connection { con, index })
    }

    /// Stores `row` in `table`; the error says why not.
    pub fn insert(&self, row: &Row<'_>, table: &str) -> Result<(), (DropReason, String)> {
        let Some(bound) = BOUND.get().and_then(|b| b.get(self.index)) else {
            return Err((DropReason::DbUnavailable, "no database is bound".into()));
        };
        let (Some(use_table), Some(insert)) = (bound.funcs.use_table, bound.funcs.insert) else {
            return Err((DropReason::DbFailed, "the driver cannot insert".into()));
        };
        let keys: [sys::db_key_t; 14] = std::array::from_fn(|i| &bound.keys[i] as *const _ as sys::db_key_t);
        let table = str_of(table.as_bytes());
        let ends = ends(row).ok_or((DropReason::Unparsable, "a row without its addresses".to_string()))?;
        let vals = values(row, &ends);
        // SAFETY: an open connection; the keys, values and the bytes they
        // point at outlive the calls, and the driver only reads them.
        let ok = unsafe { use_table(self.con, &table) } == 0
            && unsafe { insert(self.con, keys.as_ptr(), vals.as_ptr(), 14) } == 0;
        if ok {
            Ok(())
        } else {
            Err((DropReason::DbFailed, "the database refused a row".to_string()))
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(bound) = BOUND.get().and_then(|b| b.get(self.index)) {
            close(bound, self.con);
        }
    }
}

fn text(bytes: &[u8]) -> sys::db_val_t {
    let mut v = sys::db_val_t { type_: sys::db_type_t_DB_STR, ..Default::default() };
    v.val.str_val = str_of(bytes);
    v
}

fn int(n: u16) -> sys::db_val_t {
    let mut v = sys::db_val_t { type_: sys::db_type_t_DB_INT, ..Default::default() };
    v.val.int_val = n as c_int;
    v
}

/// The ends of a row, parsed from its `proto:ip:port` texts, with the IPs
/// as text for the values to point at.
struct Ends {
    from: Endpoint,
    to: Endpoint,
    ips: [String; 2],
}

fn ends(row: &Row<'_>) -> Option<Ends> {
    let (from, to) = row.ends()?;
    let ips = [from.addr.ip().to_string(), to.addr.ip().to_string()];
    Some(Ends { from, to, ips })
}

/// The 14 values of a row, in the order of COLUMNS.
fn values(row: &Row<'_>, ends: &Ends) -> [sys::db_val_t; 14] {
    let mut time = sys::db_val_t { type_: sys::db_type_t_DB_DATETIME, ..Default::default() };
    time.val.time_val = row.time.secs as sys::time_t;
    let attrs = if row.traced_user.is_empty() {
        // No attributes: SQL NULL, as OpenSIPS's tracer stores them.
        sys::db_val_t { type_: sys::db_type_t_DB_STR, nul: 1, ..Default::default() }
    } else {
        text(row.traced_user)
    };
    [
        text(row.msg),
        text(row.callid),
        text(row.method),
        text(row.status),
        text(ends.from.transport.name().as_bytes()),
        text(ends.ips[0].as_bytes()),
        int(ends.from.addr.port()),
        text(ends.to.transport.name().as_bytes()),
        text(ends.ips[1].as_bytes()),
        int(ends.to.addr.port()),
        time,
        text(row.direction.as_str().as_bytes()),
        text(row.fromtag),
        attrs,
    ]
}
