//! Rows written natively by the sending process, at the database's own
//! cost: SQLite through prepared statements in one transaction per batch
//! (`sqlite`), PostgreSQL through one binary `COPY` per batch
//! (`postgres`). Kamailio's DB API stays the path for every other driver,
//! and for these two when the binding is told so (`db_native=0`).
//!
//! The URL is read as Kamailio reads `db_url` (`url`); the rows, the table,
//! the columns and the `version` check are the C module's. What is shared
//! by both writers is here: the batch, then row by row within a time
//! budget when the batch was refused ([`write_rows`]), and the connection
//! opened on first use and again at most every [`RETRY`] after a failure
//! ([`NativeStore`]).
//!
//! Nothing here knows the host: the binding takes the cross-process lock
//! SQLite writers share, logs the [`Event`]s, and counts what is dropped.

pub mod postgres;
pub mod sqlite;
pub mod url;

use crate::core::counters::DropReason;
use crate::core::record::Row;
use crate::core::sql::{redact_url, Columns};
use std::time::{Duration, Instant};
pub use url::{Backend, DbId};

/// How long a batch the database refused may take to be retried row by
/// row; past it, the rest of the batch is given up.
pub const ROW_BY_ROW_BUDGET: Duration = Duration::from_secs(2);

/// How often a writer without a connection tries again.
pub const RETRY: Duration = Duration::from_secs(5);

/// Where rows go and how they are laid out: the module's parameters.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// `db_url` as written, for messages (its password masked there).
    pub url: String,
    pub id: DbId,
    pub backend: Backend,
    /// The configured table; a row may name another (trace_table_avp).
    pub table: String,
    pub columns: Columns,
    /// The table that holds each table's version (Kamailio's core
    /// parameter `version_table`, "version" by default).
    pub version_table: String,
}

impl StoreSettings {
    /// Settings for `url` when a native writer serves it; None for the
    /// URLs that go through the DB API (other schemes, or ones Kamailio
    /// would not parse either, which then fail there as they always did).
    pub fn native(url: &str, table: &str, columns: &Columns, version_table: &str) -> Option<StoreSettings> {
        let id = url::parse(url)?;
        let backend = id.backend()?;
        Some(StoreSettings {
            url: url.to_string(),
            id,
            backend,
            table: table.to_string(),
            columns: columns.clone(),
            version_table: version_table.to_string(),
        })
    }

    /// `db_url 'sqlite:///…'`, password masked: how messages name it.
    pub fn url_for_log(&self) -> String {
        format!("db_url '{}'", redact_url(&self.url))
    }
}

/// Why a writer could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// The database does not answer now (a server that is down): the
    /// writer tries again later, and Kamailio starts.
    Unreachable(String),
    /// The configuration is wrong (an SQLite file that cannot be opened or
    /// is not a database, a table missing or of another version, a column
    /// of a type the writer cannot fill): Kamailio does not start.
    Config(String),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Unreachable(e) | OpenError::Config(e) => f.write_str(e),
        }
    }
}

/// A write the database refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteError {
    pub message: String,
    /// The connection is gone: nothing more can be written on it, and the
    /// rows are counted as `db_unavailable`.
    pub lost_connection: bool,
}

impl WriteError {
    pub fn refused(message: impl Into<String>) -> WriteError {
        WriteError { message: message.into(), lost_connection: false }
    }
}

