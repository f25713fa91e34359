//! `sip_trace` rows through Kamailio's generic DB API, so that every DB
//! driver module (db_sqlite, db_postgres, db_mysql, ...) works unchanged.
//! Senders write a batch of rows in one transaction where the driver
//! allows it.

use crate::core::record::{Direction, Row};
use crate::core::shared::Shared;
use crate::core::sql::{self, redact_url, Columns, Dialect, TABLE_VERSION};
use crate::kamailio::config::Config;
use crate::kamailio::host::db::{Db, DbCon, DbValue, InsertError};
use std::borrow::Cow;
use std::cell::Cell;
use std::ffi::{CStr, CString};
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

/// The configured `db_url`, or Kamailio's default URL.
pub fn url(config: &Config) -> String {
    config.db_url.clone().unwrap_or_else(Db::default_url)
}

/// Binds the driver module named by the URL, in mod_init. Fails when no
/// loaded module serves the URL or the driver cannot insert.
pub fn bind(config: &Config) -> Result<Db, String> {
    let url = url(config);
    let Some(db) = Db::bind(&url) else {
        return Err(format!(
            "cannot bind a database module for db_url '{}'; is its driver module loaded?",
            redact_url(&url)
        ));
    };
    if !db.can_insert() {
        return Err(format!("the database module for db_url '{}' cannot insert rows", redact_url(&url)));
    }
    Ok(db)
}

/// The bound driver and the table layout, as a process writes rows.
pub struct DbSetup {
    db: Db,
    /// SQLite: one writer at a time, across processes; transactions by SQL.
    sqlite: bool,
    /// Drivers whose SQL literals we can write take many rows per statement.
    dialect: Option<Dialect>,
    /// `INSERT INTO table (columns) VALUES `, for the multi-row statements.
    insert_head: String,
    /// For the heads of statements into tables trace_table_avp names.
    columns: Columns,
    table: CString,
    keys: [CString; COLUMN_COUNT],
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

fn c_string(s: &str) -> CString {
    CString::new(s).unwrap_or_default()
}

impl DbSetup {
    pub fn new(config: &Config, db: Db) -> DbSetup {
        let url = url(config);
        DbSetup {
            db,
            sqlite: url.starts_with("sqlite:"),
            dialect: Dialect::of_url(&url).filter(|_| db.runs_sql()),
            insert_head: sql::insert_head(&config.table, &config.columns),
            columns: config.columns.clone(),
            table: c_string(&config.table),
            keys: column_names(&config.columns).map(c_string),
        }
    }
}

/// At startup, in the main process: a table of the wrong version stops
/// the server, as it would write wrong rows. A database that does not
/// answer does not: the senders connect when it does, and count the rows
/// they cannot store until then.
pub fn check_at_startup(setup: &DbSetup) -> Result<(), String> {
    match connect(setup) {
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
    con: DbCon,
    /// The buffer multi-row statements are written in.
    statement: Cell<Vec<u8>>,
}

/// Opens a connection and checks the table version.
pub fn connect(setup: &DbSetup) -> Result<DbConn, ConnectError> {
    let Some(con) = setup.db.connect() else {
        return Err(ConnectError::Unreachable("cannot connect; check db_url".into()));
    };
    if con.table_version_refused(&setup.table, TABLE_VERSION) {
        return Err(ConnectError::Table(format!(
            "table '{}' is missing or not at version {TABLE_VERSION}; create it with the schema in sql/",
            setup.table.to_string_lossy()
        )));
    }
    let conn = DbConn { con, statement: Default::default() };
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
        if self.con.run_sql(sql) {
            Ok(())
        } else {
            Err(())
        }
    }

    /// Whether the connection still answers a trivial query.
    pub fn is_alive(&self) -> bool {
        self.raw("SELECT 1").is_ok()
    }

    /// Stores `rows` in one transaction where the driver has them. Returns
    /// how many were stored and, when not all, why.
    pub fn insert_batch(
        &self,
        setup: &DbSetup,
        shared: &Shared,
        rows: &[Row<'_>],
    ) -> (usize, Option<String>) {
        // Several senders writing one SQLite file take turns.
        let _writer = match setup.sqlite {
            true => match shared.db_lock.lock_timeout(WRITER_WAIT) {
                Some(guard) => Some(guard),
                None => return (0, Some(format!("another process held the database for {WRITER_WAIT:?}"))),
            },
            false => None,
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
        let keys: [&CStr; COLUMN_COUNT] = setup.keys.each_ref().map(CString::as_c_str);
        self.con.insert_rows(target.table, &keys, rows.iter().map(values)).map_err(|e| match e {
            InsertError::Unsupported => "the driver cannot insert".to_string(),
            InsertError::Refused => "the database refused a row".to_string(),
        })
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
        self.con.start_transaction().unwrap_or(false)
    }

    fn commit(&self, setup: &DbSetup) -> bool {
        if setup.sqlite {
            return self.raw("COMMIT").is_ok();
        }
        self.con.end_transaction()
    }

    fn rollback(&self, setup: &DbSetup) {
        if setup.sqlite {
            let _ = self.raw("ROLLBACK");
        } else {
            self.con.abort_transaction();
        }
    }
}

/// The table rows go to: the configured one, or one trace_table_avp named
/// (checked to be a plain identifier before it was queued).
struct Target<'a> {
    head: Cow<'a, str>,
    table: &'a [u8],
}

impl<'a> Target<'a> {
    fn of(setup: &'a DbSetup, table: &'a [u8]) -> Target<'a> {
        match std::str::from_utf8(table) {
            Ok(name) if !name.is_empty() => {
                Target { head: Cow::Owned(sql::insert_head(name, &setup.columns)), table }
            }
            _ => Target { head: Cow::Borrowed(&setup.insert_head), table: setup.table.as_bytes() },
        }
    }
}

/// The values of a row, in the order of the keys.
fn values<'r>(row: &Row<'r>) -> [DbValue<'r>; COLUMN_COUNT] {
    let direction = match row.direction {
        Direction::In => c"in",
        Direction::Out => c"out",
    };
    [
        // Text, not a blob as the C module passes it: db_postgres would
        // store a blob in the TEXT column as a \x hex escape (kamailio#2831).
        DbValue::Str(row.msg),
        DbValue::Str(row.callid),
        DbValue::Str(row.method),
        DbValue::Str(row.status),
        DbValue::Str(row.fromip),
        DbValue::Str(row.toip),
        DbValue::DateTime(row.time.secs as i64),
        DbValue::Static(direction),
        DbValue::Str(row.fromtag),
        DbValue::Str(row.traced_user),
        DbValue::Int(row.time.usecs as i32),
        DbValue::Str(row.totag),
    ]
}
