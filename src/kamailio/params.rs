//! The modparams: Kamailio hands each value to a setter while it reads the
//! config; they are gathered for mod_init. The table is in `exports`.

use crate::kamailio::config::{ParamType, ParamValue, PARAMS};
use crate::kamailio::host::modparam::ParamSink;
use crate::kamailio::state;
use std::ffi::CStr;

pub struct Modparams;

impl ParamSink for Modparams {
    const PARAMS: &'static [(&'static CStr, ParamType)] = PARAMS;

    fn set(name: &str, value: ParamValue<'_>) -> Result<(), String> {
        state::set_param(name, value).map_err(|e| e.to_string())
    }
}
