//! Rows into an SQLite file, the way SQLite is cheapest: one prepared
//! INSERT per table, bound per row, inside one `BEGIN IMMEDIATE` ...
//! `COMMIT` per batch.
//!
//! The values are those db_sqlite binds for the DB API's insert: the text
//! columns as text (the bytes as they are), `time_stamp` as a Julian day
//! number (a double, as db_sqlite stores a DATETIME), `time_us` as an
//! integer, so a row reads back the same whichever path wrote it.
//!
//! The file is opened as db_sqlite opens it, through the same system
//! libsqlite3, but never created: a file that is not there is a
//! configuration error (a path one slash short, say), not an empty
//! database to create beside the working directory.
//!
//! **Other readers and writers.** An insert waits up to [`BUSY_TIMEOUT`]
//! for another process that holds the file (a shell's `sqlite3`, a
//! reader's open transaction). The journal mode is left as the file has
//! it: the writer does not switch a file to WAL, because WAL is a property
//! of the file that every other program opening it then has to live with
//! (a `-wal` and a `-shm` file beside it, readers that need write access to
//! the directory, no network filesystems). In WAL mode, which an operator
//! can set once with `PRAGMA journal_mode=WAL`, readers never make the
//! writer wait. doc/admin.md says what each mode means for an operator.

use super::{OpenError, StoreSettings, WriteError, Writer};
use crate::core::record::Row;
use crate::core::sql::{self, TABLE_VERSION};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, OpenFlags, ToSql};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a write waits for the file when another process holds it.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(1);

pub struct SqliteWriter {
    conn: Connection,
    /// The INSERT into the configured table.
    insert: String,
    columns: sql::Columns,
}

/// Text bound as SQLite text, byte for byte, as db_sqlite binds a DB1_STR
/// (`sqlite3_bind_text` with its length): not UTF-8 checked, NULs kept.
struct Text<'a>(&'a [u8]);

impl ToSql for Text<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(ValueRef::Text(self.0)))
    }
}

/// `INSERT INTO table (columns) VALUES (?1, ..., ?12)`.
fn insert_sql(table: &str, columns: &sql::Columns) -> String {
    let marks: Vec<String> = (1..=12).map(|i| format!("?{i}")).collect();
    format!("{}({})", sql::insert_head(table, columns), marks.join(", "))
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
}

/// The path as the user wrote it, and where it is when it is relative.
fn describe(path: &str) -> String {
    if Path::new(path).is_absolute() {
        return format!("'{path}'");
    }
    let cwd = std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_else(|_| "?".into());
    format!(
        "'{path}' (a relative path, in the working directory '{cwd}': an absolute path takes four slashes, \
         sqlite:////var/lib/...)"
    )
}

/// Why `path` cannot be opened, in an operator's words.
fn why_not_opened(path: &str, error: &rusqlite::Error) -> String {
    let p = Path::new(path);
    let parent =
        p.parent().filter(|d| !d.as_os_str().is_empty()).map(Path::to_path_buf).unwrap_or(PathBuf::from("."));
    match std::fs::metadata(p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if parent.is_dir() {
                "the file does not exist; create it with the schema in sql/sqlite.sql".into()
            } else {
                format!("the directory '{}' does not exist", parent.display())
            }
        }
        Err(e) => e.to_string(),
        Ok(m) if m.is_dir() => "it is a directory".into(),
        Ok(_) => error.to_string(),
    }
}

