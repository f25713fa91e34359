//! Kamailio's shared memory: blocks every process reaches at the same
//! address, because they are allocated before Kamailio forks or from the
//! pool all processes map.

use super::sys;
use crate::core::ring::Ring;
use crate::core::session::table::SessionTable;
use crate::core::shared::Shared;
use crate::ffi::guard::guard;
use std::ffi::c_void;
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

/// Kamailio's shm blocks are aligned for any scalar type, 8 bytes at least.
const SHM_ALIGN: usize = 8;

fn alloc(size: usize) -> Option<NonNull<u8>> {
    // SAFETY: plain allocation from Kamailio's shared memory pool.
    NonNull::new(unsafe { sys::siptrace_shim_shm_malloc(size) } as *mut u8)
}

/// The state all processes share, allocated once in mod_init, before
/// Kamailio forks, and kept until the server exits.
pub fn new_shared_state(trace_on: bool) -> Result<&'static Shared, String> {
    const { assert!(std::mem::align_of::<Shared>() <= SHM_ALIGN) };
    let p = alloc(std::mem::size_of::<Shared>()).ok_or("out of shared memory")?.cast::<Shared>();
    // SAFETY: a fresh block of the right size and alignment, in memory
    // every process shares, never freed.
    unsafe { Shared::init_at(p.as_ptr(), trace_on) }
        .map_err(|e| format!("cannot create the database lock: {e}"))?;
    // SAFETY: initialized above; it lives until the server exits.
    Ok(unsafe { p.as_ref() })
}

/// A queue of `bytes` bytes in shared memory, for one sender.
pub fn new_ring(bytes: usize) -> Result<Ring, String> {
    let Some(mem) = alloc(bytes) else {
        return Err(format!(
            "cannot allocate a {} KiB queue in shared memory; give Kamailio more (-m) or set a smaller queue_size",
            bytes / 1024
        ));
    };
    // SAFETY: a fresh shm block of `bytes` bytes, 8-byte aligned, kept
    // until the server exits.
    unsafe { Ring::init(mem.as_ptr(), bytes) }.map_err(|e| format!("cannot create a queue: {e}"))
}

/// The table of trace sessions, for `capacity` of them, kept until the
/// server exits.
pub fn new_session_table(capacity: u32) -> Result<&'static SessionTable, String> {
    let bytes = SessionTable::size_for(capacity);
    let Some(mem) = alloc(bytes) else {
        return Err(format!(
            "cannot allocate {} KiB of shared memory for {capacity} trace sessions; give Kamailio more (-m) \
             or set a smaller trace_sessions_max",
            bytes.div_ceil(1024)
        ));
    };
    // SAFETY: a fresh block of `bytes` bytes, 8-byte aligned, in memory
    // every process shares, never freed.
    unsafe { SessionTable::init_at(mem.as_ptr(), capacity) }
        .map_err(|e| format!("cannot create the session table: {e}"))
}

/// A table of `len` zeroed counters in shared memory, kept until the
/// server exits.
pub fn new_atomic_table(len: usize) -> Option<&'static [AtomicI32]> {
    let bytes = len * std::mem::size_of::<AtomicI32>();
    let p = alloc(bytes)?;
    // SAFETY: a fresh block of `bytes` bytes, aligned for AtomicI32, which
    // is valid all-zero; never freed.
    unsafe {
        std::ptr::write_bytes(p.as_ptr(), 0, bytes);
        Some(std::slice::from_raw_parts(p.as_ptr() as *const AtomicI32, len))
    }
}

/// A value in shared memory with bytes after it, held by several owners in
/// any process (a script call, TM and dialog callbacks), and freed by the
/// last one, which drops the value first.
///
/// An owner handed to Kamailio travels as a plain pointer
/// ([`ShmRc::into_raw`]), and comes back through the release function
/// Kamailio calls once for it ([`release`]).
#[repr(transparent)]
pub struct ShmRc<T: 'static> {
    block: NonNull<Block<T>>,
}

