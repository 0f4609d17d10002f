//! Reading and writing GGUF (v2/v3) model files.
//!
//! [`GgufFile::open`] memory-maps a file and validates all of it up front: every count, length,
//! shape, offset and size read from the file is checked with overflow-checked arithmetic against
//! the bytes that remain *before* anything is allocated or sliced, so hostile files produce a
//! [`GgufError`] naming the problem rather than a panic or a huge allocation.
//! [`GgufWriter`] builds files the reader (and llama.cpp) accept; [`GgufStreamWriter`] writes one
//! tensor at a time (a converter's output), to an [`AtomicFile`] renamed into place when complete.
#![warn(missing_docs)]
#![warn(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod cursor;
mod error;
mod file;
mod ggml_type;
mod metadata;
mod reader;
mod regular;
mod stream;
mod tensor;
mod value;
mod value_reader;
mod writer;

pub use cursor::MAX_HEADER_MEMORY;
pub use error::GgufError;
pub use file::GgufFile;
pub use ggml_type::GgmlType;
pub use metadata::Metadata;
pub use reader::{DEFAULT_ALIGNMENT, KEY_ALIGNMENT, MAX_ALIGNMENT};
pub use regular::{open_regular, read_regular, read_regular_text, read_text_or_stream};
pub use stream::{AtomicFile, GgufStreamWriter, TensorSpec};
pub use tensor::{tensor_n_bytes, trim_ones, TensorInfo, MAX_DIMS};
pub use value::{Array, Value};
pub use value_reader::MAX_ARRAY_DEPTH;
pub use writer::{GgufWriter, TensorEdit};

/// `general.architecture`: the model family of the file (read by [`GgufFile::architecture`]).
pub const KEY_ARCHITECTURE: &str = "general.architecture";

/// Largest string length the reader accepts (`i32::MAX`).
pub const MAX_STRING_LEN: u64 = cursor::MAX_STRING_LEN;
