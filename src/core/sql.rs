//! One INSERT statement for many `sip_trace` rows, for the databases whose
//! literal syntax is known here: SQLite and PostgreSQL. A row a statement
//! cannot carry (a NUL byte) makes the caller store that batch row by row.
//!
//! The values are written exactly as Kamailio's own drivers write them for
//! a single-row insert, so a row reads back the same either way.

use crate::core::record::Row;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The dialect of a Kamailio database URL, when it is one of ours.
    pub fn of_url(url: &str) -> Option<Dialect> {
        let scheme = url.split(':').next().unwrap_or_default();
        match scheme {
            "sqlite" => Some(Dialect::Sqlite),
            "postgres" | "postgresql" | "pgsql" => Some(Dialect::Postgres),
            _ => None,
        }
    }
}

/// The `sip_trace` table version this module writes (Kamailio's siptrace schema).
pub const TABLE_VERSION: u32 = 4;

/// Column names of the `sip_trace` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns {
    pub msg: String,
    pub callid: String,
    pub method: String,
    pub status: String,
    pub fromip: String,
    pub toip: String,
    pub date: String,
    pub direction: String,
    pub fromtag: String,
    pub traced_user: String,
    pub time_us: String,
    pub totag: String,
}

impl Default for Columns {
    fn default() -> Self {
        Columns {
            msg: "msg".into(),
            callid: "callid".into(),
            method: "method".into(),
            status: "status".into(),
            fromip: "fromip".into(),
            toip: "toip".into(),
            date: "time_stamp".into(),
            direction: "direction".into(),
            fromtag: "fromtag".into(),
            traced_user: "traced_user".into(),
            time_us: "time_us".into(),
            totag: "totag".into(),
        }
    }
}

/// A database URL with its password masked, for log lines.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let Some(at) = url.rfind('@').filter(|&at| at > scheme_end) else {
        return url.to_string();
    };
    match url[scheme_end..at].split_once(':') {
        Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end], &url[at..]),
        None => url.to_string(),
    }
}

/// Whether `name` is a plain SQL identifier (letters, digits, '_', and '.'
/// for a schema), which can go into SQL text as it is.
pub fn is_identifier(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.')
        && !name[0].is_ascii_digit()
}

/// The start of the statement: `INSERT INTO table (columns) VALUES `.
pub fn insert_head(table: &str, c: &Columns) -> String {
    format!(
        "INSERT INTO {table} ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}) VALUES ",
        c.msg,
        c.callid,
        c.method,
        c.status,
        c.fromip,
        c.toip,
        c.date,
        c.direction,
        c.fromtag,
        c.traced_user,
        c.time_us,
        c.totag
    )
}

/// Appends one row's `(values)` to `sql`; false, with `sql` unchanged, when
/// the row holds a NUL byte, which no SQL text can carry, or bytes that are
/// not UTF-8, which only a driver's own binding passes through unchanged.
pub fn push_row(sql: &mut Vec<u8>, dialect: Dialect, row: &Row<'_>) -> bool {
    let texts = [
        row.msg,
        row.callid,
        row.method,
        row.status,
        row.fromip,
        row.toip,
        row.fromtag,
        row.traced_user,
        row.totag,
    ];
    if texts.iter().any(|t| memchr::memchr(0, t).is_some() || std::str::from_utf8(t).is_err()) {
        return false;
    }
    let [msg, callid, method, status, fromip, toip, fromtag, traced_user, totag] = texts;
    sql.push(b'(');
    for text in [msg, callid, method, status, fromip, toip] {
        quote(sql, dialect, text);
        sql.extend_from_slice(b", ");
    }
    match dialect {
        // db_sqlite stores a DATETIME as a Julian day number.
        Dialect::Sqlite => {
            sql.extend_from_slice(sqlite_julian_day(row.time.secs as i64).to_string().as_bytes())
        }
        // db_postgres writes the local time, as db_time2str does.
        Dialect::Postgres => {
            sql.push(b'\'');
            sql.extend_from_slice(local_time_text(row.time.secs as i64).as_bytes());
            sql.push(b'\'');
        }
    }
    sql.extend_from_slice(b", '");
    sql.extend_from_slice(row.direction.as_str().as_bytes());
    sql.extend_from_slice(b"', ");
    quote(sql, dialect, fromtag);
    sql.extend_from_slice(b", ");
    quote(sql, dialect, traced_user);
    sql.extend_from_slice(b", ");
    sql.extend_from_slice(row.time.usecs.to_string().as_bytes());
    sql.extend_from_slice(b", ");
    quote(sql, dialect, totag);
    sql.push(b')');
    true
}

/// A string literal, in one pass. SQLite doubles quotes; PostgreSQL gets
/// an E'' string, which reads the same whatever standard_conforming_strings
/// says, and so also doubles backslashes.
fn quote(sql: &mut Vec<u8>, dialect: Dialect, text: &[u8]) {
    let specials: &[u8] = match dialect {
        Dialect::Sqlite => b"'",
        Dialect::Postgres => {
            sql.push(b'E');
            b"'\\"
        }
    };
    sql.push(b'\'');
    let mut rest = text;
    while let Some(i) = rest.iter().position(|c| specials.contains(c)) {
        sql.extend_from_slice(&rest[..=i]);
        sql.push(rest[i]);
        rest = &rest[i + 1..];
    }
    sql.extend_from_slice(rest);
    sql.push(b'\'');
}

/// The value db_sqlite binds for a DATETIME, computed the same way.
pub fn sqlite_julian_day(secs: i64) -> f64 {
    ((secs as f64) - 0.5) / 86400.0 + 2440587.5
}

