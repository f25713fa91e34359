//! A trace as the parameter of OpenSIPS's callbacks (tm, dialog, b2b):
//! held by each callback registration, which OpenSIPS releases when the
//! transaction, dialog or session ends, possibly in another process.

use super::shm;
use crate::ffi::guard::guard;
use std::os::raw::c_void;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// A trace in progress: the trace id's index, the kinds of records it
/// takes (see `trace_api`), the forced correlation, and the attributes
/// its rows carry (`trace_attrs`).
#[derive(Debug, Clone, Copy)]
pub struct Trace<'a> {
    pub id: usize,
    pub types: u32,
    pub correlation: Option<&'a [u8]>,
    pub attrs: Option<&'a [u8]>,
}

/// One reference to a trace. Without a correlation id and attributes the
/// trace fits in the pointer's own bits, and a reference costs nothing;
/// else it is a block in shared memory (an allocation there is a search
/// under a lock in OpenSIPS), counted, freed with its last reference.
/// Cloning takes a reference, dropping gives it back.
pub struct Held(NonNull<c_void>);

/// The block of a trace with a correlation id or attributes.
#[repr(C)]
struct Block {
    refs: AtomicU32,
    id: usize,
    types: u32,
    correlation_len: usize,
    attrs_len: usize,
    // The correlation id's bytes follow, then the attributes'.
}

impl Block {
    fn tail(&self, from: usize, len: usize) -> Option<&[u8]> {
        (len > 0).then(|| {
            // SAFETY: `Held::new` copied the bytes right after the block.
            unsafe { std::slice::from_raw_parts(((self as *const Block).add(1) as *const u8).add(from), len) }
        })
    }
}

impl Held {
    /// The low bit marks a trace held inline: a block is aligned.
    const INLINE: usize = 1;

    /// A first reference to `trace`; `None` when shared memory is short.
    pub fn new(trace: Trace<'_>) -> Option<Held> {
        let inline = trace.correlation.is_none() && trace.attrs.is_none() && trace.id < 1 << 31;
        if inline && usize::BITS == 64 {
            let bits = Self::INLINE | trace.id << 1 | (trace.types as usize) << 32;
            return NonNull::new(bits as *mut c_void).map(Held);
        }
        let correlation = trace.correlation.unwrap_or_default();
        let attrs = trace.attrs.unwrap_or_default();
        let size = std::mem::size_of::<Block>() + correlation.len() + attrs.len();
        let p = shm::alloc_bytes(size)?.cast::<Block>();
        // SAFETY: a fresh block of `size` bytes, aligned to 8 like `Block`.
        unsafe {
            p.as_ptr().write(Block {
                refs: AtomicU32::new(1),
                id: trace.id,
                types: trace.types,
                correlation_len: correlation.len(),
                attrs_len: attrs.len(),
            });
            let tail = p.as_ptr().add(1) as *mut u8;
            std::ptr::copy_nonoverlapping(correlation.as_ptr(), tail, correlation.len());
            std::ptr::copy_nonoverlapping(attrs.as_ptr(), tail.add(correlation.len()), attrs.len());
        }
        Some(Held(p.cast()))
    }

    fn block(&self) -> Option<&Block> {
        // SAFETY: not inline, so a block this reference keeps alive.
        (self.0.as_ptr() as usize & Self::INLINE == 0).then(|| unsafe { self.0.cast::<Block>().as_ref() })
    }

    pub fn trace(&self) -> Trace<'_> {
        match self.block() {
            Some(block) => Trace {
                id: block.id,
                types: block.types,
                correlation: block.tail(0, block.correlation_len),
                attrs: block.tail(block.correlation_len, block.attrs_len),
            },
            None => {
                let bits = self.0.as_ptr() as usize;
                Trace {
                    id: (bits >> 1) & 0x7fff_ffff,
                    types: (bits >> 32) as u32,
                    correlation: None,
                    attrs: None,
                }
            }
        }
    }

    /// The reference, as a callback parameter OpenSIPS keeps until it calls
    /// `release` with it.
    pub(super) fn into_param(self) -> *mut c_void {
        std::mem::ManuallyDrop::new(self).0.as_ptr()
    }

    /// Takes back the reference `into_param` made of `p`.
    ///
    /// # Safety
    /// `p` must be null or come from `into_param`, and be taken back once.
    pub(super) unsafe fn from_param(p: *mut c_void) -> Option<Held> {
        NonNull::new(p).map(Held)
    }

    /// The trace of a callback's parameter, which OpenSIPS keeps; the
    /// reference is not taken.
    ///
    /// # Safety
    /// `p` must be null or a parameter `into_param` made that OpenSIPS has
    /// not released yet, nor will during `'a`.
    pub(super) unsafe fn borrow_param<'a>(p: *mut c_void) -> Option<Borrowed<'a>> {
        // SAFETY: per the contract; not dropped, so not released.
        let held = unsafe { Held::from_param(p)? };
        Some(Borrowed(std::mem::ManuallyDrop::new(held), std::marker::PhantomData))
    }
}

impl Clone for Held {
    fn clone(&self) -> Held {
        if let Some(block) = self.block() {
            block.refs.fetch_add(1, Ordering::AcqRel);
        }
        Held(self.0)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let Some(block) = self.block() else { return };
        if block.refs.fetch_sub(1, Ordering::AcqRel) == 1 {
            // SAFETY: the last reference: nothing refers to the block any
            // more, and `new` made it with `alloc_bytes`.
            unsafe { shm::free(self.0.cast()) };
        }
    }
}

/// A trace that a callback's registration holds, lent to the callback.
pub struct Borrowed<'a>(std::mem::ManuallyDrop<Held>, std::marker::PhantomData<&'a Held>);

impl std::ops::Deref for Borrowed<'_> {
    type Target = Held;
    fn deref(&self) -> &Held {
        &self.0
    }
}

/// The release function OpenSIPS calls with a parameter `into_param` made.
pub(super) unsafe extern "C" fn release(param: *mut c_void) {
    // SAFETY: OpenSIPS gives back each registration's reference once.
    guard("callback release", (), || drop(unsafe { Held::from_param(param) }))
}