#[repr(C)]
struct Block<T> {
    holders: AtomicU32,
    tail_len: usize,
    value: T,
}

impl<T: 'static> ShmRc<T> {
    /// A new block with one owner, the caller.
    pub fn new(value: T, tail: &[u8]) -> Option<Self> {
        const { assert!(std::mem::align_of::<Block<T>>() <= SHM_ALIGN) };
        let size = std::mem::size_of::<Block<T>>() + tail.len();
        let block = alloc(size)?.cast::<Block<T>>();
        // SAFETY: a fresh block of `size` bytes, aligned for Block<T>: the
        // header, then the tail.
        unsafe {
            block.as_ptr().write(Block { holders: AtomicU32::new(1), tail_len: tail.len(), value });
            std::ptr::copy_nonoverlapping(tail.as_ptr(), block.as_ptr().add(1) as *mut u8, tail.len());
        }
        Some(ShmRc { block })
    }

    fn block(&self) -> &Block<T> {
        // SAFETY: an owner keeps the block alive.
        unsafe { self.block.as_ref() }
    }

    /// The bytes stored after the value.
    pub fn tail(&self) -> &[u8] {
        // SAFETY: `new` wrote `tail_len` bytes right after the header.
        unsafe { std::slice::from_raw_parts(self.block.as_ptr().add(1) as *const u8, self.block().tail_len) }
    }

    /// Hands this owner to Kamailio, as the parameter of a callback.
    pub(super) fn into_raw(self) -> *mut c_void {
        let p = self.block.as_ptr() as *mut c_void;
        std::mem::forget(self);
        p
    }

    /// Takes back an owner given with [`ShmRc::into_raw`].
    ///
    /// # Safety
    /// `p` must come from `into_raw` of this type, and be taken back once.
    pub(super) unsafe fn from_raw(p: *mut c_void) -> Option<Self> {
        NonNull::new(p as *mut Block<T>).map(|block| ShmRc { block })
    }

    /// Borrows the owner Kamailio keeps in `slot`, for a callback.
    ///
    /// # Safety
    /// `slot` must hold null or a pointer from `into_raw` of this type
    /// whose owner Kamailio keeps while the slot is borrowed.
    pub(super) unsafe fn borrow_slot(slot: &*mut c_void) -> Option<&Self> {
        if slot.is_null() {
            return None;
        }
        // SAFETY: ShmRc is a transparent non-null pointer, the layout of the
        // non-null `*mut c_void` in the slot; per the contract it is an owner.
        Some(unsafe { &*(slot as *const *mut c_void as *const ShmRc<T>) })
    }
}

impl<T: 'static> Deref for ShmRc<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.block().value
    }
}

impl<T: 'static> Clone for ShmRc<T> {
    fn clone(&self) -> Self {
        self.block().holders.fetch_add(1, Ordering::Relaxed);
        ShmRc { block: self.block }
    }
}

impl<T: 'static> Drop for ShmRc<T> {
    fn drop(&mut self) {
        if self.block().holders.fetch_sub(1, Ordering::AcqRel) == 1 {
            // SAFETY: no other owner is left, in any process: the value is
            // dropped once and the block freed once.
            unsafe {
                std::ptr::drop_in_place(std::ptr::addr_of_mut!((*self.block.as_ptr()).value));
                sys::siptrace_shim_shm_free(self.block.as_ptr() as *mut c_void);
            }
        }
    }
}

/// The release function given to TM and to the dialog module with an
/// owner: each calls it once per registration that holds one.
pub(super) unsafe extern "C" fn release<T: 'static>(p: *mut c_void) {
    guard("the release of a shared block", (), || {
        // SAFETY: the registration held one owner, given with into_raw.
        drop(unsafe { ShmRc::<T>::from_raw(p) })
    })
}
