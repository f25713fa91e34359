//! The http_client module's API, for REST queries the script makes.

use super::msg::Msg;
use super::pv::Variable;
use super::sys;
use crate::ffi::host_bytes;
use std::ffi::{c_void, CStr};
use std::os::raw::{c_char, c_int};

/// http_client's query function, bound in mod_init when it is loaded.
#[derive(Clone, Copy)]
pub struct HttpClient {
    query: unsafe extern "C" fn(
        *mut sys::sip_msg,
        *mut c_char,
        *mut sys::str_,
        *mut c_char,
        *mut c_char,
    ) -> c_int,
}

impl HttpClient {
    /// The API, when http_client is loaded (whatever the order of the
    /// loadmodule lines: its functions exist once it is loaded).
    pub fn bind() -> Option<HttpClient> {
        // SAFETY: find_export looks up a loaded module's exported function.
        let bind = unsafe { sys::find_export(c"bind_http_client".as_ptr() as *mut c_char, 0, 0) }?;
        // SAFETY: http_client exports bind_http_client with this signature.
        let bind: unsafe extern "C" fn(*mut sys::httpc_api_t) -> c_int = unsafe { std::mem::transmute(bind) };
        let mut api = sys::httpc_api_t::default();
        // SAFETY: fills `api`.
        if unsafe { bind(&mut api) } != 0 {
            return None;
        }
        Some(HttpClient { query: api.http_client_query? })
    }

    /// Runs a query as `http_client_query()` does: a GET, or a POST of
    /// `post` when given, with the extra headers `hdrs`. Returns the HTTP
    /// status (0 when there is none) and the reply's body.
    pub fn query(
        &self,
        msg: Msg<'_>,
        url: &CStr,
        post: Option<&CStr>,
        hdrs: Option<&CStr>,
    ) -> (c_int, HttpBody) {
        let opt = |c: Option<&CStr>| c.map_or(std::ptr::null_mut(), |c| c.as_ptr() as *mut c_char);
        let mut body = sys::str_ { s: std::ptr::null_mut(), len: 0 };
        // SAFETY: NUL-terminated arguments that outlive the call, on a live
        // message; http_client allocates the body in pkg memory, freed by
        // HttpBody.
        let status = unsafe {
            (self.query)(msg.as_ptr(), url.as_ptr() as *mut c_char, &mut body, opt(post), opt(hdrs))
        };
        (status, HttpBody(body))
    }
}

/// A reply body in this process's pkg memory, freed when dropped.
pub struct HttpBody(sys::str_);

impl HttpBody {
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: null or `len` bytes http_client allocated, held by self.
        unsafe { host_bytes(self.0.s, self.0.len) }.unwrap_or_default()
    }

    /// Sets `variable` to the body, as http_client sets its result.
    pub fn store_in(&self, variable: Variable, msg: Msg<'_>) {
        variable.set_str(msg, self.0);
    }
}

impl Drop for HttpBody {
    fn drop(&mut self) {
        if !self.0.s.is_null() {
            // SAFETY: http_client allocated it in pkg memory; freed once.
            unsafe { sys::siptrace_shim_pkg_free(self.0.s as *mut c_void) };
        }
    }
}
