//! Rows in OpenSIPS's `sip_trace` table (version 5) through OpenSIPS's DB
//! API, written by the sender process, to one or several databases. The
//! columns are those of OpenSIPS's tracer, renamed by its `*_column`
//! parameters; `trace_attrs` takes the script's attributes.

use crate::core::counters::DropReason;
use crate::core::record::Row;
use crate::opensips::host::db::{self, Connection, Driver, Value};

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

/// Binds the driver of each database URL and checks the version of its
/// tables; `columns` are the column names. A database that does not answer
/// now is not an error: the sender counts the rows it cannot store until
/// it does.
pub fn bind(databases: &[(String, Vec<String>)], columns: &[String; 14]) -> Result<(), String> {
    let drivers =
        databases.iter().map(|(url, tables)| bind_one(url, tables, columns)).collect::<Result<_, _>>()?;
    if db::settle(drivers) {
        Ok(())
    } else {
        Err("database bound twice".into())
    }
}

fn bind_one(url: &str, tables: &[String], columns: &[String; 14]) -> Result<Driver, String> {
    let redacted = crate::core::sql::redact_url(url);
    let driver = Driver::bind(url, columns).ok_or_else(|| {
        format!("cannot bind a database module for '{redacted}'; is its driver module loaded?")
    })?;
    match driver.connect() {
        Some(connection) => {
            if let Some(table) = tables.iter().find(|t| !connection.table_version_is(t, TABLE_VERSION)) {
                return Err(format!(
                    "table '{table}' of '{redacted}' is missing or not at version {TABLE_VERSION} \
                     (create it with OpenSIPS's tracer-create.sql)"
                ));
            }
        }
        None => crate::log_warn!(
            "the database '{redacted}' does not answer now; rows are dropped and counted until it does"
        ),
    }
    Ok(driver)
}

/// Stores `row` in `table`; the error says why not.
pub fn insert(connection: &Connection, row: &Row<'_>, table: &str) -> Result<(), (DropReason, String)> {
    let (from, to) = row.ends().ok_or((DropReason::Unparsable, "a row without its addresses".to_string()))?;
    let ips = [from.addr.ip().to_string(), to.addr.ip().to_string()];
    let attrs = match row.traced_user {
        // No attributes: SQL NULL, as OpenSIPS's tracer stores them.
        [] => Value::Null,
        attrs => Value::Str(attrs),
    };
    // In the order of COLUMNS.
    let values = [
        Value::Str(row.msg),
        Value::Str(row.callid),
        Value::Str(row.method),
        Value::Str(row.status),
        Value::Str(from.transport.name().as_bytes()),
        Value::Str(ips[0].as_bytes()),
        Value::Int(from.addr.port().into()),
        Value::Str(to.transport.name().as_bytes()),
        Value::Str(ips[1].as_bytes()),
        Value::Int(to.addr.port().into()),
        Value::DateTime(row.time.secs as i64),
        Value::Str(row.direction.as_str().as_bytes()),
        Value::Str(row.fromtag),
        attrs,
    ];
    connection.insert(table, &values).map_err(|e| (DropReason::DbFailed, e.to_string()))
}
