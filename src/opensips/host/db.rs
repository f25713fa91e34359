//! OpenSIPS's DB API: a driver bound to a database URL in mod_init, and
//! the connections the sending processes open with it to insert rows.

use super::sys;
use crate::ffi::Settled;
use std::ffi::CString;
use std::os::raw::c_int;
use std::ptr::NonNull;

/// A driver bound to a URL, with the column names rows go to; its strings
/// live as long as the process.
#[derive(Clone, Copy)]
pub struct Driver {
    funcs: sys::db_func_t,
    url: sys::str_,
    columns: &'static [sys::str_],
}

/// The drivers mod_init bound, for the sending processes.
static DRIVERS: Settled<&'static [Driver]> = Settled::new();

fn leak(s: &str) -> sys::str_ {
    let len = s.len() as c_int;
    sys::str_ { s: CString::new(s).unwrap_or_default().into_raw(), len }
}

/// A value of a row.
#[derive(Clone, Copy)]
pub enum Value<'a> {
    Str(&'a [u8]),
    Int(i32),
    /// Seconds since the epoch.
    DateTime(i64),
    /// SQL NULL.
    Null,
}

impl Value<'_> {
    fn to_db(self) -> sys::db_val_t {
        let mut v = sys::db_val_t::default();
        match self {
            Value::Str(bytes) => {
                v.type_ = sys::db_type_t_DB_STR;
                v.val.str_val = super::str_of(bytes);
            }
            Value::Int(n) => {
                v.type_ = sys::db_type_t_DB_INT;
                v.val.int_val = n;
            }
            Value::DateTime(secs) => {
                v.type_ = sys::db_type_t_DB_DATETIME;
                v.val.time_val = secs as sys::time_t;
            }
            Value::Null => {
                v.type_ = sys::db_type_t_DB_STR;
                v.nul = 1;
            }
        }
        v
    }
}

impl Driver {
    /// The driver module that takes `url`, for rows with `columns`; `None`
    /// when none does (or it cannot insert).
    pub fn bind(url: &str, columns: &[String]) -> Option<Driver> {
        let url = leak(url);
        let mut funcs = sys::db_func_t::default();
        // SAFETY: a valid str; the driver fills `funcs`.
        if unsafe { sys::db_bind_mod(&url, &mut funcs) } < 0 || funcs.insert.is_none() || funcs.init.is_none()
        {
            return None;
        }
        let columns = Box::leak(columns.iter().map(|c| leak(c)).collect::<Box<[_]>>());
        Some(Driver { funcs, url, columns })
    }

    /// A connection to the database; `None` when it does not answer.
    pub fn connect(&self) -> Option<Connection> {
        // SAFETY: the driver's init with its URL, which lives forever.
        let con = unsafe { (self.funcs.init?)(&self.url) };
        NonNull::new(con).map(|con| Connection { con, driver: *self })
    }
}

/// Keeps the drivers for the sending processes. From mod_init.
pub fn settle(drivers: Vec<Driver>) -> bool {
    DRIVERS.set(Box::leak(drivers.into_boxed_slice()))
}

/// A connection, closed on drop.
pub struct Connection {
    con: NonNull<sys::db_con_t>,
    driver: Driver,
}

impl Connection {
    /// A connection through driver `index` of those settled.
    pub fn open(index: usize) -> Option<Connection> {
        DRIVERS.get()?.get(index)?.connect()
    }

    /// Whether `table` exists at `version` (OpenSIPS's `version` table).
    pub fn table_version_is(&self, table: &str, version: u32) -> bool {
        let Ok(name) = CString::new(table) else { return false };
        let table = sys::str_ { s: name.as_ptr() as *mut _, len: name.as_bytes().len() as c_int };
        let mut funcs = self.driver.funcs;
        // SAFETY: an open connection and valid strings.
        unsafe { sys::db_check_table_version(&mut funcs, self.con.as_ptr(), &table, version) >= 0 }
    }

    /// Inserts one row into `table`, a value per column the driver was
    /// bound with; the error says why not.
    pub fn insert<const N: usize>(&self, table: &str, values: &[Value<'_>; N]) -> Result<(), &'static str> {
        let (Some(use_table), Some(insert)) = (self.driver.funcs.use_table, self.driver.funcs.insert) else {
            return Err("the driver cannot insert");
        };
        if self.driver.columns.len() != N {
            return Err("a row does not match the columns");
        }
        let keys: [sys::db_key_t; N] =
            std::array::from_fn(|i| &self.driver.columns[i] as *const sys::str_ as sys::db_key_t);
        let vals: [sys::db_val_t; N] = std::array::from_fn(|i| values[i].to_db());
        let table = super::str_of(table.as_bytes());
        // SAFETY: an open connection; the keys, values and the bytes they
        // point at outlive the calls, and the driver only reads them.
        let ok = unsafe { use_table(self.con.as_ptr(), &table) } == 0
            && unsafe { insert(self.con.as_ptr(), keys.as_ptr(), vals.as_ptr(), N as c_int) } == 0;
        if ok {
            Ok(())
        } else {
            Err("the database refused a row")
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(close) = self.driver.funcs.close {
            // SAFETY: a connection `connect` opened, closed once.
            unsafe { close(self.con.as_ptr()) };
        }
    }
}
