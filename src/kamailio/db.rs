//! `sip_trace` rows through Kamailio's generic DB API, so that every DB
//! driver module (db_sqlite, db_postgres, db_mysql, ...) works unchanged.

use crate::core::config::{redact_url, Columns, Config, TABLE_VERSION};
use crate::core::record::{Direction, Timestamp};
use crate::kamailio::{shared, sys};
use std::ffi::CString;
use std::os::raw::{c_char, c_int};
use std::sync::OnceLock;

const COLUMN_COUNT: usize = 12;

/// How long an SQLite insert waits for the file: for another process's
/// write, and for a reader.
const WRITER_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The bound driver and the table layout, set up once in mod_init.
struct DbSetup {
    funcs: sys::db_func_t,
    /// SQLite: one writer at a time, across processes.
    serialize: bool,
    url: sys::str_,
    table: sys::str_,
    keys: [sys::str_; COLUMN_COUNT],
}

/// The DB setup is filled in once in the main process before Kamailio
/// forks and only read afterwards; its pointers are to strings leaked for
/// the life of the process and to the driver's functions.
struct BoundSetup(DbSetup);
unsafe impl Sync for BoundSetup {}
unsafe impl Send for BoundSetup {}

static SETUP: OnceLock<BoundSetup> = OnceLock::new();

/// One row of the `sip_trace` table.
pub struct Row<'a> {
    pub msg: &'a [u8],
    pub callid: &'a [u8],
    pub method: &'a [u8],
    pub status: &'a [u8],
    pub fromip: &'a [u8],
    pub toip: &'a [u8],
    pub time: Timestamp,
    pub direction: Direction,
    pub fromtag: &'a [u8],
    pub traced_user: &'a [u8],
    pub totag: &'a [u8],
}

/// A string that lives as long as the process, as the DB API expects.
fn leak_str(s: &str) -> sys::str_ {
    let len = s.len() as c_int;
    let c = CString::new(s).unwrap_or_default();
    sys::str_ { s: c.into_raw(), len }
}

fn str_of(bytes: &[u8]) -> sys::str_ {
    sys::str_ { s: bytes.as_ptr() as *mut c_char, len: bytes.len() as c_int }
}

fn column_names(c: &Columns) -> [&str; COLUMN_COUNT] {
    [
        &c.msg,
        &c.callid,
        &c.method,
        &c.status,
        &c.fromip,
        &c.toip,
        &c.date,
        &c.direction,
        &c.fromtag,
        &c.traced_user,
        &c.time_us,
        &c.totag,
    ]
}

/// Binds the driver module named by the URL. Fails when no loaded module
/// serves the URL or the driver cannot insert.
pub fn bind(config: &Config) -> Result<(), String> {
    let url = config.db_url.clone().unwrap_or_else(|| {
        String::from_utf8_lossy(&sys::DEFAULT_DB_URL[..sys::DEFAULT_DB_URL.len() - 1]).into_owned()
    });
    let url_str = leak_str(&url);
    let mut funcs = sys::db_func_t::default();
    // SAFETY: `url_str` is a valid str; `funcs` is written by the callee.
    if unsafe { sys::db_bind_mod(&url_str, &mut funcs) } != 0 {
        return Err(format!(
            "cannot bind a database module for db_url '{}'; is its driver module loaded?",
            redact_url(&url)
        ));
    }
    let insert = sys::db_cap_DB_CAP_INSERT;
    if funcs.cap & insert != insert
        || funcs.insert.is_none()
        || funcs.use_table.is_none()
        || funcs.init.is_none()
    {
        return Err(format!("the database module for db_url '{}' cannot insert rows", redact_url(&url)));
    }
    let keys = column_names(&config.columns).map(leak_str);
    let serialize = url.starts_with("sqlite:");
    let setup = DbSetup { funcs, serialize, url: url_str, table: leak_str(&config.table), keys };
    SETUP.set(BoundSetup(setup)).map_err(|_| "database bound twice".to_string())
}

/// A connection of one process.
pub struct DbConn {
    con: *mut sys::db1_con_t,
}

