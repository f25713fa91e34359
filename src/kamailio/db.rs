//! `sip_trace` rows through Kamailio's generic DB API, so that every DB
//! driver module (db_sqlite, db_postgres, db_mysql, ...) works unchanged.
//! Senders write a batch of rows in one transaction where the driver
//! allows it.

use crate::core::sql::{redact_url, Columns, TABLE_VERSION};
use crate::kamailio::config::Config;
use crate::core::record::{Direction, Row};
use crate::core::sql::{self, Dialect};
use crate::kamailio::{shared, sys};
use std::borrow::Cow;
use std::ffi::CString;
use std::os::raw::{c_char, c_int};
use std::sync::OnceLock;
use std::time::Duration;

const COLUMN_COUNT: usize = 12;

/// How long an SQLite write waits for the file: for another process's
/// write, and for a reader.
const WRITER_WAIT: Duration = Duration::from_secs(1);

/// How long a batch the database refused may take to be retried row by
/// row.
const ROW_BY_ROW_BUDGET: Duration = Duration::from_secs(2);

/// Largest multi-row INSERT statement, in bytes. db_postgres copies each
/// statement into the process's private (pkg) memory, 8 MiB by default.
const MAX_STATEMENT: usize = 256 << 10;

/// The bound driver and the table layout, set up once in mod_init.
struct DbSetup {
    funcs: sys::db_func_t,
    /// SQLite: one writer at a time, across processes; transactions by SQL.
    sqlite: bool,
    /// Drivers whose SQL literals we can write take many rows per statement.
    dialect: Option<Dialect>,
    /// `INSERT INTO table (columns) VALUES `, for the multi-row statements.
    insert_head: String,
    /// For the heads of statements into tables trace_table_avp names.
    columns: Columns,
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

fn setup() -> Option<&'static DbSetup> {
    SETUP.get().map(|BoundSetup(s)| s)
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
    let dialect = Dialect::of_url(&url).filter(|_| funcs.raw_query.is_some() && funcs.free_result.is_some());
    let setup = DbSetup {
        funcs,
        sqlite: url.starts_with("sqlite:"),
        dialect,
        insert_head: sql::insert_head(&config.table, &config.columns),
        columns: config.columns.clone(),
        url: url_str,
        table: leak_str(&config.table),
        keys,
    };
    SETUP.set(BoundSetup(setup)).map_err(|_| "database bound twice".to_string())
}

/// At startup, in the main process: a table of the wrong version stops
/// the server, as it would write wrong rows. A database that does not
/// answer does not: the senders connect when it does, and count the rows
/// they cannot store until then.
pub fn check_at_startup() -> Result<(), String> {
    match connect() {
        Ok(conn) => {
            drop(conn);
            Ok(())
        }
        Err(ConnectError::Unreachable(e)) => {
            crate::log_warn!(
                "the database does not answer now ({e}); rows are dropped and counted until it does"
            );
            Ok(())
        }
        Err(ConnectError::Table(e)) => Err(e),
    }
}

pub enum ConnectError {
    Unreachable(String),
    Table(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Unreachable(e) | ConnectError::Table(e) => f.write_str(e),
        }
    }
}

/// A connection of one process.
pub struct DbConn {
    con: *mut sys::db1_con_t,
    /// The buffer multi-row statements are written in.
    statement: std::cell::Cell<Vec<u8>>,
}

/// Opens a connection and checks the table version.
pub fn connect() -> Result<DbConn, ConnectError> {
    let setup = setup().ok_or_else(|| ConnectError::Unreachable("database not bound".into()))?;
    let init = setup.funcs.init.ok_or_else(|| ConnectError::Unreachable("driver has no init".into()))?;
    // SAFETY: url is a valid str for the life of the process.
    let con = unsafe { init(&setup.url) };
    if con.is_null() {
        return Err(ConnectError::Unreachable("cannot connect; check db_url".into()));
    }
    let conn = DbConn { con, statement: Default::default() };
    if setup.funcs.cap & sys::db_cap_DB_CAP_QUERY != 0 {
        let mut funcs = setup.funcs;
        // SAFETY: valid function table, connection and table name.
        let rc = unsafe { sys::db_check_table_version(&mut funcs, con, &setup.table, TABLE_VERSION) };
        if rc < 0 {
            // SAFETY: table is a valid str built from a &str.
            let table =
                unsafe { std::slice::from_raw_parts(setup.table.s as *const u8, setup.table.len as usize) };
            return Err(ConnectError::Table(format!(
                "table '{}' is missing or not at version {TABLE_VERSION}; create it with the schema in sql/",
                String::from_utf8_lossy(table)
            )));
        }
    }
    if setup.sqlite {
        let pragma = format!("PRAGMA busy_timeout = {}", WRITER_WAIT.as_millis());
        if conn.raw(&pragma).is_err() {
            crate::log_warn!("could not set the SQLite busy timeout; inserts fail while the file is read");
        }
    }
    Ok(conn)
}

