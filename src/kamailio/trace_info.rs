//! What a traced transaction or dialog needs later, its destination and
//! correlation id, as one block of shared memory: callbacks run in
//! whichever process handles the next event.
//!
//! A dialog shares one block with the transactions of its requests, and
//! any of them may end first, so the block counts its holders and is freed
//! by the last one. Each holder (a TM callback, a dialog callback, the
//! script call that made it) releases its reference exactly once.

use crate::core::counters::Counters;
use crate::core::event::TraceTypes;
use crate::ffi::guard::guard;
use crate::kamailio::tracer::ScriptTarget;
use crate::kamailio::{shared, sys};
use std::ffi::c_void;
use std::sync::atomic::{AtomicU32, Ordering};

/// The header of the block; the correlation id's bytes follow it.
#[repr(C)]
pub struct TraceInfo {
    holders: AtomicU32,
    pub target: ScriptTarget,
    types: u8,
    correlation_len: usize,
}

impl TraceInfo {
    pub fn correlation(&self) -> Option<&[u8]> {
        // SAFETY: `alloc` wrote `correlation_len` bytes right after the header.
        let bytes = unsafe {
            std::slice::from_raw_parts((self as *const TraceInfo).add(1) as *const u8, self.correlation_len)
        };
        (!bytes.is_empty()).then_some(bytes)
    }

    /// What the trace sends: SIP messages, log lines, REST queries.
    pub fn types(&self) -> TraceTypes {
        TraceTypes::from_bits(self.types)
    }

    /// A new block with one holder, the caller.
    pub fn alloc(target: ScriptTarget, correlation: &[u8], types: TraceTypes) -> Option<*mut TraceInfo> {
        let size = std::mem::size_of::<TraceInfo>() + correlation.len();
        // SAFETY: plain allocation from Kamailio's shared memory pool.
        let p = unsafe { sys::siptrace_shim_shm_malloc(size) } as *mut TraceInfo;
        if p.is_null() {
            return None;
        }
        // SAFETY: a fresh block of `size` bytes, aligned for any scalar.
        unsafe {
            p.write(TraceInfo {
                holders: AtomicU32::new(1),
                target,
                types: types.bits(),
                correlation_len: correlation.len(),
            });
            std::ptr::copy_nonoverlapping(correlation.as_ptr(), p.add(1) as *mut u8, correlation.len());
        }
        if let Some(shared) = shared::get() {
            Counters::add(&shared.counters.contexts_made);
        }
        Some(p)
    }

    /// Adds a holder.
    ///
    /// # Safety
    /// `p` must be a live block, held by the caller.
    pub unsafe fn retain(p: *mut TraceInfo) {
        // SAFETY: per the contract.
        unsafe { &*p }.holders.fetch_add(1, Ordering::Relaxed);
    }

    /// Drops a holder; the last one frees the block.
    ///
    /// # Safety
    /// `p` must be a live block, and the caller one of its holders, which
    /// must not use it afterwards.
    pub unsafe fn release(p: *mut TraceInfo) {
        // SAFETY: per the contract.
        if unsafe { &*p }.holders.fetch_sub(1, Ordering::AcqRel) == 1 {
            // SAFETY: no holder is left.
            unsafe { sys::siptrace_shim_shm_free(p as *mut c_void) };
            if let Some(shared) = shared::get() {
                Counters::add(&shared.counters.contexts_freed);
            }
        }
    }
}

/// The release function given to TM and to the dialog module with a block:
/// each calls it once per registration that holds a reference.
pub unsafe extern "C" fn release_callback(info: *mut c_void) {
    guard("the trace info release", (), || {
        if !info.is_null() {
            // SAFETY: the registration held one reference to this block.
            unsafe { TraceInfo::release(info as *mut TraceInfo) }
        }
    })
}
