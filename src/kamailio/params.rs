//! The modparams: Kamailio hands each value to a setter while it reads the
//! config; they are gathered for mod_init. The table is in `exports`.

use crate::kamailio::config::{self, ParamType, ParamValue, PARAMS};
use crate::kamailio::host::modparam::ParamSink;
use crate::kamailio::host::version::{self, Release};
use crate::kamailio::state;
use std::ffi::CStr;

pub struct Modparams;

impl ParamSink for Modparams {
    const PARAMS: &'static [(&'static CStr, ParamType)] = PARAMS;

    fn set(name: &str, value: ParamValue<'_>) -> Result<(), String> {
        if let Some((major, minor)) = config::needs_release(name) {
            let needed = Release(major, minor);
            if !version::at_least(needed) {
                return Err(format!(
                    "modparam '{name}' has a bad value '{value}': the parameter needs Kamailio {needed} \
                     (this module is built for Kamailio {})",
                    version::RUNNING
                ));
            }
        }
        state::set_param(name, value).map_err(|e| e.to_string())
    }
}
