#![no_main]
//! `edgevl_fuzz::tiling_plan` under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| edgevl_fuzz::tiling_plan(data));
