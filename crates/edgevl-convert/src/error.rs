//! The error type of this crate: every message names the file and, where one is involved, the tensor.

use std::path::PathBuf;

/// Everything that can go wrong converting a checkpoint.
#[derive(thiserror::Error, Debug)]
#[non_exhaustive]
pub enum ConvertError {
    /// An I/O error on a named file.
    #[error("I/O error on '{}': {source}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A JSON file does not parse or has the wrong shape.
    #[error("'{}': {message}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A `config.json` field is missing or has the wrong type or value.
    #[error("'{}': field '{field}': {message}", path.display())]
    Config {
        /// The config file.
        path: PathBuf,
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The file the checkpoint converts to would be refused by edgevl's own loader (checked on
    /// its metadata before anything is written).
    #[error("'{}': the {what} it converts to would not load: {message}", path.display())]
    Unloadable {
        /// The config file.
        path: PathBuf,
        /// Which output ("LLM" or "mmproj").
        what: &'static str,
        /// The loader's reason.
        message: String,
    },
    /// `architectures[0]` names a model edgevl cannot convert.
    #[error("'{}': unknown architecture '{name}' (edgevl converts: {known})", path.display())]
    UnknownArchitecture {
        /// The config file.
        path: PathBuf,
        /// The architecture found.
        name: String,
        /// The architectures edgevl converts.
        known: String,
    },
    /// A safetensors file is malformed (header, offsets, sizes).
    #[error("safetensors file '{}'{}: {message}", path.display(), tensor.as_ref().map(|t| format!(", tensor '{t}'")).unwrap_or_default())]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// The tensor involved, when one is.
        tensor: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// A shard named by `model.safetensors.index.json` is missing.
    #[error("'{}' names shard '{}' (holding tensor '{tensor}'), which does not exist", index.display(), shard.display())]
    MissingShard {
        /// The index file.
        index: PathBuf,
        /// The missing shard.
        shard: PathBuf,
        /// A tensor the index places in it.
        tensor: String,
    },
    /// The index and the shards disagree on a tensor.
    #[error("'{}': tensor '{tensor}': {message}", path.display())]
    IndexMismatch {
        /// The index file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// What disagrees.
        message: String,
    },
    /// A tensor the architecture needs is absent.
    #[error("'{}': tensor '{tensor}' is missing", dir.display())]
    MissingTensor {
        /// The checkpoint directory.
        dir: PathBuf,
        /// The tensor.
        tensor: String,
    },
    /// A tensor the converter cannot place.
    #[error("'{}': tensor '{tensor}' is not part of a {arch} checkpoint edgevl can convert", path.display())]
    UnexpectedTensor {
        /// The file holding it.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// The architecture.
        arch: String,
    },
    /// A tensor's element type is not one edgevl reads.
    #[error("'{}': tensor '{tensor}' has dtype {dtype}; edgevl converts F32, F16 and BF16 tensors", path.display())]
    UnsupportedDtype {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// The dtype found.
        dtype: String,
    },
    /// A tensor's shape disagrees with `config.json`.
    #[error("'{}': tensor '{tensor}' has shape {found:?}, but config.json implies {expected:?}", path.display())]
    ShapeMismatch {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// The shape config.json implies (row-major, as in the checkpoint).
        expected: Vec<u64>,
        /// The shape found.
        found: Vec<u64>,
    },
    /// The tokenizer files cannot be read or converted.
    #[error("tokenizer '{}': {message}", path.display())]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The BPE pre-tokenizer's hash is not in llama.cpp's table.
    #[error("tokenizer '{}': BPE pre-tokenizer not recognised: chkhsh {chkhsh} is not in llama.cpp's table (convert_hf_to_gguf_update.py); if you know which pre-tokenizer it uses, name it with --pre-tokenizer", path.display())]
    UnknownPreTokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// sha256 of the token ids of llama.cpp's check text.
        chkhsh: String,
    },
    /// Bad options.
    #[error("{0}")]
    Options(String),
    /// Writing the output failed.
    #[error("writing '{}'{}: {source}", path.display(), tensor.as_ref().map(|t| format!(" (tensor '{t}')")).unwrap_or_default())]
    Write {
        /// The output file.
        path: PathBuf,
        /// The tensor being written, if any.
        tensor: Option<String>,
        /// The underlying error.
        source: edgevl_gguf::GgufError,
    },
    /// The conversion was cancelled (Ctrl-C).
    #[error("cancelled; nothing was written to '{}'", path.display())]
    Cancelled {
        /// The output that was not written.
        path: PathBuf,
    },
}

/// Shorthand.
pub type Result<T> = std::result::Result<T, ConvertError>;