/// The local wall-clock time at `secs`: year, month (1-12), day, hour,
/// minute, second.
fn local_civil(secs: i64) -> Option<[i64; 6]> {
    let t = secs as libc::time_t;
    // SAFETY: zeroed tm is valid output space; localtime_r fills it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live locals.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return None;
    }
    Some([
        tm.tm_year as i64 + 1900,
        tm.tm_mon as i64 + 1,
        tm.tm_mday as i64,
        tm.tm_hour as i64,
        tm.tm_min as i64,
        tm.tm_sec as i64,
    ])
}

/// `YYYY-MM-DD HH:MM:SS` in the process's local time zone.
pub fn local_time_text(secs: i64) -> String {
    let Some([y, mo, d, h, mi, s]) = local_civil(secs) else {
        return "1970-01-01 00:00:00".into();
    };
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = (if y >= 0 { y } else { y - 399 }) / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds from 1970-01-01 to 2000-01-01, PostgreSQL's epoch.
pub const POSTGRES_EPOCH_SECS: i64 = 946_684_800;

/// What a PostgreSQL `TIMESTAMP WITHOUT TIME ZONE` column holds after
/// db_postgres wrote [`local_time_text`] of `secs` into it: the local
/// wall-clock time, in microseconds from 2000-01-01 00:00:00.
pub fn postgres_local_micros(secs: i64) -> i64 {
    let [y, mo, d, h, mi, s] = local_civil(secs).unwrap_or([1970, 1, 1, 0, 0, 0]);
    let local = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s;
    (local - POSTGRES_EPOCH_SECS) * 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::record::{Direction, Timestamp};

    fn row(msg: &'static [u8]) -> Row<'static> {
        Row {
            table: b"",
            msg,
            callid: b"c'1",
            method: b"INVITE",
            status: b"",
            fromip: b"udp:10.0.0.1:5060",
            toip: b"udp:10.0.0.2:5060",
            time: Timestamp { secs: 1_800_000_000, usecs: 42 },
            direction: Direction::In,
            fromtag: b"t\\1",
            traced_user: b"",
            totag: b"",
        }
    }

    #[test]
    fn dialects_from_urls() {
        assert_eq!(Dialect::of_url("sqlite:////var/lib/t.db"), Some(Dialect::Sqlite));
        assert_eq!(Dialect::of_url("postgres://u:p@h/db"), Some(Dialect::Postgres));
        assert_eq!(Dialect::of_url("mysql://u:p@h/db"), None);
    }

    #[test]
    fn sqlite_statement() {
        let mut sql = insert_head("sip_trace", &Columns::default()).into_bytes();
        assert!(push_row(&mut sql, Dialect::Sqlite, &row(b"MSG 'x'")));
        let sql = String::from_utf8(sql).unwrap();
        assert!(sql.starts_with(
            "INSERT INTO sip_trace (msg, callid, method, status, fromip, toip, time_stamp, direction, fromtag, \
             traced_user, time_us, totag) VALUES ("
        ));
        assert!(
            sql.contains("('MSG ''x''', 'c''1', 'INVITE', '', 'udp:10.0.0.1:5060', 'udp:10.0.0.2:5060', ")
        );
        assert!(sql.ends_with(", 'in', 't\\1', '', 42, '')"), "{sql}");
        // The exact double db_sqlite would bind, printed so that it reads back the same.
        let jd = sqlite_julian_day(1_800_000_000);
        assert!(sql.contains(&format!(", {jd}, ")));
        assert_eq!(jd.to_string().parse::<f64>().unwrap().to_bits(), jd.to_bits());
    }

    #[test]
    fn postgres_statement() {
        let mut sql = Vec::new();
        assert!(push_row(&mut sql, Dialect::Postgres, &row(b"a\\b'c")));
        let sql = String::from_utf8(sql).unwrap();
        assert!(sql.starts_with("(E'a\\\\b''c', E'c''1', "), "{sql}");
        assert!(
            sql.contains(&format!(", '{}', 'in', E't\\\\1', E'', 42, E'')", local_time_text(1_800_000_000)))
        );
    }

    #[test]
    fn nul_bytes_and_other_encodings_are_left_to_the_driver() {
        let mut sql = b"X".to_vec();
        assert!(!push_row(&mut sql, Dialect::Sqlite, &row(b"a\0b")));
        assert!(!push_row(&mut sql, Dialect::Postgres, &row(b"caf\xe9")));
        assert_eq!(sql, b"X");
    }

    #[test]
    fn postgres_micros_are_the_local_text() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 1, 1) * 86_400, POSTGRES_EPOCH_SECS);
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
        for secs in [0, 946_684_800, 1_800_000_000, 1_709_164_799] {
            let text = local_time_text(secs);
            let n = |r: std::ops::Range<usize>| text[r].parse::<i64>().unwrap();
            let days = days_from_civil(n(0..4), n(5..7), n(8..10));
            let local = days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19);
            assert_eq!(postgres_local_micros(secs), (local - POSTGRES_EPOCH_SECS) * 1_000_000, "{text}");
        }
    }

    #[test]
    fn local_time_follows_tz() {
        // The test process's zone may be anything; the format is fixed.
        let text = local_time_text(0);
        assert_eq!(text.len(), 19);
        assert_eq!(&text[4..5], "-");
    }

    #[test]
    fn passwords_are_masked_in_urls() {
        assert_eq!(
            redact_url("mysql://kamailio:kamailiorw@localhost/kamailio"),
            "mysql://kamailio:***@localhost/kamailio"
        );
        assert_eq!(redact_url("postgres://u:p@ss@db:5432/k"), "postgres://u:***@db:5432/k");
        assert_eq!(redact_url("sqlite:///var/lib/trace.db"), "sqlite:///var/lib/trace.db");
        assert_eq!(redact_url("mysql://user@host/db"), "mysql://user@host/db");
    }
}