/// Opens this process's connection and checks the table version.
pub fn connect() -> Result<DbConn, String> {
    let Some(BoundSetup(setup)) = SETUP.get() else {
        return Err("database not bound".into());
    };
    let init = setup.funcs.init.ok_or("driver has no init")?;
    // SAFETY: url is a valid str for the life of the process.
    let con = unsafe { init(&setup.url) };
    if con.is_null() {
        return Err("cannot connect to the database; check db_url".into());
    }
    let conn = DbConn { con };
    if setup.funcs.cap & sys::db_cap_DB_CAP_QUERY != 0 {
        let mut funcs = setup.funcs;
        // SAFETY: valid function table, connection and table name.
        let rc = unsafe { sys::db_check_table_version(&mut funcs, con, &setup.table, TABLE_VERSION) };
        if rc < 0 {
            drop(conn);
            // SAFETY: table is a valid str built from a &str.
            let table =
                unsafe { std::slice::from_raw_parts(setup.table.s as *const u8, setup.table.len as usize) };
            return Err(format!(
                "table '{}' is missing or not at version {TABLE_VERSION}; create it with the schema in sql/",
                String::from_utf8_lossy(table)
            ));
        }
    }
    if setup.serialize {
        conn.wait_for_readers();
    }
    Ok(conn)
}

impl DbConn {
    /// Lets an SQLite insert wait a moment for a reader of the file (an
    /// operator's query, a backup) instead of failing at once; db_sqlite
    /// sets no busy timeout of its own. Our writers already take turns
    /// through the shared lock.
    fn wait_for_readers(&self) {
        let Some(BoundSetup(setup)) = SETUP.get() else { return };
        let (Some(raw_query), Some(free_result)) = (setup.funcs.raw_query, setup.funcs.free_result) else {
            return;
        };
        let pragma = format!("PRAGMA busy_timeout = {}", WRITER_WAIT.as_millis());
        let sql = str_of(pragma.as_bytes());
        let mut result: *mut sys::db1_res_t = std::ptr::null_mut();
        // SAFETY: open connection, valid query text; the result is freed once.
        let rc = unsafe { raw_query(self.con, &sql, &mut result) };
        if !result.is_null() {
            // SAFETY: a result the driver allocated for this connection.
            unsafe { free_result(self.con, result) };
        }
        if rc < 0 {
            crate::log_warn!("could not set the SQLite busy timeout; inserts fail while the file is read");
        }
    }

    pub fn insert(&self, row: &Row<'_>) -> Result<(), String> {
        let Some(BoundSetup(setup)) = SETUP.get() else {
            return Err("database not bound".into());
        };
        let direction = match row.direction {
            Direction::In => c"in",
            Direction::Out => c"out",
        };
        let text = |b: &[u8]| value(sys::db_type_t_DB1_STR, |v| v.str_val = str_of(b));
        let vals: [sys::db_val_t; COLUMN_COUNT] = [
            // Text, not a blob as the C module passes it: db_postgres would
            // store a blob in the TEXT column as a \x hex escape (kamailio#2831).
            text(row.msg),
            text(row.callid),
            text(row.method),
            text(row.status),
            text(row.fromip),
            text(row.toip),
            value(sys::db_type_t_DB1_DATETIME, |v| v.time_val = row.time.secs as sys::time_t),
            value(sys::db_type_t_DB1_STRING, |v| v.string_val = direction.as_ptr()),
            text(row.fromtag),
            text(row.traced_user),
            value(sys::db_type_t_DB1_INT, |v| v.int_val = row.time.usecs as c_int),
            text(row.totag),
        ];
        let keys: [sys::db_key_t; COLUMN_COUNT] =
            std::array::from_fn(|i| &setup.keys[i] as *const _ as sys::db_key_t);
        let (Some(use_table), Some(insert)) = (setup.funcs.use_table, setup.funcs.insert) else {
            return Err("the driver cannot insert".into());
        };
        let _writer = match (setup.serialize, shared::get()) {
            (true, Some(shared)) => match shared.db_lock.lock_timeout(WRITER_WAIT) {
                Some(guard) => Some(guard),
                None => return Err(format!("another process held the database for {WRITER_WAIT:?}")),
            },
            _ => None,
        };
        // SAFETY: the connection is open; keys, values and the strings they
        // point at outlive the call, and the driver only reads them.
        let rc = unsafe {
            use_table(self.con, &setup.table);
            insert(self.con, keys.as_ptr(), vals.as_ptr(), COLUMN_COUNT as c_int)
        };
        if rc < 0 {
            Err("the database refused the insert".into())
        } else {
            Ok(())
        }
    }
}

impl Drop for DbConn {
    fn drop(&mut self) {
        if let Some(close) = SETUP.get().and_then(|BoundSetup(s)| s.funcs.close) {
            // SAFETY: the connection was opened by this driver and is closed once.
            unsafe { close(self.con) };
        }
    }
}

fn value(kind: sys::db_type_t, set: impl FnOnce(&mut sys::db_val_t__bindgen_ty_1)) -> sys::db_val_t {
    let mut v = sys::db_val_t { type_: kind, nul: 0, free: 0, ..Default::default() };
    set(&mut v.val);
    v
}
