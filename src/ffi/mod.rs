//! The FFI toolbox both host bindings share: the one panic guard, the
//! export wrapper, the holder of host API tables, the host-string reader,
//! the lock helper and the log macros. Nothing here knows a host's types;
//! each binding's host layer applies these to its own `sys` structs.

// The guard logs through the host's log, which exists only in a binding.
#[cfg(all(any(feature = "kamailio", feature = "opensips"), not(test)))]
pub mod guard;
pub mod log;

use std::sync::{Mutex, MutexGuard, OnceLock};

/// A table or string the host reads through dlsym (module exports,
/// command and parameter arrays, version strings).
///
/// `Sync` is sound because `T: Copy`: a `Copy` type holds no `UnsafeCell`,
/// so nothing reachable through `&Export<T>` can change it. What such a
/// table is *not* is `Sync` by itself, because it holds raw pointers; they
/// point at other static tables, static strings and functions, which the
/// host only reads.
#[repr(transparent)]
pub struct Export<T: Copy>(pub T);

// SAFETY: see the type's comment: `T: Copy` rules out interior
// mutability, and the pointers inside lead only to immutable statics.
unsafe impl<T: Copy> Sync for Export<T> {}

/// A host value settled once in mod_init, before the host forks, and only
/// read afterwards: API tables the host fills (`tm_binds`, `dlg_binds`,
/// ...), parsed specs, pointers to host-owned objects that live until the
/// server exits.
pub struct Settled<T: Copy>(OnceLock<HostValue<T>>);

struct HostValue<T>(T);

// SAFETY: a `HostValue` is written once, through `OnceLock`, before any
// other thread or process can see it, and is only read afterwards. `T:
// Copy` rules out interior mutability; the pointers it holds lead to
// host-owned data that the host itself reads from every process (its API
// functions and objects live until the server exits).
unsafe impl<T: Copy> Sync for HostValue<T> {}
// SAFETY: as above; moving the value moves only plain data and pointers.
unsafe impl<T: Copy> Send for HostValue<T> {}

impl<T: Copy> Settled<T> {
    pub const fn new() -> Self {
        Settled(OnceLock::new())
    }

    /// Settles the value. A second call keeps the first value and returns
    /// false.
    pub fn set(&self, value: T) -> bool {
        self.0.set(HostValue(value)).is_ok()
    }

    pub fn get(&self) -> Option<&T> {
        self.0.get().map(|v| &v.0)
    }
}

impl<T: Copy> Default for Settled<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// The bytes of a host string (`str { char *s; int len; }` on both hosts):
/// `None` when the pointer is null or the length is not positive, as both
/// hosts leave a string with no value.
///
/// # Safety
/// When `ptr` is not null and `len` is positive, `ptr` must point at `len`
/// readable bytes that stay valid and unchanged for `'a`.
pub unsafe fn host_bytes<'a>(ptr: *const std::os::raw::c_char, len: impl TryInto<usize>) -> Option<&'a [u8]> {
    let len: usize = len.try_into().ok().filter(|&n| n > 0)?;
    if ptr.is_null() {
        return None;
    }
    // SAFETY: per the contract, for a non-null pointer and a positive length.
    Some(unsafe { std::slice::from_raw_parts(ptr as *const u8, len) })
}

/// Locks a mutex of per-process state, even if a panic poisoned it: every
/// such state here is left consistent by each single write, and a
/// recovered panic must not stop tracing for the life of the process.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_bytes_reads_only_what_has_a_value() {
        let text = b"abc";
        let p = text.as_ptr() as *const std::os::raw::c_char;
        // SAFETY: `text` outlives the reads.
        unsafe {
            assert_eq!(host_bytes(p, 3i32), Some(&text[..]));
            assert_eq!(host_bytes(p, 2usize), Some(&text[..2]));
            assert_eq!(host_bytes(p, 0i32), None);
            assert_eq!(host_bytes(p, -1i32), None);
            assert_eq!(host_bytes(std::ptr::null(), 3i32), None);
        }
    }

    #[test]
    fn settled_keeps_the_first_value() {
        static V: Settled<u32> = Settled::new();
        assert_eq!(V.get(), None);
        assert!(V.set(1));
        assert!(!V.set(2));
        assert_eq!(V.get(), Some(&1));
    }

    #[test]
    fn lock_survives_a_poisoned_mutex() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = m2.lock().unwrap();
            panic!("poison");
        })
        .join();
        assert!(m.is_poisoned());
        *lock(&m) += 1;
        assert_eq!(*lock(&m), 2);
    }
}
