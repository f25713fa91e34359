//! Rows into PostgreSQL, the way PostgreSQL is cheapest: one binary
//! `COPY table (columns) FROM STDIN (FORMAT binary)` per batch, through a
//! statement prepared once. The server parses no SQL per row and converts
//! no text; db_postgres has no bulk path at all.
//!
//! The values are those db_postgres writes, so a row reads back the same
//! whichever path wrote it: text as text (cut at a NUL byte, where
//! db_postgres's escaping stops), `time_stamp` as the local wall-clock
//! time with whole seconds (db_postgres writes `YYYY-MM-DD HH:MM:SS` in
//! Kamailio's time zone), `time_us` as an integer. Binary COPY needs each
//! value in its column's own type: the writer reads the table's column
//! types when it connects and refuses a table it cannot fill exactly
//! (see [`Layout`]).
//!
//! The connection is made from the URL as db_postgres makes it: host (a
//! path for a Unix socket; none: libpq's socket directory), port, user,
//! password and database, with libpq's defaults for what the URL leaves
//! out (`PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, the process's user).
//! It is made without TLS. What db_postgres's own parameters add
//! (`con_param` such as `sslmode`, `timeout`) the native writer does not
//! see: with those, use `db_native=0`.

use super::{OpenError, StoreSettings, WriteError, Writer};
use crate::core::record::Row;
use crate::core::sql::{self, Columns, TABLE_VERSION};
use postgres::types::Type;
use postgres::{Client, NoTls, Statement};
use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

/// How long a connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// libpq's socket directory on Debian, where a URL without host connects.
const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

/// How a table's `time_stamp` column takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateColumn {
    /// `TIMESTAMP WITHOUT TIME ZONE` (the schema's): the local wall-clock time.
    Local,
    /// `TIMESTAMP WITH TIME ZONE`: the instant itself.
    Instant,
}

/// How a table's `time_us` column takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntColumn {
    Int4,
    Int8,
}

/// The binary layout of a table's row, from its column types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub date: DateColumn,
    pub time_us: IntColumn,
}

/// The columns in COPY order, the order of `sql::insert_head`.
fn column_list(c: &Columns) -> String {
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
    .map(String::as_str)
    .join(", ")
}

/// The layout for a table's column types (in COPY order), or why the
/// writer cannot fill them exactly.
pub fn layout(types: &[Type], columns: &Columns) -> Result<Layout, String> {
    let names = column_list(columns);
    let names: Vec<&str> = names.split(", ").collect();
    if types.len() != 12 {
        return Err(format!("expected 12 columns, the table gives {}", types.len()));
    }
    let unsupported = |i: usize| {
        format!(
            "column '{}' has type {}, which the native writer does not fill; use db_native=0",
            names[i], types[i]
        )
    };
    for i in [0, 1, 2, 3, 4, 5, 7, 8, 9, 11] {
        if ![Type::TEXT, Type::VARCHAR, Type::BPCHAR].contains(&types[i]) {
            return Err(unsupported(i));
        }
    }
    let date = match types[6] {
        Type::TIMESTAMP => DateColumn::Local,
        Type::TIMESTAMPTZ => DateColumn::Instant,
        _ => return Err(unsupported(6)),
    };
    let time_us = match types[10] {
        Type::INT4 => IntColumn::Int4,
        Type::INT8 => IntColumn::Int8,
        _ => return Err(unsupported(10)),
    };
    Ok(Layout { date, time_us })
}

/// The binary COPY header: signature, flags, header extension length.
pub const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The binary COPY trailer: a tuple of -1 fields.
pub const COPY_TRAILER: &[u8] = &[0xff, 0xff];

/// Encodes rows in PostgreSQL's binary COPY format.
#[derive(Default)]
pub struct CopyEncoder {
    /// The last time converted, and its value: rows come in bursts within
    /// one second.
    last_time: Option<(u64, i64)>,
}

