#![no_main]
//! `edgevl_fuzz::server_upload` under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| edgevl_fuzz::server_upload(data));
