#![no_main]
//! `edgevl_fuzz::gguf_parse` under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| edgevl_fuzz::gguf_parse(data));
