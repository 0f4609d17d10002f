#![no_main]
//! `edgevl_fuzz::server_chat` under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| edgevl_fuzz::server_chat(data));
