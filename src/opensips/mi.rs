//! The tracer's MI commands, as OpenSIPS's tracer has them: `trace` shows
//! the trace ids and switches tracing on and off, globally or per id;
//! `trace_start` and `trace_stop` add and remove dynamic trace ids.

use crate::ffi::guard::guard;
use crate::opensips::module::{self, Module};
use crate::opensips::sys;
use crate::opensips::{dynamic, script, trace_api};
use std::os::raw::{c_char, c_int};
use std::sync::atomic::Ordering;

type Handler = unsafe extern "C" fn(*const sys::mi_params_t, *mut sys::mi_handler) -> *mut sys::mi_response_t;

const fn recipe(
    cmd: Option<Handler>,
    params: [&'static std::ffi::CStr; 5],
    count: usize,
) -> sys::mi_recipe_t {
    let mut names = [std::ptr::null_mut(); sys::MAX_MI_PARAMS as usize];
    let mut i = 0;
    while i < count {
        names[i] = params[i].as_ptr() as *mut c_char;
        i += 1;
    }
    sys::mi_recipe_t { cmd, params: names }
}

const EMPTY: sys::mi_recipe_t =
    sys::mi_recipe_t { cmd: None, params: [std::ptr::null_mut(); sys::MAX_MI_PARAMS as usize] };

const fn export(name: &'static std::ffi::CStr, flags: u32, recipes: &[sys::mi_recipe_t]) -> sys::mi_export_t {
    let mut table = [EMPTY; sys::MAX_MI_RECIPES as usize];
    let mut i = 0;
    while i < recipes.len() {
        table[i] = recipes[i];
        i += 1;
    }
    sys::mi_export_t {
        name: name.as_ptr() as *mut c_char,
        help: std::ptr::null_mut(),
        flags,
        init_f: None,
        recipes: table,
    }
}

pub const fn mi_exports() -> [sys::mi_export_t; 4] {
    let none = c"";
    [
        export(
            c"trace",
            sys::MI_NAMED_PARAMS_ONLY,
            &[
                recipe(Some(show_all), [none; 5], 0),
                recipe(Some(show_id), [c"id", none, none, none, none], 1),
                recipe(Some(set_global), [c"mode", none, none, none, none], 1),
                recipe(Some(set_id), [c"id", c"mode", none, none, none], 2),
            ],
        ),
        export(
            c"trace_start",
            0,
            &[
                recipe(Some(start), [c"id", c"uri", none, none, none], 2),
                recipe(Some(start), [c"id", c"uri", c"filter", none, none], 3),
                recipe(Some(start), [c"id", c"uri", c"filter", c"scope", c"type"], 5),
            ],
        ),
        export(c"trace_stop", 0, &[recipe(Some(stop), [c"id", none, none, none, none], 1)]),
        sys::mi_export_t {
            name: std::ptr::null_mut(),
            help: std::ptr::null_mut(),
            flags: 0,
            init_f: None,
            recipes: [EMPTY; sys::MAX_MI_RECIPES as usize],
        },
    ]
}

fn error(code: c_int, text: &str, details: &str) -> *mut sys::mi_response_t {
    // SAFETY: the texts are valid for their lengths; OpenSIPS copies them.
    unsafe {
        sys::init_mi_error_extra(
            code,
            text.as_ptr() as *const c_char,
            text.len() as c_int,
            if details.is_empty() { std::ptr::null() } else { details.as_ptr() as *const c_char },
            details.len() as c_int,
        )
    }
}

fn ok() -> *mut sys::mi_response_t {
    // SAFETY: a static text.
    unsafe { sys::init_mi_result_string(c"OK".as_ptr(), 2) }
}

fn add(to: *mut sys::mi_item_t, name: &str, value: &str) {
    // SAFETY: an item of a response being built; OpenSIPS copies the texts.
    unsafe {
        sys::add_mi_string(
            to,
            name.as_ptr() as *mut c_char,
            name.len() as c_int,
            value.as_ptr() as *const c_char,
            value.len() as c_int,
        );
    }
}

/// A string parameter, when given.
fn param(params: *const sys::mi_params_t, name: &std::ffi::CStr) -> Option<String> {
    let mut value: *mut c_char = std::ptr::null_mut();
    let mut len: c_int = 0;
    // SAFETY: the parameters OpenSIPS passes; it fills `value` and `len`.
    let rc =
        unsafe { sys::try_get_mi_string_param(params, name.as_ptr() as *mut c_char, &mut value, &mut len) };
    if rc < 0 || value.is_null() {
        return None;
    }
    // SAFETY: `len` bytes at `value`.
    let bytes = unsafe { std::slice::from_raw_parts(value as *const u8, len.max(0) as usize) };
    Some(String::from_utf8_lossy(bytes).into_owned())
}

/// Adds the destinations of the trace ids `which` selects to `array`:
/// the static ones, then the dynamic ones.
fn list(module: &Module, array: *mut sys::mi_item_t, which: impl Fn(usize) -> bool) {
    for (slot, entry) in module.dynamic.snapshot() {
        if !which(module.ids.len() + slot) {
            continue;
        }
        // SAFETY: adding to the response's array.
        let item = unsafe { sys::add_mi_object(array, std::ptr::null_mut(), 0) };
        add(item, "name", entry.name());
        // Like static ones, a file or syslog destination shows no type or uri.
        match entry.target {
            dynamic::Target::Hep | dynamic::Target::Sip => {
                add(item, "type", if entry.target == dynamic::Target::Hep { "HEP" } else { "SIP" });
                add(item, "uri", &entry.dest.addr.to_string());
            }
            dynamic::Target::File | dynamic::Target::Syslog { .. } => {}
        }
        add(item, "state", "dynamic");
        let name = "filters";
        // SAFETY: adding to the item.
        let filters = unsafe { sys::add_mi_array(item, name.as_ptr() as *mut c_char, name.len() as c_int) };
        for f in entry.filters() {
            // SAFETY: adding to the array.
            let object = unsafe { sys::add_mi_object(filters, std::ptr::null_mut(), 0) };
            let kind = match f.kind {
                dynamic::FilterKind::Caller => "caller",
                dynamic::FilterKind::Callee => "callee",
                dynamic::FilterKind::Ip => "ip",
            };
            add(object, kind, &String::from_utf8_lossy(f.text()));
        }
    }
    for entry in module.listing.iter().filter(|e| which(e.id)) {
        // SAFETY: adding to the response's array.
        let item = unsafe { sys::add_mi_object(array, std::ptr::null_mut(), 0) };
        add(item, "name", &module.ids[entry.id].0);
        if !entry.kind.is_empty() {
            add(item, "type", entry.kind);
            add(item, "uri", &entry.uri);
        }
        // The id's own switch, whatever the global one says.
        let on = module.switches.get(entry.id).is_some_and(|s| s.load(Ordering::Relaxed));
        add(item, "state", if on { "on" } else { "off" });
    }
}

fn destinations(module: &Module, global: bool, which: impl Fn(usize) -> bool) -> *mut sys::mi_response_t {
    let mut object: *mut sys::mi_item_t = std::ptr::null_mut();
    // SAFETY: a new response; OpenSIPS owns it once returned.
    let response = unsafe { sys::init_mi_result_object(&mut object) };
    if response.is_null() {
        return response;
    }
    if global {
        add(object, "global", if module.shared.trace_on.load(Ordering::Relaxed) { "on" } else { "off" });
    }
    let name = "trace destinations";
    // SAFETY: adding to the response.
    let array = unsafe { sys::add_mi_array(object, name.as_ptr() as *mut c_char, name.len() as c_int) };
    list(module, array, which);
    response
}

/// `on` or `off`, in any case.
fn mode(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "on" => Some(true),
        "off" => Some(false),
        _ => None,
    }
}