impl CopyEncoder {
    fn text(buf: &mut Vec<u8>, text: &[u8]) {
        // db_postgres escapes with PQescapeStringConn, which stops at a NUL.
        let text = memchr::memchr(0, text).map_or(text, |end| &text[..end]);
        buf.extend_from_slice(&(text.len() as i32).to_be_bytes());
        buf.extend_from_slice(text);
    }

    fn date(&mut self, secs: u64, kind: DateColumn) -> i64 {
        match kind {
            DateColumn::Instant => (secs as i64 - sql::POSTGRES_EPOCH_SECS) * 1_000_000,
            DateColumn::Local => match self.last_time {
                Some((s, v)) if s == secs => v,
                _ => {
                    let v = sql::postgres_local_micros(secs as i64);
                    self.last_time = Some((secs, v));
                    v
                }
            },
        }
    }

    /// Appends one row's tuple.
    pub fn push(&mut self, buf: &mut Vec<u8>, row: &Row<'_>, layout: Layout) {
        buf.extend_from_slice(&12i16.to_be_bytes());
        for text in [row.msg, row.callid, row.method, row.status, row.fromip, row.toip] {
            Self::text(buf, text);
        }
        buf.extend_from_slice(&8i32.to_be_bytes());
        buf.extend_from_slice(&self.date(row.time.secs, layout.date).to_be_bytes());
        Self::text(buf, row.direction.as_str().as_bytes());
        Self::text(buf, row.fromtag);
        Self::text(buf, row.traced_user);
        match layout.time_us {
            IntColumn::Int4 => {
                buf.extend_from_slice(&4i32.to_be_bytes());
                buf.extend_from_slice(&(row.time.usecs as i32).to_be_bytes());
            }
            IntColumn::Int8 => {
                buf.extend_from_slice(&8i32.to_be_bytes());
                buf.extend_from_slice(&i64::from(row.time.usecs).to_be_bytes());
            }
        }
        Self::text(buf, row.totag);
    }

    /// The whole COPY data for `rows`.
    pub fn encode(&mut self, buf: &mut Vec<u8>, rows: &[Row<'_>], layout: Layout) {
        buf.clear();
        buf.extend_from_slice(COPY_HEADER);
        for row in rows {
            self.push(buf, row, layout);
        }
        buf.extend_from_slice(COPY_TRAILER);
    }
}

/// An environment variable, when set and not empty.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The name of the process's effective user, libpq's default user.
fn os_user() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    // SAFETY: zeroed passwd is valid output space for getpwuid_r.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is to a live local of the given size.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() || pw.pw_name.is_null() {
        return None;
    }
    // SAFETY: getpwuid_r set pw_name to a NUL-terminated string inside buf.
    let name = unsafe { std::ffi::CStr::from_ptr(pw.pw_name) };
    Some(name.to_string_lossy().into_owned())
}

/// The connection parameters for `settings`, as db_postgres passes the
/// URL's parts to libpq, with libpq's defaults for the missing ones.
pub fn client_config(settings: &StoreSettings) -> postgres::Config {
    let id = &settings.id;
    let mut c = postgres::Config::new();
    let host = id.host.clone().filter(|h| !h.is_empty()).or_else(|| env("PGHOST"));
    match host {
        Some(h) if h.starts_with('/') => c.host_path(h),
        Some(h) => c.host(&h),
        None => c.host_path(DEFAULT_SOCKET_DIR),
    };
    let port = Some(id.port).filter(|&p| p != 0).or_else(|| env("PGPORT")?.parse().ok()).unwrap_or(5432);
    c.port(port);
    let user = id.username.clone().or_else(|| env("PGUSER")).or_else(os_user).unwrap_or_default();
    if let Some(p) = id.password.clone().or_else(|| env("PGPASSWORD")) {
        c.password(p);
    }
    let db = id.database.clone().filter(|d| !d.is_empty()).unwrap_or_else(|| user.clone());
    c.user(&user).dbname(&db);
    c.connect_timeout(CONNECT_TIMEOUT).application_name("siptrace-rs");
    c
}

/// A prepared COPY into one table, and its layout.
#[derive(Clone)]
struct Copy {
    statement: Statement,
    layout: Layout,
}

