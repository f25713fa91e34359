//! Kamailio statistics read through functions (`STAT_IS_FUNC`), in a group
//! of the module's.

use super::sys;
use crate::ffi::guard::guard;
use std::ffi::CStr;
use std::os::raw::c_char;

/// A group of statistics.
pub trait StatGroup: 'static {
    const GROUP: &'static CStr;
    /// The statistics' names, at most [`MAX_STATS`].
    const NAMES: &'static [&'static CStr];
    /// The value of statistic `index` now.
    fn read(index: usize) -> u64;
}

pub const MAX_STATS: usize = 48;

type Reader = unsafe extern "C" fn() -> sys::counter_val_t;

/// Kamailio reads a statistic through a function without arguments, so
/// each gets its own instance.
unsafe extern "C" fn read<G: StatGroup, const I: usize>() -> sys::counter_val_t {
    guard("statistics", 0, || G::read(I) as sys::counter_val_t)
}

#[rustfmt::skip]
const fn readers<G: StatGroup>() -> [Reader; MAX_STATS] {
    [
        read::<G, 0>, read::<G, 1>, read::<G, 2>, read::<G, 3>, read::<G, 4>, read::<G, 5>, read::<G, 6>, read::<G, 7>,
        read::<G, 8>, read::<G, 9>, read::<G, 10>, read::<G, 11>, read::<G, 12>, read::<G, 13>, read::<G, 14>, read::<G, 15>,
        read::<G, 16>, read::<G, 17>, read::<G, 18>, read::<G, 19>, read::<G, 20>, read::<G, 21>, read::<G, 22>, read::<G, 23>,
        read::<G, 24>, read::<G, 25>, read::<G, 26>, read::<G, 27>, read::<G, 28>, read::<G, 29>, read::<G, 30>, read::<G, 31>,
        read::<G, 32>, read::<G, 33>, read::<G, 34>, read::<G, 35>, read::<G, 36>, read::<G, 37>, read::<G, 38>, read::<G, 39>,
        read::<G, 40>, read::<G, 41>, read::<G, 42>, read::<G, 43>, read::<G, 44>, read::<G, 45>, read::<G, 46>, read::<G, 47>,
    ]
}

/// Registers every statistic of `G`, in mod_init.
pub fn register<G: StatGroup>() -> Result<(), String> {
    register_first::<G>(G::NAMES.len())
}

/// Registers the first `count` statistics of `G`, in mod_init: for a group
/// whose size the config decides.
pub fn register_first<G: StatGroup>(count: usize) -> Result<(), String> {
    const { assert!(G::NAMES.len() <= MAX_STATS) };
    for (name, reader) in G::NAMES.iter().zip(readers::<G>()).take(count) {
        // SAFETY: names are static C strings; for STAT_IS_FUNC Kamailio
        // takes the reader function in place of the stat_var pointer.
        let rc = unsafe {
            sys::register_stat(
                G::GROUP.as_ptr() as *mut c_char,
                name.as_ptr() as *mut c_char,
                reader as *mut *mut sys::stat_var,
                (sys::STAT_IS_FUNC | sys::STAT_NO_RESET) as i32,
            )
        };
        if rc != 0 {
            return Err(format!("cannot register statistic {}", name.to_string_lossy()));
        }
    }
    Ok(())
}