/// Whether this process may create files in `dir` (SQLite's journal).
fn writable_dir(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else { return false };
    // SAFETY: a NUL-terminated path that lives across the call.
    unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

impl SqliteWriter {
    /// Opens the file and checks the table's version: a file that cannot
    /// be opened or written, is not a database, or has no table at the
    /// right version is a configuration error; one that another process
    /// holds longer than the busy timeout only means "not now".
    pub fn open(settings: &StoreSettings) -> Result<SqliteWriter, OpenError> {
        let path = settings.id.database.as_deref().unwrap_or_default();
        let name = settings.url_for_log();
        let config =
            |why: String| OpenError::Config(format!("{name}: SQLite file {}: {why}", describe(path)));
        if path.is_empty() {
            return Err(config("no file named".into()));
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| config(why_not_opened(path, &e)))?;
        if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(true) {
            return Err(config("this process may not write it (permissions)".into()));
        }
        let dir = Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !writable_dir(dir) {
            return Err(config(format!(
                "this process may not create files in '{}', where SQLite keeps its journal",
                dir.display()
            )));
        }
        conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| config(e.to_string()))?;
        let failed = |e: rusqlite::Error| {
            if is_busy(&e) {
                OpenError::Unreachable(format!("{name}: another process holds the SQLite file: {e}"))
            } else {
                config(e.to_string())
            }
        };
        let version = table_version(&conn, &settings.version_table, &settings.table).map_err(failed)?;
        if version != Some(i64::from(TABLE_VERSION)) {
            return Err(config(format!(
                "table '{}' is missing or not at version {TABLE_VERSION} (the '{}' table says {}); create it with \
                 the schema in sql/",
                settings.table,
                settings.version_table,
                version.map_or("nothing".to_string(), |v| v.to_string())
            )));
        }
        let insert = insert_sql(&settings.table, &settings.columns);
        // Compiles the INSERT once now: a column missing from the table is
        // found here rather than at every batch.
        conn.prepare_cached(&insert).map_err(failed)?;
        Ok(SqliteWriter { conn, insert, columns: settings.columns.clone() })
    }

    fn insert_run(&self, table: &[u8], rows: &[Row<'_>]) -> rusqlite::Result<()> {
        let other;
        let sql = match std::str::from_utf8(table) {
            Ok(t) if !t.is_empty() => {
                other = insert_sql(t, &self.columns);
                &other
            }
            _ => &self.insert,
        };
        let mut stmt = self.conn.prepare_cached(sql)?;
        for row in rows {
            stmt.execute(rusqlite::params![
                Text(row.msg),
                Text(row.callid),
                Text(row.method),
                Text(row.status),
                Text(row.fromip),
                Text(row.toip),
                sql::sqlite_julian_day(row.time.secs as i64),
                row.direction.as_str(),
                Text(row.fromtag),
                Text(row.traced_user),
                i64::from(row.time.usecs),
                Text(row.totag),
            ])?;
        }
        Ok(())
    }

    fn run(&self, sql: &str) -> rusqlite::Result<()> {
        self.conn.prepare_cached(sql)?.execute([]).map(drop)
    }
}

/// The version the version table gives `table`: None without a row, as
/// `db_table_version` reads it (an integer or a real).
fn table_version(conn: &Connection, version_table: &str, table: &str) -> rusqlite::Result<Option<i64>> {
    let sql = format!("SELECT table_version FROM {version_table} WHERE table_name = ?1");
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query([table])?;
    let Some(row) = rows.next()? else { return Ok(None) };
    let version = match row.get_ref(0)? {
        ValueRef::Integer(v) => Some(v),
        ValueRef::Real(v) => Some(v as i64),
        _ => None,
    };
    if rows.next()?.is_some() {
        return Ok(None);
    }
    Ok(version)
}

fn refused(e: rusqlite::Error) -> WriteError {
    WriteError::refused(format!("SQLite: {e}"))
}

impl Writer for SqliteWriter {
    fn write_batch(&mut self, rows: &[Row<'_>]) -> Result<(), WriteError> {
        // IMMEDIATE takes the write lock now (waiting for it up to the busy
        // timeout) rather than at the first insert.
        self.run("BEGIN IMMEDIATE").map_err(refused)?;
        let mut result = Ok(());
        for run in rows.chunk_by(|a, b| a.table == b.table) {
            result = self.insert_run(run[0].table, run);
            if result.is_err() {
                break;
            }
        }
        let result = result.and_then(|()| self.run("COMMIT"));
        if result.is_err() && !self.conn.is_autocommit() {
            let _ = self.run("ROLLBACK");
        }
        result.map_err(refused)
    }

    fn write_row(&mut self, row: &Row<'_>) -> Result<(), WriteError> {
        self.insert_run(row.table, std::slice::from_ref(row)).map_err(refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::record::{Direction, Timestamp};
    use crate::core::sql::Columns;
    use crate::core::store::{check_at_startup, write_rows, Backend, StoreSettings, ROW_BY_ROW_BUDGET};
    use std::time::Instant;

    const SCHEMA: &str = include_str!("../../../sql/sqlite.sql");

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!("siptrace-sqlite-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn db(&self) -> PathBuf {
            let db = self.0.join("trace.db");
            Connection::open(&db).unwrap().execute_batch(SCHEMA).unwrap();
            db
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn settings(path: &Path) -> StoreSettings {
        let url = format!("sqlite:///{}", path.display());
        let s = StoreSettings::native(&url, "sip_trace", &Columns::default(), "version").unwrap();
        assert_eq!(s.backend, Backend::Sqlite);
        s
    }

    fn row(msg: &'static [u8], table: &'static [u8]) -> Row<'static> {
        Row {
            table,
            msg,
            callid: b"c'1",
            method: b"INVITE",
            status: b"",
            fromip: b"udp:10.0.0.1:5060",
            toip: b"udp:[2001:db8::1]:5060",
            time: Timestamp { secs: 1_800_000_000, usecs: 999_999 },
            direction: Direction::Out,
            fromtag: b"ft",
            traced_user: b"alice",
            totag: b"",
        }
    }

    type Read = (Vec<u8>, String, f64, String, i64, String, String);

    fn read_back(db: &Path, table: &str) -> Vec<Read> {
        let conn = Connection::open(db).unwrap();
        let sql = format!(
            "SELECT CAST(msg AS BLOB), typeof(msg), time_stamp, direction, time_us, traced_user, toip \
             FROM {table} ORDER BY id"
        );
        let mut stmt = conn.prepare(&sql).unwrap();
        let rows = stmt.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
        });
        rows.unwrap().map(Result::unwrap).collect()
    }

    #[test]
    fn rows_read_back_as_db_sqlite_writes_them() {
        let dir = TempDir::new("rows");
        let db = dir.db();
        let mut w = SqliteWriter::open(&settings(&db)).unwrap();
        let rows = [row(b"INVITE 'x'", b""), row(b"raw \xff\xfe and \0 NUL", b"")];
        w.write_batch(&rows).unwrap();
        let back = read_back(&db, "sip_trace");
        assert_eq!(back.len(), 2);
        let (msg, kind, date, direction, us, user, toip) = &back[0];
        assert_eq!((msg.as_slice(), kind.as_str()), (&b"INVITE 'x'"[..], "text"));
        // The double db_sqlite binds for a DATETIME, exactly.
        assert_eq!(date.to_bits(), sql::sqlite_julian_day(1_800_000_000).to_bits());
        assert_eq!((direction.as_str(), *us, user.as_str()), ("out", 999_999, "alice"));
        assert_eq!(toip, "udp:[2001:db8::1]:5060");
        // Bytes that are not UTF-8, and a NUL, stay as they were, as text.
        assert_eq!((back[1].0.as_slice(), back[1].1.as_str()), (&b"raw \xff\xfe and \0 NUL"[..], "text"));
    }

    #[test]
    fn rows_for_another_table_go_there_in_the_same_transaction() {
        let dir = TempDir::new("avp");
        let db = dir.db();
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch(&SCHEMA.replace("sip_trace", "calls_2026").replace("INSERT OR REPLACE", "-- "))
            .unwrap();
        let mut w = SqliteWriter::open(&settings(&db)).unwrap();
        w.write_batch(&[row(b"a", b""), row(b"b", b"calls_2026"), row(b"c", b"calls_2026")]).unwrap();
        assert_eq!(read_back(&db, "sip_trace").len(), 1);
        assert_eq!(read_back(&db, "calls_2026").len(), 2);
        // A table that does not exist fails the batch, and nothing of it stays.
        assert!(w.write_batch(&[row(b"d", b""), row(b"e", b"nope")]).is_err());
        assert_eq!(read_back(&db, "sip_trace").len(), 1);
        // Row by row, only the row at fault is lost.
        let (stored, error) = write_rows(&mut w, &[row(b"d", b""), row(b"e", b"nope")], ROW_BY_ROW_BUDGET);
        assert_eq!(stored, 1);
        assert!(error.unwrap().message.contains("no such table: nope"));
    }

    #[test]
    fn files_that_cannot_be_opened_refuse_startup_naming_url_and_path() {
        let dir = TempDir::new("refuse");
        let missing_dir = dir.0.join("no-such-dir/trace.db");
        let e = check_at_startup(&settings(&missing_dir)).unwrap_err();
        assert!(e.starts_with("db_url 'sqlite:///"), "{e}");
        assert!(e.contains(&format!("'{}'", missing_dir.display())) && e.contains("does not exist"), "{e}");

        let missing_file = dir.0.join("none.db");
        let e = check_at_startup(&settings(&missing_file)).unwrap_err();
        assert!(e.contains("the file does not exist"), "{e}");
        assert!(!missing_file.exists(), "the writer creates no file");

        let not_a_db = dir.0.join("text.db");
        std::fs::write(&not_a_db, vec![b'x'; 4096]).unwrap();
        let e = check_at_startup(&settings(&not_a_db)).unwrap_err();
        assert!(e.contains("not a database"), "{e}");

        let e = check_at_startup(&settings(&dir.0)).unwrap_err();
        assert!(e.contains("it is a directory"), "{e}");
    }

    #[test]
    fn a_relative_path_says_where_it_is() {
        let s = StoreSettings::native(
            "sqlite:///no-such-dir-x/t.db",
            "sip_trace",
            &Columns::default(),
            "version",
        );
        let e = check_at_startup(&s.unwrap()).unwrap_err();
        assert!(e.contains("'no-such-dir-x/t.db' (a relative path, in the working directory"), "{e}");
        assert!(e.contains("four slashes"), "{e}");
    }

    #[test]
    #[ignore = "needs a user other than root: root may write any file, so no permission is ever missing"]
    fn a_file_without_write_permission_refuses_startup() {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new("perm");
        let db = dir.db();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o444)).unwrap();
        let e = check_at_startup(&settings(&db)).unwrap_err();
        assert!(e.contains("may not write it"), "{e}");
    }

    #[test]
    fn a_wrong_or_missing_version_refuses_startup() {
        let dir = TempDir::new("version");
        let db = dir.db();
        let conn = Connection::open(&db).unwrap();
        conn.execute("UPDATE version SET table_version = 3", []).unwrap();
        let e = check_at_startup(&settings(&db)).unwrap_err();
        assert!(
            e.contains("table 'sip_trace' is missing or not at version 4 (the 'version' table says 3)"),
            "{e}"
        );
        conn.execute("DELETE FROM version", []).unwrap();
        let e = check_at_startup(&settings(&db)).unwrap_err();
        assert!(e.contains("says nothing"), "{e}");
        conn.execute_batch("DROP TABLE version").unwrap();
        let e = check_at_startup(&settings(&db)).unwrap_err();
        assert!(e.contains("no such table: version"), "{e}");
        // A table whose columns are not the configured ones.
        conn.execute_batch(SCHEMA).unwrap();
        let mut s = settings(&db);
        s.columns.callid = "call_id".into();
        let e = check_at_startup(&s).unwrap_err();
        assert!(e.contains("call_id"), "{e}");
        assert_eq!(check_at_startup(&settings(&db)), Ok(None));
    }

    #[test]
    fn another_writer_holding_the_file_means_not_now() {
        let dir = TempDir::new("locked");
        let db = dir.db();
        let mut w = SqliteWriter::open(&settings(&db)).unwrap();
        let other = Connection::open(&db).unwrap();
        other.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let started = Instant::now();
        let e = w.write_batch(&[row(b"a", b"")]).unwrap_err();
        assert!(started.elapsed() >= BUSY_TIMEOUT, "the write waited for the busy timeout");
        assert!(e.message.contains("locked") && !e.lost_connection, "{e:?}");
        // At startup too: Kamailio starts, the sender tries again.
        assert!(matches!(check_at_startup(&settings(&db)), Ok(Some(_))));
        other.execute_batch("ROLLBACK").unwrap();
        w.write_batch(&[row(b"a", b"")]).unwrap();
        assert_eq!(read_back(&db, "sip_trace").len(), 1);
    }

    #[test]
    fn a_reader_in_the_middle_of_a_query_delays_a_batch_but_costs_no_row() {
        let dir = TempDir::new("reader");
        let db = dir.db();
        let mut w = SqliteWriter::open(&settings(&db)).unwrap();
        w.write_batch(&[row(b"first", b"")]).unwrap();
        let reader = Connection::open(&db).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let n: i64 = reader.query_row("SELECT count(*) FROM sip_trace", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 1);
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            reader.execute_batch("COMMIT").unwrap();
        });
        let rows = vec![row(b"x", b""); 100];
        let started = Instant::now();
        w.write_batch(&rows).unwrap();
        release.join().unwrap();
        assert!(started.elapsed() < BUSY_TIMEOUT, "the commit waited for the reader, within the timeout");
        assert_eq!(read_back(&db, "sip_trace").len(), 101);
    }
}
