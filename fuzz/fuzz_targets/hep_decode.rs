//! `hep::decode_v3` and `Decoded::from_chunks` on raw bytes: no panic, and
//! what is accepted is checked by `check_hep_decoder`. A target of its own,
//! so that its corpus stays made of packets.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| siptrace_rs_fuzz::check_hep_decoder(data));