/// One open connection of a native writer.
pub trait Writer {
    /// Stores every row, or none of them.
    fn write_batch(&mut self, rows: &[Row<'_>]) -> Result<(), WriteError>;
    /// Stores one row on its own.
    fn write_row(&mut self, row: &Row<'_>) -> Result<(), WriteError>;
}

/// Stores `rows` in one batch; when the database refuses it, a row at a
/// time, so that only the rows at fault are lost. A database that refuses
/// everything (a locked file makes each insert wait) gets `budget` of
/// that, and the rest of the batch is given up. Returns how many rows were
/// stored and, when not all, the first error.
pub fn write_rows(w: &mut dyn Writer, rows: &[Row<'_>], budget: Duration) -> (usize, Option<WriteError>) {
    let first = match w.write_batch(rows) {
        Ok(()) => return (rows.len(), None),
        Err(e) if e.lost_connection => return (0, Some(e)),
        Err(e) => e,
    };
    if rows.len() == 1 {
        return (0, Some(first));
    }
    let started = Instant::now();
    let mut stored = 0;
    let mut error: Option<WriteError> = None;
    for (i, row) in rows.iter().enumerate() {
        if started.elapsed() > budget {
            let left = rows.len() - i;
            let why = format!("{left} rows given up after {budget:?} of failing inserts");
            let mut e = error.unwrap_or_else(|| first.clone());
            e.message = format!("{}; {why}", e.message);
            return (stored, Some(e));
        }
        match w.write_row(row) {
            Ok(()) => stored += 1,
            Err(e) if e.lost_connection => return (stored, Some(e)),
            Err(e) => {
                error.get_or_insert(e);
            }
        }
    }
    (stored, error)
}

/// Checks at startup, in the main process, that rows can go where
/// `settings` say, and closes what it opened (nothing open may cross the
/// host's fork). `Ok(Some(warning))` when the database does not answer now
/// but may later; `Err` when the configuration is wrong.
pub fn check_at_startup(settings: &StoreSettings) -> Result<Option<String>, String> {
    match open(settings) {
        Ok(writer) => {
            drop(writer);
            Ok(None)
        }
        Err(OpenError::Unreachable(e)) => Ok(Some(e)),
        Err(OpenError::Config(e)) => Err(e),
    }
}

/// Opens the writer `settings` name and checks the table's version.
pub fn open(settings: &StoreSettings) -> Result<Box<dyn Writer>, OpenError> {
    Ok(match settings.backend {
        Backend::Sqlite => Box::new(sqlite::SqliteWriter::open(settings)?),
        Backend::Postgres => Box::new(postgres::PgWriter::open(settings)?),
    })
}

/// What happened to the connection during a call to [`NativeStore::store`],
/// for the host's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Connected,
    /// Not connected; the writer tries again after [`RETRY`].
    ConnectFailed(String),
    /// The connection was lost; the writer opens a new one next time.
    Lost(String),
}

/// What [`NativeStore::store`] did.
#[derive(Debug)]
pub struct Stored {
    pub stored: usize,
    /// Why not all rows were stored, and how to count them.
    pub error: Option<(DropReason, String)>,
    pub event: Option<Event>,
}

/// The native writer of one sending process: connected on first use, and
/// again after a failure at most once per [`RETRY`].
pub struct NativeStore {
    settings: StoreSettings,
    writer: Option<Box<dyn Writer>>,
    next_attempt: Instant,
    budget: Duration,
}

impl NativeStore {
    pub fn new(settings: StoreSettings) -> NativeStore {
        NativeStore { settings, writer: None, next_attempt: Instant::now(), budget: ROW_BY_ROW_BUDGET }
    }

    pub fn settings(&self) -> &StoreSettings {
        &self.settings
    }

    /// Stores `rows`: one batch, or row by row when the batch is refused.
    pub fn store(&mut self, rows: &[Row<'_>]) -> Stored {
        let mut event = None;
        if self.writer.is_none() {
            let now = Instant::now();
            if now < self.next_attempt {
                let error = Some((DropReason::DbUnavailable, "no database connection".to_string()));
                return Stored { stored: 0, error, event };
            }
            self.next_attempt = now + RETRY;
            match open(&self.settings) {
                Ok(w) => {
                    self.writer = Some(w);
                    event = Some(Event::Connected);
                }
                Err(e) => {
                    let error = Some((DropReason::DbUnavailable, e.to_string()));
                    return Stored { stored: 0, error, event: Some(Event::ConnectFailed(e.to_string())) };
                }
            }
        }
        let Some(writer) = self.writer.as_mut() else {
            return Stored {
                stored: 0,
                error: Some((DropReason::DbUnavailable, "no connection".into())),
                event,
            };
        };
        let (stored, error) = write_rows(writer.as_mut(), rows, self.budget);
        let error = error.map(|e| {
            if e.lost_connection {
                // Open a new one next time; this one cannot recover.
                self.writer = None;
                event = Some(Event::Lost(e.message.clone()));
                (DropReason::DbUnavailable, e.message)
            } else {
                (DropReason::DbFailed, e.message)
            }
        });
        Stored { stored, error, event }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::record::{Direction, Timestamp};

    pub(crate) fn row(callid: &'static [u8]) -> Row<'static> {
        Row {
            table: b"",
            msg: b"INVITE sip:b@c SIP/2.0\r\n\r\n",
            callid,
            method: b"INVITE",
            status: b"",
            fromip: b"udp:10.0.0.1:5060",
            toip: b"udp:10.0.0.2:5060",
            time: Timestamp { secs: 1_800_000_000, usecs: 42 },
            direction: Direction::In,
            fromtag: b"ft",
            traced_user: b"",
            totag: b"",
        }
    }

    /// Refuses rows whose Call-ID is "bad", and everything while `locked`.
    #[derive(Default)]
    struct Fake {
        stored: Vec<Vec<u8>>,
        locked: bool,
        gone: bool,
        row_delay: Duration,
    }

    impl Writer for Fake {
        fn write_batch(&mut self, rows: &[Row<'_>]) -> Result<(), WriteError> {
            if self.gone {
                return Err(WriteError { message: "closed".into(), lost_connection: true });
            }
            if self.locked || rows.iter().any(|r| r.callid == b"bad") {
                return Err(WriteError::refused("refused"));
            }
            self.stored.extend(rows.iter().map(|r| r.callid.to_vec()));
            Ok(())
        }

        fn write_row(&mut self, row: &Row<'_>) -> Result<(), WriteError> {
            std::thread::sleep(self.row_delay);
            self.write_batch(std::slice::from_ref(row))
        }
    }

    #[test]
    fn a_batch_goes_in_whole() {
        let mut w = Fake::default();
        assert_eq!(write_rows(&mut w, &[row(b"a"), row(b"b")], ROW_BY_ROW_BUDGET), (2, None));
        assert_eq!(w.stored, [b"a".to_vec(), b"b".to_vec()]);
    }

    #[test]
    fn only_the_rows_at_fault_are_lost() {
        let mut w = Fake::default();
        let (stored, error) = write_rows(&mut w, &[row(b"a"), row(b"bad"), row(b"c")], ROW_BY_ROW_BUDGET);
        assert_eq!((stored, error.unwrap().lost_connection), (2, false));
        assert_eq!(w.stored, [b"a".to_vec(), b"c".to_vec()]);
    }

    #[test]
    fn a_database_that_refuses_everything_gets_a_budget() {
        let mut w = Fake { locked: true, row_delay: Duration::from_millis(30), ..Default::default() };
        let rows = vec![row(b"a"); 100];
        let started = Instant::now();
        let (stored, error) = write_rows(&mut w, &rows, Duration::from_millis(100));
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(stored, 0);
        let message = error.unwrap().message;
        assert!(
            message.starts_with("refused; ") && message.contains("rows given up after 100ms"),
            "{message}"
        );
    }

    #[test]
    fn a_lost_connection_is_not_tried_row_by_row() {
        let mut w = Fake { gone: true, ..Default::default() };
        let (stored, error) = write_rows(&mut w, &[row(b"a"), row(b"b")], ROW_BY_ROW_BUDGET);
        assert_eq!((stored, error.unwrap().lost_connection), (0, true));
    }

    #[test]
    fn urls_for_the_db_api_get_no_native_writer() {
        let c = Columns::default();
        assert!(StoreSettings::native("mysql://u:p@h/k", "sip_trace", &c, "version").is_none());
        assert!(StoreSettings::native("sqlite:/x.db", "sip_trace", &c, "version").is_none());
        let s = StoreSettings::native("postgres://u:secret@h/k", "sip_trace", &c, "version").unwrap();
        assert_eq!(s.backend, Backend::Postgres);
        assert_eq!(s.url_for_log(), "db_url 'postgres://u:***@h/k'");
    }

    #[test]
    fn a_store_without_its_database_retries_later() {
        let dir = std::env::temp_dir().join(format!("siptrace-store-{}", std::process::id()));
        let url = format!("sqlite:///{}/no-such-dir/t.db", dir.display());
        let settings = StoreSettings::native(&url, "sip_trace", &Columns::default(), "version").unwrap();
        let mut store = NativeStore::new(settings);
        let first = store.store(&[row(b"a")]);
        assert!(matches!(first.event, Some(Event::ConnectFailed(_))), "{first:?}");
        assert_eq!(first.error.as_ref().unwrap().0, DropReason::DbUnavailable);
        // Within RETRY: no second attempt, no second log line.
        let second = store.store(&[row(b"a")]);
        assert_eq!(second.event, None);
        assert_eq!(second.error.unwrap().0, DropReason::DbUnavailable);
    }
}