unsafe extern "C" fn show_all(
    _p: *const sys::mi_params_t,
    _h: *mut sys::mi_handler,
) -> *mut sys::mi_response_t {
    guard("MI trace", std::ptr::null_mut(), || match module::get() {
        Some(module) => destinations(module, true, |_| true),
        None => error(500, "Internal error", ""),
    })
}

unsafe extern "C" fn show_id(
    p: *const sys::mi_params_t,
    _h: *mut sys::mi_handler,
) -> *mut sys::mi_response_t {
    guard("MI trace", std::ptr::null_mut(), || {
        let Some(module) = module::get() else { return error(500, "Internal error", "") };
        let Some(name) = param(p, c"id") else { return error(400, "Bad trace id value", "") };
        if let Some(index) = module.id_index(&name) {
            return destinations(module, false, |i| i == index);
        }
        match module.dynamic.snapshot().into_iter().find(|(_, e)| e.name() == name) {
            Some((slot, _)) => destinations(module, false, |i| i == module.ids.len() + slot),
            None => error(400, "Bad trace id value", ""),
        }
    })
}

unsafe extern "C" fn set_global(
    p: *const sys::mi_params_t,
    _h: *mut sys::mi_handler,
) -> *mut sys::mi_response_t {
    guard("MI trace", std::ptr::null_mut(), || {
        let Some(module) = module::get() else { return error(500, "Internal error", "") };
        match param(p, c"mode").as_deref().and_then(mode) {
            Some(on) => {
                module.shared.trace_on.store(on, Ordering::Relaxed);
                ok()
            }
            None => error(500, "Bad parameter value", "trace mode should be 'on' or 'off'"),
        }
    })
}

