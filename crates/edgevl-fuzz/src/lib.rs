//! The fuzz targets of edgevl: one function per input parser, taking arbitrary bytes and
//! returning nothing. A target must never panic, abort or allocate without bound, whatever the
//! bytes; where a cheap property holds for every input (ids in range, a tiling plan's canvas
//! made of whole tiles) the target asserts it, so the fuzzer finds wrong answers too.
//!
//! The same functions run under libFuzzer (`fuzz/`, driven by `scripts/fuzz.sh`) and under
//! `cargo test`, which replays every file of the committed corpora (`fuzz/corpus/TARGET`) and
//! of the crashes found (`fuzz/regressions/TARGET`) through them. See docs/contributing.md.
//!
//! Inputs stay small on purpose: images are decoded with [`FUZZ_MAX_PIXELS`] and models are
//! run only when their shapes are tiny ([`FUZZ_MAX_WORK`]), so a target runs thousands of times
//! a second; the production limits themselves are tested under an address-space limit
//! (`tests/rlimit.rs`).
#![warn(missing_docs)]

mod chat;
mod convert;
mod gguf;
mod image;
mod server;
mod text;

pub use chat::chat_template;
pub use convert::safetensors_header;
pub use gguf::{gguf_llm, gguf_mmproj};
pub use image::{image_decode, tiling_plan};
pub use server::{server_chat, server_upload};
pub use text::tokenizer;

/// Largest image the image targets decode (production's default is Pillow's 179 MP; the code paths are
/// the same, the fuzzer just runs faster).
pub const FUZZ_MAX_PIXELS: u64 = 1 << 20;

/// Largest model the model targets run after loading, in multiply-adds of one token (or one
/// tile) through it; larger files are only loaded.
pub const FUZZ_MAX_WORK: usize = 1 << 22;

/// A fuzz target: bytes in, nothing out; it panics only on a bug.
pub type Target = fn(&[u8]);

/// Every target by name (the names of `fuzz/fuzz_targets/*.rs` and of the corpus folders).
pub const TARGETS: [(&str, Target); 10] = [
    ("gguf_llm", gguf_llm),
    ("gguf_mmproj", gguf_mmproj),
    ("image_decode", image_decode),
    ("tiling_plan", tiling_plan),
    ("tokenizer", tokenizer),
    ("chat_template", chat_template),
    ("server_chat", server_chat),
    ("server_upload", server_upload),
    ("gguf_parse", gguf_parse),
    ("safetensors_header", safetensors_header),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// GGUF parsing alone ([`edgevl_gguf::GgufFile::from_bytes`]), and the metadata accessors on
/// what it accepts: the fastest target, for the format's corner cases.
pub fn gguf_parse(data: &[u8]) {
    let Ok(file) = edgevl_gguf::GgufFile::from_bytes(data.to_vec()) else { return };
    for t in file.tensors() {
        let bytes = file.tensor_data(t);
        assert_eq!(bytes.len() as u64, t.n_bytes, "tensor {} has the bytes its info says", t.name);
    }
    for (key, value) in file.metadata().iter() {
        let _ = (file.metadata().get_str(key), file.metadata().get_u64(key), value.type_name());
    }
    let _ = file.architecture();
}

/// Splits off the first byte as a selector (0 for empty input).
pub(crate) fn split_selector(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((s, rest)) => (*s, rest),
        None => (0, data),
    }
}
