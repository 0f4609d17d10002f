#![no_main]
//! `edgevl_fuzz::chat_template` under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| edgevl_fuzz::chat_template(data));
