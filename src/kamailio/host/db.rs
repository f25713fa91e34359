//! Kamailio's generic DB API (srdb1): the driver module a URL names
//! (db_sqlite, db_postgres, db_mysql, ...), its connections, inserts, SQL
//! statements and transactions.

use super::sys;
use smallvec::SmallVec;
use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int};
use std::ptr::NonNull;

/// A bound driver, for the URL it was bound with.
#[derive(Clone, Copy)]
pub struct Db {
    funcs: sys::db_func_t,
    /// Leaked: the driver may keep pointers into it.
    url: &'static CStr,
}

/// A value of a row, in the driver's types.
#[derive(Clone, Copy)]
pub enum DbValue<'a> {
    Str(&'a [u8]),
    /// Seconds since the epoch.
    DateTime(i64),
    Static(&'static CStr),
    Int(i32),
}

/// Why rows were not inserted.
#[derive(Debug, PartialEq, Eq)]
pub enum InsertError {
    /// The driver has no insert.
    Unsupported,
    /// The database refused a row.
    Refused,
}

fn str_of(bytes: &[u8]) -> sys::str_ {
    sys::str_ { s: bytes.as_ptr() as *mut c_char, len: bytes.len() as c_int }
}

impl Db {
    /// Kamailio's default URL, for a config without `db_url`.
    pub fn default_url() -> String {
        String::from_utf8_lossy(&sys::DEFAULT_DB_URL[..sys::DEFAULT_DB_URL.len() - 1]).into_owned()
    }

    /// Kamailio's `version_table` core parameter: the table that holds
    /// each table's version ("version" unless the config says otherwise).
    pub fn version_table() -> String {
        // SAFETY: a core global, set while the config is parsed and only
        // read afterwards; its text lives as long as the process.
        let (s, len) = unsafe { (sys::version_table.s, sys::version_table.len) };
        if s.is_null() || len <= 0 {
            return "version".into();
        }
        // SAFETY: `len` bytes at `s`, as above.
        let bytes = unsafe { std::slice::from_raw_parts(s as *const u8, len as usize) };
        String::from_utf8_lossy(bytes).into_owned()
    }

    /// Binds the loaded driver module that serves `url`.
    pub fn bind(url: &str) -> Option<Db> {
        let url: &'static CStr = Box::leak(CString::new(url).unwrap_or_default().into_boxed_c_str());
        let mut funcs = sys::db_func_t::default();
        // SAFETY: a valid str for the life of the process; `funcs` is
        // written by the callee.
        (unsafe { sys::db_bind_mod(&str_of(url.to_bytes()), &mut funcs) } == 0).then_some(Db { funcs, url })
    }

    /// Whether the driver can connect and insert rows.
    pub fn can_insert(&self) -> bool {
        let insert = sys::db_cap_DB_CAP_INSERT;
        self.funcs.cap & insert == insert
            && self.funcs.insert.is_some()
            && self.funcs.use_table.is_some()
            && self.funcs.init.is_some()
    }

    /// Whether the driver runs SQL statements given as text.
    pub fn runs_sql(&self) -> bool {
        self.funcs.raw_query.is_some() && self.funcs.free_result.is_some()
    }

    /// A connection of this process's own.
    pub fn connect(&self) -> Option<DbCon> {
        let init = self.funcs.init?;
        // SAFETY: the url is a valid str for the life of the process.
        let con = NonNull::new(unsafe { init(&str_of(self.url.to_bytes())) })?;
        Some(DbCon { funcs: self.funcs, con })
    }
}

/// An open connection, closed when dropped.
pub struct DbCon {
    funcs: sys::db_func_t,
    con: NonNull<sys::db1_con_t>,
}

impl DbCon {
    /// Whether the driver can tell and says `table` is not at `version`.
    pub fn table_version_refused(&self, table: &CStr, version: u32) -> bool {
        if self.funcs.cap & sys::db_cap_DB_CAP_QUERY == 0 {
            return false;
        }
        let mut funcs = self.funcs;
        // SAFETY: the driver's functions, an open connection and a valid
        // table name.
        unsafe {
            sys::db_check_table_version(&mut funcs, self.con.as_ptr(), &str_of(table.to_bytes()), version) < 0
        }
    }

    /// Runs one SQL statement whose result is not needed. Fails when the
    /// driver cannot run SQL text or the database refuses it.
    pub fn run_sql(&self, sql: &[u8]) -> bool {
        let (Some(raw_query), Some(free_result)) = (self.funcs.raw_query, self.funcs.free_result) else {
            return false;
        };
        let mut result: *mut sys::db1_res_t = std::ptr::null_mut();
        // SAFETY: an open connection and valid query text; a result is freed once.
        let rc = unsafe { raw_query(self.con.as_ptr(), &str_of(sql), &mut result) };
        if !result.is_null() {
            // SAFETY: a result the driver allocated for this connection.
            unsafe { free_result(self.con.as_ptr(), result) };
        }
        rc >= 0
    }

    /// Inserts `rows` into `table`, each holding a value per key, through
    /// the driver, one row per call. Stops at the first row refused.
    pub fn insert_rows<'v, R: AsRef<[DbValue<'v>]>>(
        &self,
        table: &[u8],
        keys: &[&CStr],
        rows: impl IntoIterator<Item = R>,
    ) -> Result<usize, InsertError> {
        let (Some(use_table), Some(insert)) = (self.funcs.use_table, self.funcs.insert) else {
            return Err(InsertError::Unsupported);
        };
        let names: SmallVec<[sys::str_; 16]> = keys.iter().map(|k| str_of(k.to_bytes())).collect();
        let keys: SmallVec<[sys::db_key_t; 16]> =
            names.iter().map(|n| n as *const _ as sys::db_key_t).collect();
        let table = str_of(table);
        // SAFETY: an open connection; the driver keeps the table name's
        // pointer, which is set again before each use.
        unsafe { use_table(self.con.as_ptr(), &table) };
        let mut count = 0;
        for row in rows {
            let row = row.as_ref();
            debug_assert_eq!(row.len(), keys.len());
            let values: SmallVec<[sys::db_val_t; 16]> = row.iter().map(|v| value(*v)).collect();
            // SAFETY: keys, values and the strings they point at outlive the
            // call, and the driver only reads them.
            if unsafe { insert(self.con.as_ptr(), keys.as_ptr(), values.as_ptr(), keys.len() as c_int) } < 0 {
                return Err(InsertError::Refused);
            }
            count += 1;
        }
        Ok(count)
    }

    /// Opens a transaction; `None` when the driver has none.
    pub fn start_transaction(&self) -> Option<bool> {
        let start = self.funcs.start_transaction?;
        self.funcs.end_transaction?;
        // SAFETY: an open connection; no table lock asked for.
        Some(unsafe { start(self.con.as_ptr(), sys::db_locking_t_DB_LOCKING_NONE) } >= 0)
    }

    pub fn end_transaction(&self) -> bool {
        // SAFETY: the transaction start_transaction opened on this connection.
        self.funcs.end_transaction.is_some_and(|end| unsafe { end(self.con.as_ptr()) } >= 0)
    }

    pub fn abort_transaction(&self) {
        if let Some(abort) = self.funcs.abort_transaction {
            // SAFETY: as above.
            unsafe { abort(self.con.as_ptr()) };
        }
    }
}

impl Drop for DbCon {
    fn drop(&mut self) {
        if let Some(close) = self.funcs.close {
            // SAFETY: the connection was opened by this driver and is closed once.
            unsafe { close(self.con.as_ptr()) };
        }
    }
}

fn value(v: DbValue<'_>) -> sys::db_val_t {
    let mut out = sys::db_val_t { nul: 0, free: 0, ..Default::default() };
    match v {
        DbValue::Str(b) => {
            out.type_ = sys::db_type_t_DB1_STR;
            out.val.str_val = str_of(b);
        }
        DbValue::DateTime(secs) => {
            out.type_ = sys::db_type_t_DB1_DATETIME;
            out.val.time_val = secs as sys::time_t;
        }
        DbValue::Static(s) => {
            out.type_ = sys::db_type_t_DB1_STRING;
            out.val.string_val = s.as_ptr();
        }
        DbValue::Int(n) => {
            out.type_ = sys::db_type_t_DB1_INT;
            out.val.int_val = n;
        }
    }
    out
}
