//! MI: the module's commands (`mi_export_t`, each with its recipes: a
//! handler per set of parameter names), the parameters of a request, and
//! the responses.

use super::sys;
use crate::ffi::guard::guard;
use std::ffi::CStr;
use std::marker::PhantomData;
use std::os::raw::{c_char, c_int};
use std::ptr::NonNull;

/// A handler of an MI command.
pub trait Handler {
    /// Names the handler in the log if it fails.
    const NAME: &'static str;
    fn run(params: &Params<'_>) -> Response;
}

/// `H` for the requests that give the parameters `names`.
pub const fn recipe<H: Handler>(names: &[&'static CStr]) -> sys::mi_recipe_t {
    let mut params = [std::ptr::null_mut(); sys::MAX_MI_PARAMS as usize];
    let mut i = 0;
    while i < names.len() {
        params[i] = names[i].as_ptr() as *mut c_char;
        i += 1;
    }
    sys::mi_recipe_t { cmd: Some(handler::<H>), params }
}

const NO_RECIPE: sys::mi_recipe_t =
    sys::mi_recipe_t { cmd: None, params: [std::ptr::null_mut(); sys::MAX_MI_PARAMS as usize] };

/// The command `name`, formerly (before OpenSIPS 4.0) called `former`
/// when that differs; with `named_only`, it takes named parameters only.
///
/// OpenSIPS 3.6 knows it by its former name. OpenSIPS 4.0 prefixes every
/// command with its module's name (`tracer:start`), answers to the bare
/// name while no other module exports the same one, and to the former
/// name, which becomes an alias, as OpenSIPS 4.0's tracer has it.
pub const fn export(
    name: &'static CStr,
    former: Option<&'static CStr>,
    named_only: bool,
    recipes: &[sys::mi_recipe_t],
) -> sys::mi_export_t {
    let mut table = [NO_RECIPE; sys::MAX_MI_RECIPES as usize];
    let mut i = 0;
    while i < recipes.len() {
        table[i] = recipes[i];
        i += 1;
    }
    let flags = if named_only { sys::MI_NAMED_PARAMS_ONLY } else { 0 };
    #[cfg(opensips_3_6)]
    let entry = sys::mi_export_t {
        name: match former {
            Some(former) => former,
            None => name,
        }
        .as_ptr() as *mut c_char,
        help: std::ptr::null_mut(),
        flags,
        init_f: None,
        recipes: table,
    };
    #[cfg(opensips_4_0)]
    let entry = {
        // A NULL-terminated list.
        let mut aliases = [std::ptr::null(); sys::MAX_MI_ALIASES as usize];
        if let Some(former) = former {
            aliases[0] = former.as_ptr();
        }
        sys::mi_export_t {
            name: name.as_ptr() as *mut c_char,
            help: std::ptr::null_mut(),
            flags,
            init_f: None,
            recipes: table,
            aliases,
        }
    };
    entry
}

pub const END: sys::mi_export_t = sys::mi_export_t {
    name: std::ptr::null_mut(),
    help: std::ptr::null_mut(),
    flags: 0,
    init_f: None,
    recipes: [NO_RECIPE; sys::MAX_MI_RECIPES as usize],
    #[cfg(opensips_4_0)]
    aliases: [std::ptr::null(); sys::MAX_MI_ALIASES as usize],
};

unsafe extern "C" fn handler<H: Handler>(
    params: *const sys::mi_params_t,
    _async: *mut sys::mi_handler,
) -> *mut sys::mi_response_t {
    guard(H::NAME, std::ptr::null_mut(), || H::run(&Params(params, PhantomData)).0)
}

/// The parameters of a request.
pub struct Params<'a>(*const sys::mi_params_t, PhantomData<&'a sys::mi_params_t>);

impl Params<'_> {
    /// The string parameter `name`, when given.
    pub fn string(&self, name: &CStr) -> Option<String> {
        let mut value: *mut c_char = std::ptr::null_mut();
        let mut len: c_int = 0;
        // SAFETY: the parameters OpenSIPS passed; it fills `value` and `len`.
        let rc = unsafe {
            sys::try_get_mi_string_param(self.0, name.as_ptr() as *mut c_char, &mut value, &mut len)
        };
        // SAFETY: `len` bytes at `value`, valid during the request.
        (rc >= 0 && !value.is_null()).then(|| text(unsafe { crate::ffi::host_bytes(value, len) }))
    }

