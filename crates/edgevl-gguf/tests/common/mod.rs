//! Helpers shared by the integration tests.
#![allow(dead_code)]

#[allow(unused_imports)] // each test binary uses a different subset
pub use edgevl_testdata::{fixture, smollm2_path};

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
