#![no_main]
//! `edgevl_fuzz::image_decode` under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| edgevl_fuzz::image_decode(data));