unsafe extern "C" fn set_id(p: *const sys::mi_params_t, _h: *mut sys::mi_handler) -> *mut sys::mi_response_t {
    guard("MI trace", std::ptr::null_mut(), || {
        let Some(module) = module::get() else { return error(500, "Internal error", "") };
        let Some(index) = param(p, c"id").and_then(|id| module.id_index(&id)) else {
            return error(400, "Bad parameter value", "");
        };
        match param(p, c"mode").as_deref().and_then(mode) {
            Some(on) => {
                module.switches[index].store(on, Ordering::Relaxed);
                ok()
            }
            None => error(500, "Bad parameter value", "trace mode should be 'on' or 'off'"),
        }
    })
}

/// The strings of an array parameter, when given.
fn array_param(params: *const sys::mi_params_t, name: &std::ffi::CStr) -> Vec<String> {
    let mut array: *mut sys::mi_item_t = std::ptr::null_mut();
    let mut count: c_int = 0;
    // SAFETY: the parameters OpenSIPS passes; it fills `array` and `count`.
    if unsafe { sys::try_get_mi_array_param(params, name.as_ptr() as *mut c_char, &mut array, &mut count) }
        < 0
    {
        return Vec::new();
    }
    (0..count)
        .filter_map(|i| {
            let mut value: *mut c_char = std::ptr::null_mut();
            let mut len: c_int = 0;
            // SAFETY: an element of the array OpenSIPS gave.
            let rc = unsafe { sys::try_get_mi_arr_param_string(array, i, &mut value, &mut len) };
            (rc == 0 && !value.is_null()).then(|| {
                // SAFETY: `len` bytes at `value`.
                let bytes = unsafe { std::slice::from_raw_parts(value as *const u8, len.max(0) as usize) };
                String::from_utf8_lossy(bytes).into_owned()
            })
        })
        .collect()
}

unsafe extern "C" fn start(p: *const sys::mi_params_t, _h: *mut sys::mi_handler) -> *mut sys::mi_response_t {
    guard("MI trace_start", std::ptr::null_mut(), || {
        let Some(module) = module::get() else { return error(500, "Internal error", "") };
        let (Some(name), Some(uri)) = (param(p, c"id"), param(p, c"uri")) else {
            return error(400, "Bad parameter value", "");
        };
        if module.id_index(&name).is_some() {
            return error(500, "Bad parameter value", "trace id already used");
        }
        // The dialog scope and every record type when not given, as
        // OpenSIPS's tracer does.
        let scope = param(p, c"scope").and_then(|s| script::scope_value(s.as_bytes())).unwrap_or(3);
        let types = param(p, c"type").and_then(|t| trace_api::mask_of(t.as_bytes()).ok()).unwrap_or(u32::MAX);
        let entry = match dynamic::entry(module, &name, &uri, scope, types, &array_param(p, c"filter")) {
            Ok(entry) => entry,
            Err((code, text, details)) => return error(code as c_int, text, &details),
        };
        match module.dynamic.start(entry) {
            Ok(()) => ok(),
            Err(details) => error(500, "Bad parameter value", &details),
        }
    })
}

unsafe extern "C" fn stop(p: *const sys::mi_params_t, _h: *mut sys::mi_handler) -> *mut sys::mi_response_t {
    guard("MI trace_stop", std::ptr::null_mut(), || {
        let Some(module) = module::get() else { return error(500, "Internal error", "") };
        match param(p, c"id") {
            Some(name) if module.dynamic.stop(&name) => ok(),
            _ => error(400, "Bad parameter value", ""),
        }
    })
}