impl DbConn {
    /// Runs one SQL statement that returns nothing the caller needs.
    fn raw(&self, sql: &str) -> Result<(), ()> {
        self.raw_bytes(sql.as_bytes())
    }

    fn raw_bytes(&self, sql: &[u8]) -> Result<(), ()> {
        let Some(setup) = setup() else { return Err(()) };
        let (Some(raw_query), Some(free_result)) = (setup.funcs.raw_query, setup.funcs.free_result) else {
            return Err(());
        };
        let text = str_of(sql);
        let mut result: *mut sys::db1_res_t = std::ptr::null_mut();
        // SAFETY: open connection, valid query text; a result is freed once.
        let rc = unsafe { raw_query(self.con, &text, &mut result) };
        if !result.is_null() {
            // SAFETY: a result the driver allocated for this connection.
            unsafe { free_result(self.con, result) };
        }
        if rc < 0 {
            Err(())
        } else {
            Ok(())
        }
    }

    /// Whether the connection still answers a trivial query.
    pub fn is_alive(&self) -> bool {
        self.raw("SELECT 1").is_ok()
    }

    /// Stores `rows` in one transaction where the driver has them. Returns
    /// how many were stored and, when not all, why.
    pub fn insert_batch(&self, rows: &[Row<'_>]) -> (usize, Option<String>) {
        let Some(setup) = setup() else { return (0, Some("database not bound".into())) };
        // Several senders writing one SQLite file take turns.
        let _writer = match (setup.sqlite, shared::get()) {
            (true, Some(shared)) => match shared.db_lock.lock_timeout(WRITER_WAIT) {
                Some(guard) => Some(guard),
                None => return (0, Some(format!("another process held the database for {WRITER_WAIT:?}"))),
            },
            _ => None,
        };
        let transaction = self.begin(setup);
        let mut result = Ok(0);
        for run in rows.chunk_by(|a, b| a.table == b.table) {
            let target = Target::of(setup, run[0].table);
            result = match setup.dialect {
                Some(dialect) => self.insert_statements(setup, &target, dialect, run),
                None => self.insert_rows(setup, &target, run),
            };
            if result.is_err() {
                break;
            }
        }
        let committed = match result {
            Ok(_) => !transaction || self.commit(setup),
            Err(_) => {
                if transaction {
                    self.rollback(setup);
                }
                false
            }
        };
        if committed {
            return (rows.len(), None);
        }
        // Something in the batch was refused: store what can be stored, a
        // row at a time, so that only the rows at fault are lost. A database
        // that refuses everything (a locked file, say) may make each row
        // wait: past a time budget, the rest of the batch is given up.
        let mut stored = 0;
        let mut error = None;
        let started = std::time::Instant::now();
        for (i, row) in rows.iter().enumerate() {
            if started.elapsed() > ROW_BY_ROW_BUDGET {
                let left = rows.len() - i;
                let why = format!("{left} rows given up after {ROW_BY_ROW_BUDGET:?} of failing inserts");
                return (stored, Some(error.map_or(why.clone(), |e| format!("{e}; {why}"))));
            }
            let target = Target::of(setup, row.table);
            match self.insert_rows(setup, &target, std::slice::from_ref(row)) {
                Ok(n) => stored += n,
                Err(e) => {
                    error.get_or_insert(e);
                }
            }
        }
        (stored, error)
    }

    /// Inserts through the driver, one row per call.
    fn insert_rows(&self, setup: &DbSetup, target: &Target<'_>, rows: &[Row<'_>]) -> Result<usize, String> {
        let (Some(use_table), Some(insert)) = (setup.funcs.use_table, setup.funcs.insert) else {
            return Err("the driver cannot insert".into());
        };
        let keys: [sys::db_key_t; COLUMN_COUNT] =
            std::array::from_fn(|i| &setup.keys[i] as *const _ as sys::db_key_t);
        // SAFETY: open connection; the driver keeps the table name's
        // pointer, which is set again before each use.
        unsafe { use_table(self.con, &target.table) };
        for row in rows {
            let vals = values(row);
            // SAFETY: keys, values and the strings they point at outlive the
            // call, and the driver only reads them.
            if unsafe { insert(self.con, keys.as_ptr(), vals.as_ptr(), COLUMN_COUNT as c_int) } < 0 {
                return Err("the database refused a row".into());
            }
        }
        Ok(rows.len())
    }