    /// The strings of the array parameter `name`; none when not given.
    pub fn strings(&self, name: &CStr) -> Vec<String> {
        let mut array: *mut sys::mi_item_t = std::ptr::null_mut();
        let mut count: c_int = 0;
        // SAFETY: the parameters OpenSIPS passed; it fills `array` and `count`.
        if unsafe {
            sys::try_get_mi_array_param(self.0, name.as_ptr() as *mut c_char, &mut array, &mut count)
        } < 0
        {
            return Vec::new();
        }
        (0..count)
            .filter_map(|i| {
                let mut value: *mut c_char = std::ptr::null_mut();
                let mut len: c_int = 0;
                // SAFETY: an element of the array OpenSIPS gave.
                let rc = unsafe { sys::try_get_mi_arr_param_string(array, i, &mut value, &mut len) };
                // SAFETY: `len` bytes at `value`, valid during the request.
                (rc == 0 && !value.is_null()).then(|| text(unsafe { crate::ffi::host_bytes(value, len) }))
            })
            .collect()
    }
}

fn text(bytes: Option<&[u8]>) -> String {
    String::from_utf8_lossy(bytes.unwrap_or_default()).into_owned()
}

/// A response, which OpenSIPS owns once the handler returns it; null when
/// OpenSIPS could not make it.
pub struct Response(*mut sys::mi_response_t);

impl Response {
    pub fn ok() -> Response {
        // SAFETY: a static text, which OpenSIPS copies.
        Response(unsafe { sys::init_mi_result_string(c"OK".as_ptr(), 2) })
    }

    /// An error with `code`, `text` and, when not empty, `details`.
    pub fn error(code: i32, text: &str, details: &str) -> Response {
        // SAFETY: the texts are valid for their lengths; OpenSIPS copies them.
        Response(unsafe {
            sys::init_mi_error_extra(
                code,
                text.as_ptr() as *const c_char,
                text.len() as c_int,
                if details.is_empty() { std::ptr::null() } else { details.as_ptr() as *const c_char },
                details.len() as c_int,
            )
        })
    }

    /// A result object, filled by `fill`.
    pub fn object(fill: impl FnOnce(Item<'_>)) -> Response {
        let mut object: *mut sys::mi_item_t = std::ptr::null_mut();
        // SAFETY: a new response; OpenSIPS fills `object`, which the response owns.
        let response = unsafe { sys::init_mi_result_object(&mut object) };
        if !response.is_null() {
            fill(Item(NonNull::new(object), PhantomData));
        }
        Response(response)
    }
}

/// An object or array of a response being built. Items OpenSIPS could not
/// make take nothing.
#[derive(Clone, Copy)]
pub struct Item<'r>(Option<NonNull<sys::mi_item_t>>, PhantomData<&'r Response>);

impl<'r> Item<'r> {
    fn name(name: &str) -> (*mut c_char, c_int) {
        (name.as_ptr() as *mut c_char, name.len() as c_int)
    }

    pub fn add_string(self, name: &str, value: &str) {
        let Some(to) = self.0 else { return };
        let (name, len) = Item::name(name);
        // SAFETY: an item of the response being built; OpenSIPS copies the texts.
        unsafe {
            sys::add_mi_string(to.as_ptr(), name, len, value.as_ptr() as *const c_char, value.len() as c_int)
        };
    }

    /// A new array called `name` in this object.
    pub fn add_array(self, name: &str) -> Item<'r> {
        let Some(to) = self.0 else { return self };
        let (name, len) = Item::name(name);
        // SAFETY: adding to an item of the response being built.
        Item(NonNull::new(unsafe { sys::add_mi_array(to.as_ptr(), name, len) }), PhantomData)
    }

    /// A new object in this array.
    pub fn add_object(self) -> Item<'r> {
        let Some(to) = self.0 else { return self };
        // SAFETY: adding to an item of the response being built.
        Item(NonNull::new(unsafe { sys::add_mi_object(to.as_ptr(), std::ptr::null_mut(), 0) }), PhantomData)
    }
}
