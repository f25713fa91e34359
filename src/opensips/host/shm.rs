//! OpenSIPS's shared memory, which every process sees: the state the
//! module sets up in mod_init, before OpenSIPS forks, and the blocks that
//! callbacks in several processes share (`held`).

use super::sys;
use crate::core::ring::Ring;
use crate::core::shared::Shared;
use std::mem::MaybeUninit;

/// OpenSIPS's allocators align every block to 8 bytes.
const ALIGN: usize = 8;

/// A block of `size` bytes, aligned to 8, or `None` when shared memory is
/// short. It stays until the server exits unless given to `free`.
pub(super) fn alloc_bytes(size: usize) -> Option<std::ptr::NonNull<u8>> {
    // SAFETY: a plain allocation.
    std::ptr::NonNull::new(unsafe { sys::siptrace_os_shm_malloc(size) } as *mut u8)
}

/// Gives back a block `alloc_bytes` made.
///
/// # Safety
/// `p` must come from `alloc_bytes`, be freed once, and not be used after.
pub(super) unsafe fn free(p: std::ptr::NonNull<u8>) {
    // SAFETY: per the contract.
    unsafe { sys::siptrace_os_shm_free(p.as_ptr() as *mut std::os::raw::c_void) }
}

/// Room for a `T` that lives until the server exits, to be initialized in
/// place (for what holds a process-shared lock).
pub fn alloc<T>() -> Option<&'static mut MaybeUninit<T>> {
    const { assert!(std::mem::align_of::<T>() <= ALIGN) };
    let p = alloc_bytes(std::mem::size_of::<T>().max(1))?;
    // SAFETY: a fresh block, aligned for `T` (checked above), that nothing
    // else refers to and that is never freed.
    Some(unsafe { &mut *(p.as_ptr() as *mut MaybeUninit<T>) })
}

/// `count` values made by `make`, for the life of the server.
pub fn slice<T>(count: usize, mut make: impl FnMut(usize) -> T) -> Option<&'static [T]> {
    const { assert!(std::mem::align_of::<T>() <= ALIGN) };
    let p = alloc_bytes(std::mem::size_of::<T>() * count.max(1))?.as_ptr() as *mut T;
    for i in 0..count {
        // SAFETY: within the fresh block, aligned for `T`.
        unsafe { p.add(i).write(make(i)) };
    }
    // SAFETY: `count` initialized values that are never freed.
    Some(unsafe { std::slice::from_raw_parts(p, count) })
}

/// The state every process shares (the switch, the counters, ...).
pub fn shared(trace_on: bool) -> Result<&'static Shared, String> {
    let place = alloc::<Shared>().ok_or("out of shared memory")?;
    // SAFETY: fresh shared memory for a `Shared`, never freed.
    unsafe { Shared::init_at(place.as_mut_ptr(), trace_on) }
        .map_err(|e| format!("cannot set up the shared state: {e}"))?;
    // SAFETY: initialized just above.
    Ok(unsafe { place.assume_init_ref() })
}

/// A sender's queue of `bytes` bytes.
pub fn ring(bytes: usize) -> Result<Ring, String> {
    let Some(mem) = alloc_bytes(bytes) else {
        return Err(format!(
            "cannot allocate a {} KiB queue in shared memory; give OpenSIPS more (-m)",
            bytes / 1024
        ));
    };
    // SAFETY: a fresh shared block of `bytes` bytes, aligned to 8, never freed.
    unsafe { Ring::init(mem.as_ptr(), bytes) }.map_err(|e| format!("cannot create a queue: {e}"))
}
