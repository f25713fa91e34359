//! The module's own RPC commands: the export entries, and the context a
//! command replies through (`rpc_t` and its transport's `ctx`).

use super::sys;
use crate::ffi::guard::guard;
use crate::ffi::{host_bytes, Export};
use std::ffi::{c_void, CStr};
use std::os::raw::c_char;

/// An RPC command.
pub trait RpcCommand: 'static {
    const NAME: &'static CStr;
    fn run(ctx: &RpcCtx<'_>);
}

/// A command's documentation, as Kamailio's RPC listing reads it: one
/// string and the NULL that ends the list.
pub type RpcDoc = Export<[*const c_char; 2]>;

pub const fn doc(text: &'static CStr) -> RpcDoc {
    Export([text.as_ptr(), std::ptr::null()])
}

/// The export entry of `C`.
pub const fn export<C: RpcCommand>(doc: &'static RpcDoc) -> sys::rpc_export_t {
    sys::rpc_export_t {
        name: C::NAME.as_ptr(),
        function: Some(run::<C>),
        doc_str: doc.0.as_ptr() as *mut *const c_char,
        flags: 0,
    }
}

/// The entry that closes the table.
pub const fn end() -> sys::rpc_export_t {
    sys::rpc_export_t { name: std::ptr::null(), function: None, doc_str: std::ptr::null_mut(), flags: 0 }
}

unsafe extern "C" fn run<C: RpcCommand>(rpc: *mut sys::rpc_t, ctx: *mut c_void) {
    guard(C::NAME.to_str().unwrap_or("an RPC command"), (), || {
        // SAFETY: Kamailio passes its transport's RPC API and the request
        // context, valid for the call.
        if let Some(rpc) = unsafe { rpc.as_ref() } {
            C::run(&RpcCtx { rpc, ctx });
        }
    })
}

/// The request a command answers.
pub struct RpcCtx<'a> {
    rpc: &'a sys::rpc_t,
    ctx: *mut c_void,
}

impl RpcCtx<'_> {
    pub fn fault(&self, code: i32, text: &CStr) {
        if let Some(fault) = self.rpc.fault {
            // SAFETY: a fixed format with its one argument.
            unsafe { fault(self.ctx, code, c"%s".as_ptr() as *mut c_char, text.as_ptr()) };
        }
    }

    /// Replies with a line of text.
    pub fn reply(&self, text: &CStr) {
        if let Some(printf) = self.rpc.rpl_printf {
            // SAFETY: as above.
            unsafe { printf(self.ctx, c"%s".as_ptr() as *mut c_char, text.as_ptr()) };
        }
    }

    /// Whether the transport can read parameters.
    pub fn can_scan(&self) -> bool {
        self.rpc.scan.is_some()
    }

    /// The next parameter, as a string; `None` when there is none.
    pub fn scan_str(&self) -> Option<Vec<u8>> {
        let scan = self.rpc.scan?;
        let mut arg = sys::str_ { s: std::ptr::null_mut(), len: 0 };
        // SAFETY: "S" scans one str parameter into `arg`.
        if unsafe { scan(self.ctx, c"S".as_ptr() as *mut c_char, &mut arg as *mut sys::str_) } < 1
            || arg.s.is_null()
        {
            return None;
        }
        // SAFETY: a scanned str points at `len` bytes of the request.
        Some(unsafe { host_bytes(arg.s, arg.len) }.unwrap_or_default().to_vec())
    }

    /// Opens a structure in the reply.
    pub fn add_struct(&self) -> Option<RpcStruct<'_>> {
        let (add, struct_add) = (self.rpc.add?, self.rpc.struct_add?);
        let mut handle: *mut c_void = std::ptr::null_mut();
        // SAFETY: "{" opens a struct and writes its handle.
        if unsafe { add(self.ctx, c"{".as_ptr() as *mut c_char, &mut handle as *mut *mut c_void) } < 0 {
            return None;
        }
        Some(RpcStruct { struct_add, handle, _ctx: std::marker::PhantomData })
    }
}

/// A structure of a reply.
pub struct RpcStruct<'a> {
    struct_add: unsafe extern "C" fn(*mut c_void, *mut c_char, ...) -> i32,
    handle: *mut c_void,
    _ctx: std::marker::PhantomData<&'a ()>,
}

impl RpcStruct<'_> {
    pub fn add_u64(&self, name: &CStr, value: u64) {
        // SAFETY: "J" takes a name and an unsigned long long.
        unsafe { (self.struct_add)(self.handle, c"J".as_ptr() as *mut c_char, name.as_ptr(), value) };
    }

    pub fn add_str(&self, name: &CStr, value: &CStr) {
        // SAFETY: "s" takes a name and a C string, which the transport
        // copies before the call returns.
        unsafe {
            (self.struct_add)(self.handle, c"s".as_ptr() as *mut c_char, name.as_ptr(), value.as_ptr())
        };
    }
}