    /// Inserts many rows per statement; rows no statement can carry go
    /// through the driver one by one.
    fn insert_statements(
        &self,
        setup: &DbSetup,
        target: &Target<'_>,
        dialect: Dialect,
        rows: &[Row<'_>],
    ) -> Result<usize, String> {
        let mut sql = self.statement.take();
        sql.clear();
        let mut result = Ok(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let before = sql.len();
            if before == 0 {
                sql.extend_from_slice(target.head.as_bytes());
            } else {
                sql.extend_from_slice(b", ");
            }
            if !sql::push_row(&mut sql, dialect, row) {
                sql.truncate(before);
                if let Err(e) = self.insert_rows(setup, target, std::slice::from_ref(row)) {
                    result = Err(e);
                    break;
                }
            } else if sql.len() >= MAX_STATEMENT || i + 1 == rows.len() {
                if self.raw_bytes(&sql).is_err() {
                    result = Err("the database refused the rows".to_string());
                    break;
                }
                sql.clear();
            }
        }
        if result.is_ok() && !sql.is_empty() && self.raw_bytes(&sql).is_err() {
            result = Err("the database refused the rows".to_string());
        }
        // Kept for the next batch: the statements are about the same size.
        sql.clear();
        self.statement.set(sql);
        result
    }

    fn begin(&self, setup: &DbSetup) -> bool {
        if setup.sqlite {
            return self.raw("BEGIN IMMEDIATE").is_ok();
        }
        match (setup.funcs.start_transaction, setup.funcs.end_transaction) {
            // SAFETY: open connection; no table lock asked for.
            (Some(start), Some(_)) => unsafe { start(self.con, sys::db_locking_t_DB_LOCKING_NONE) >= 0 },
            _ => false,
        }
    }

    fn commit(&self, setup: &DbSetup) -> bool {
        if setup.sqlite {
            return self.raw("COMMIT").is_ok();
        }
        // SAFETY: the transaction begin() opened on this connection.
        setup.funcs.end_transaction.is_some_and(|end| unsafe { end(self.con) } >= 0)
    }

    fn rollback(&self, setup: &DbSetup) {
        if setup.sqlite {
            let _ = self.raw("ROLLBACK");
        } else if let Some(abort) = setup.funcs.abort_transaction {
            // SAFETY: as above.
            unsafe { abort(self.con) };
        }
    }
}

impl Drop for DbConn {
    fn drop(&mut self) {
        if let Some(close) = setup().and_then(|s| s.funcs.close) {
            // SAFETY: the connection was opened by this driver and is closed once.
            unsafe { close(self.con) };
        }
    }
}

/// The table rows go to: the configured one, or one trace_table_avp named
/// (checked to be a plain identifier before it was queued).
struct Target<'a> {
    head: Cow<'a, str>,
    table: sys::str_,
}

impl<'a> Target<'a> {
    fn of(setup: &'a DbSetup, table: &'a [u8]) -> Target<'a> {
        match std::str::from_utf8(table) {
            Ok(name) if !name.is_empty() => {
                Target { head: Cow::Owned(sql::insert_head(name, &setup.columns)), table: str_of(table) }
            }
            _ => Target { head: Cow::Borrowed(&setup.insert_head), table: setup.table },
        }
    }
}

/// The values of a row, in the order of the keys.
fn values(row: &Row<'_>) -> [sys::db_val_t; COLUMN_COUNT] {
    let direction = match row.direction {
        Direction::In => c"in",
        Direction::Out => c"out",
    };
    let text = |b: &[u8]| value(sys::db_type_t_DB1_STR, |v| v.str_val = str_of(b));
    [
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
    ]
}

fn value(kind: sys::db_type_t, set: impl FnOnce(&mut sys::db_val_t__bindgen_ty_1)) -> sys::db_val_t {
    let mut v = sys::db_val_t { type_: kind, nul: 0, free: 0, ..Default::default() };
    set(&mut v.val);
    v
}
