#![no_main]
//! `edgevl_fuzz::tokenizer` under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| edgevl_fuzz::tokenizer(data));