pub struct PgWriter {
    client: Client,
    columns: Columns,
    table: String,
    /// By table name; "" is the configured table.
    copies: HashMap<Vec<u8>, Copy>,
    encoder: CopyEncoder,
    buf: Vec<u8>,
}

fn db_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => e.to_string(),
    }
}

impl PgWriter {
    /// Connects and checks the table's version and column types. A server
    /// that does not answer (or refuses the login, as db_postgres's
    /// failures to connect are taken) is "not now"; a table missing, of
    /// another version, or with columns the writer cannot fill is a
    /// configuration error.
    pub fn open(settings: &StoreSettings) -> Result<PgWriter, OpenError> {
        let name = settings.url_for_log();
        let mut client = client_config(settings)
            .connect(NoTls)
            .map_err(|e| OpenError::Unreachable(format!("{name}: cannot connect: {e}")))?;
        let failed = |client: &Client, what: &str, e: postgres::Error| {
            let text = format!("{name}: {what}: {}", db_message(&e));
            if client.is_closed() || e.as_db_error().is_none() {
                OpenError::Unreachable(text)
            } else {
                OpenError::Config(text)
            }
        };
        let sql =
            format!("SELECT table_version::bigint FROM {} WHERE table_name = $1", settings.version_table);
        let rows = match client.query(&sql, &[&settings.table]) {
            Ok(rows) => rows,
            Err(e) => return Err(failed(&client, "cannot read the table version", e)),
        };
        let version: Option<i64> = match rows.as_slice() {
            [row] => row.try_get(0).ok(),
            _ => None,
        };
        if version != Some(i64::from(TABLE_VERSION)) {
            return Err(OpenError::Config(format!(
                "{name}: table '{}' is missing or not at version {TABLE_VERSION} (the '{}' table says {}); create \
                 it with the schema in sql/",
                settings.table,
                settings.version_table,
                version.map_or("nothing".to_string(), |v| v.to_string())
            )));
        }
        let mut writer = PgWriter {
            client,
            columns: settings.columns.clone(),
            table: settings.table.clone(),
            copies: HashMap::new(),
            encoder: CopyEncoder::default(),
            buf: Vec::new(),
        };
        if let Err(e) = writer.copy_for(b"") {
            let text = format!("{name}: {}", e.message);
            return Err(if e.lost_connection {
                OpenError::Unreachable(text)
            } else {
                OpenError::Config(text)
            });
        }
        Ok(writer)
    }

    fn error(&self, e: postgres::Error) -> WriteError {
        WriteError {
            message: format!("PostgreSQL: {}", db_message(&e)),
            lost_connection: self.client.is_closed(),
        }
    }

    /// The prepared COPY into `table` ("" for the configured one).
    fn copy_for(&mut self, table: &[u8]) -> Result<Copy, WriteError> {
        if let Some(c) = self.copies.get(table) {
            return Ok(c.clone());
        }
        let name = match std::str::from_utf8(table) {
            Ok(t) if !t.is_empty() => t.to_string(),
            _ => self.table.clone(),
        };
        let columns = column_list(&self.columns);
        let probe = format!("SELECT {columns} FROM {name} LIMIT 0");
        let types: Vec<Type> = match self.client.prepare(&probe) {
            Ok(s) => s.columns().iter().map(|c| c.type_().clone()).collect(),
            Err(e) => return Err(self.error(e)),
        };
        let layout =
            layout(&types, &self.columns).map_err(|e| WriteError::refused(format!("table '{name}': {e}")))?;
        let copy = format!("COPY {name} ({columns}) FROM STDIN (FORMAT binary)");
        let statement = self.client.prepare(&copy).map_err(|e| self.error(e))?;
        let c = Copy { statement, layout };
        self.copies.insert(table.to_vec(), c.clone());
        Ok(c)
    }

