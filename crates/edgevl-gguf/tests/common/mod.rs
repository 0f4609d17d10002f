//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// Path of the SmolLM2 test model; panics with the fetch instructions when it is missing.
pub fn smollm2_path() -> PathBuf {
    let cache = std::env::var_os("EDGEVL_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/edgevl")))
        .expect("neither EDGEVL_CACHE nor HOME is set");
    let path = cache.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(path.is_file(), "test model {} is missing: run scripts/fetch-smollm2.sh first", path.display());
    path
}

/// Path of a committed fixture under the workspace's tests/fixtures.
pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(rel)
}

pub mod alloc;
pub mod craft;

use edgevl_gguf::{GgufError, GgufFile};

/// Parses `bytes`, which must fail; returns the error and checks its message names all `needles`.
pub fn refuse(bytes: Vec<u8>, needles: &[&str]) -> GgufError {
    let e = match GgufFile::from_bytes(bytes) {
        Ok(_) => panic!("crafted file was accepted; expected an error naming {needles:?}"),
        Err(e) => e,
    };
    let msg = e.to_string();
    for n in needles {
        assert!(msg.contains(n), "error message {msg:?} does not mention {n:?}");
    }
    e
}
