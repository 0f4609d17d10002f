#![no_main]
//! `edgevl_fuzz::safetensors_header` under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| edgevl_fuzz::safetensors_header(data));