    fn copy_run(&mut self, rows: &[Row<'_>]) -> Result<(), WriteError> {
        let copy = self.copy_for(rows[0].table)?;
        let mut buf = std::mem::take(&mut self.buf);
        self.encoder.encode(&mut buf, rows, copy.layout);
        let result = self.send_copy(&copy.statement, &buf);
        // Kept for the next batch: the batches are about the same size.
        buf.clear();
        self.buf = buf;
        result
    }

    fn send_copy(&mut self, statement: &Statement, data: &[u8]) -> Result<(), WriteError> {
        let sent = match self.client.copy_in(statement) {
            Ok(mut w) => match w.write_all(data) {
                Ok(()) => w.finish().map(drop).map_err(|e| db_message(&e)),
                Err(e) => Err(e.to_string()),
            },
            Err(e) => Err(db_message(&e)),
        };
        sent.map_err(|e| WriteError {
            message: format!("PostgreSQL: {e}"),
            lost_connection: self.client.is_closed(),
        })
    }
}

impl Writer for PgWriter {
    fn write_batch(&mut self, rows: &[Row<'_>]) -> Result<(), WriteError> {
        if rows.is_empty() {
            return Ok(());
        }
        // One COPY is atomic by itself; rows for several tables take a
        // transaction.
        let several = rows.chunk_by(|a, b| a.table == b.table).nth(1).is_some();
        if !several {
            return self.copy_run(rows);
        }
        self.client.batch_execute("BEGIN").map_err(|e| self.error(e))?;
        let mut result = Ok(());
        for run in rows.chunk_by(|a, b| a.table == b.table) {
            result = self.copy_run(run);
            if result.is_err() {
                break;
            }
        }
        if result.is_ok() {
            return self.client.batch_execute("COMMIT").map_err(|e| self.error(e));
        }
        if !self.client.is_closed() {
            let _ = self.client.batch_execute("ROLLBACK");
        }
        result
    }

    fn write_row(&mut self, row: &Row<'_>) -> Result<(), WriteError> {
        self.copy_run(std::slice::from_ref(row))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::record::{Direction, Timestamp};
    use crate::core::store::Backend;

    fn row() -> Row<'static> {
        Row {
            table: b"",
            msg: b"M\0after",
            callid: b"c",
            method: b"BYE",
            status: b"",
            fromip: b"f",
            toip: b"t",
            time: Timestamp { secs: 1_800_000_000, usecs: 7 },
            direction: Direction::In,
            fromtag: b"",
            traced_user: b"u",
            totag: b"tt",
        }
    }

    fn schema_types() -> Vec<Type> {
        let mut t =
            vec![Type::TEXT, Type::VARCHAR, Type::VARCHAR, Type::VARCHAR, Type::VARCHAR, Type::VARCHAR];
        t.extend([Type::TIMESTAMP, Type::VARCHAR, Type::VARCHAR, Type::VARCHAR, Type::INT4, Type::VARCHAR]);
        t
    }

    #[test]
    fn the_schema_has_a_layout_and_odd_tables_are_refused() {
        let c = Columns::default();
        let l = layout(&schema_types(), &c).unwrap();
        assert_eq!(l, Layout { date: DateColumn::Local, time_us: IntColumn::Int4 });
        let mut t = schema_types();
        t[6] = Type::TIMESTAMPTZ;
        t[10] = Type::INT8;
        assert_eq!(layout(&t, &c).unwrap(), Layout { date: DateColumn::Instant, time_us: IntColumn::Int8 });
        t[1] = Type::BYTEA;
        let e = layout(&t, &c).unwrap_err();
        assert!(e.contains("column 'callid' has type bytea") && e.contains("db_native=0"), "{e}");
        let mut t = schema_types();
        t[6] = Type::DATE;
        assert!(layout(&t, &c).unwrap_err().contains("'time_stamp'"));
    }

    #[test]
    fn a_row_in_binary_copy_format() {
        let mut enc = CopyEncoder::default();
        let mut buf = Vec::new();
        let layout = Layout { date: DateColumn::Instant, time_us: IntColumn::Int4 };
        enc.encode(&mut buf, &[row()], layout);
        let mut want = COPY_HEADER.to_vec();
        want.extend(12i16.to_be_bytes());
        let mut field = |b: &[u8]| {
            want.extend((b.len() as i32).to_be_bytes());
            want.extend(b);
        };
        // The message is cut at its NUL, as db_postgres's escaping cuts it.
        for t in [&b"M"[..], b"c", b"BYE", b"", b"f", b"t"] {
            field(t);
        }
        field(&((1_800_000_000i64 - 946_684_800) * 1_000_000).to_be_bytes());
        for t in [&b"in"[..], b"", b"u"] {
            field(t);
        }
        field(&7i32.to_be_bytes());
        field(b"tt");
        want.extend(COPY_TRAILER);
        assert_eq!(buf, want);
        // The local layout: the wall-clock time, and time_us as int8.
        let layout = Layout { date: DateColumn::Local, time_us: IntColumn::Int8 };
        enc.encode(&mut buf, &[row()], layout);
        let local = sql::postgres_local_micros(1_800_000_000).to_be_bytes();
        assert!(buf.windows(12).any(|w| w[..4] == 8i32.to_be_bytes() && w[4..] == local));
        assert!(buf.windows(12).any(|w| w[..4] == 8i32.to_be_bytes() && w[4..] == 7i64.to_be_bytes()));
    }

    #[test]
    fn connection_parameters_from_the_url() {
        let s = |url: &str| {
            let s = StoreSettings::native(url, "sip_trace", &Columns::default(), "version").unwrap();
            assert_eq!(s.backend, Backend::Postgres);
            client_config(&s)
        };
        let c = s("postgres://kam:pw@127.0.0.1:5433/trace");
        assert_eq!(c.get_hosts(), [postgres::config::Host::Tcp("127.0.0.1".into())]);
        assert_eq!((c.get_ports(), c.get_user(), c.get_dbname()), (&[5433][..], Some("kam"), Some("trace")));
        assert_eq!(c.get_password(), Some(&b"pw"[..]));
        assert_eq!(c.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
        // No host: libpq's socket directory (or PGHOST); everything after
        // the slash is the database, as Kamailio reads it.
        let c = s("postgres://kam@/run/pg/trace");
        assert_eq!(c.get_dbname(), Some("run/pg/trace"));
        if std::env::var_os("PGHOST").is_none() {
            assert_eq!(c.get_hosts(), [postgres::config::Host::Unix(DEFAULT_SOCKET_DIR.into())]);
        }
    }

    /// Writes through a real server: `SIPTRACE_TEST_PG_URL` names a
    /// database with the schema of sql/postgres.sql. The integration tests
    /// (tests/faults.rs, tests/kamailio_trace.rs) start their own server
    /// and cover this path through Kamailio.
    #[test]
    #[ignore = "needs a PostgreSQL server: set SIPTRACE_TEST_PG_URL to a database with sql/postgres.sql"]
    fn rows_through_a_real_server() {
        use crate::core::store::write_rows;
        let url = std::env::var("SIPTRACE_TEST_PG_URL").expect("SIPTRACE_TEST_PG_URL");
        let settings = StoreSettings::native(&url, "sip_trace", &Columns::default(), "version").unwrap();
        let mut w = PgWriter::open(&settings).unwrap();
        w.client.batch_execute("DELETE FROM sip_trace").unwrap();
        let mut bad = row();
        bad.callid = b"\xff not UTF-8";
        let (stored, error) = write_rows(&mut w, &[row(), bad, row()], Duration::from_secs(2));
        assert_eq!(stored, 2, "{error:?}");
        assert!(error.unwrap().message.contains("UTF8"));
        let r = w
            .client
            .query_one(
                "SELECT msg, time_stamp::text, time_us, direction, count(*) OVER () FROM sip_trace LIMIT 1",
                &[],
            )
            .unwrap();
        assert_eq!(r.get::<_, String>(0), "M");
        assert_eq!(r.get::<_, String>(1), sql::local_time_text(1_800_000_000));
        assert_eq!((r.get::<_, i32>(2), r.get::<_, String>(3), r.get::<_, i64>(4)), (7, "in".into(), 2));
    }
}
