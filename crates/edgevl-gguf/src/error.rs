//! The error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong reading, querying or writing a GGUF file.
///
/// Every message names the problem and, where one exists, the key, tensor and byte offset involved.
#[derive(thiserror::Error, Debug)]
#[non_exhaustive]
pub enum GgufError {
    /// An I/O error on a named file.
    #[error("I/O error on '{}': {source}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The first four bytes are not `GGUF`.
    #[error(
        "not a GGUF file: magic bytes are {found:02x?} ({}), expected \"GGUF\"",
        String::from_utf8_lossy(found)
    )]
    BadMagic {
        /// The four bytes found at offset 0.
        found: [u8; 4],
    },
    /// The file is a big-endian (byte-swapped) GGUF.
    #[error("big-endian (byte-swapped) GGUF file ({detail}); only little-endian GGUF is supported")]
    ByteSwapped {
        /// What gave it away.
        detail: String,
    },
    /// A GGUF version other than 2 or 3.
    #[error("unsupported GGUF version {0} (supported: 2 and 3)")]
    UnsupportedVersion(u32),
    /// The file ends before a field it declares.
    #[error("truncated file: {what} at offset {offset} needs {needed} bytes but only {available} remain")]
    Truncated {
        /// The field being read.
        what: String,
        /// Where the field starts.
        offset: u64,
        /// Bytes the field needs.
        needed: u64,
        /// Bytes left in the file from `offset`.
        available: u64,
    },
    /// A declared element count cannot possibly fit in the bytes that remain.
    #[error("{what}: declared count {count} at offset {offset} cannot fit in the {available} bytes remaining (each entry takes at least {min_entry_bytes} bytes)")]
    CountTooLarge {
        /// What is being counted.
        what: String,
        /// The declared count.
        count: u64,
        /// Where the count was read.
        offset: u64,
        /// Minimum encoded size of one entry.
        min_entry_bytes: u64,
        /// Bytes left in the file.
        available: u64,
    },
    /// A declared string length is absurd (more than `i32::MAX` bytes).
    #[error("{what} at offset {offset} declares a length of {len} bytes, over the limit of {limit}")]
    StringTooLong {
        /// The string being read.
        what: String,
        /// Where the length was read.
        offset: u64,
        /// The declared length.
        len: u64,
        /// The largest accepted length.
        limit: u64,
    },
    /// A string is not valid UTF-8.
    #[error("{what} at offset {offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// The string being read.
        what: String,
        /// Where the string bytes start.
        offset: u64,
    },
    /// A bool value that is neither 0 nor 1.
    #[error("{what} at offset {offset} is a bool with invalid byte {byte:#04x} (expected 0 or 1)")]
    InvalidBool {
        /// The value being read.
        what: String,
        /// Where the byte is.
        offset: u64,
        /// The byte found.
        byte: u8,
    },
    /// A metadata value type id this reader does not know.
    #[error("{what} at offset {offset} has unknown value type id {id}")]
    UnknownValueType {
        /// The value being read.
        what: String,
        /// Where the type id was read.
        offset: u64,
        /// The type id found.
        id: u32,
    },
    /// Arrays nested deeper than the reader accepts.
    #[error("{what} at offset {offset}: arrays nested more than {limit} deep")]
    NestingTooDeep {
        /// The value being read.
        what: String,
        /// Where the too-deep array starts.
        offset: u64,
        /// The deepest nesting accepted.
        limit: usize,
    },
    /// A metadata key is absent.
    #[error("missing metadata key '{0}'")]
    MissingKey(String),
    /// A metadata key holds a value of another type than requested.
    #[error("metadata key '{key}' has type {found}, expected {expected}")]
    WrongType {
        /// The key.
        key: String,
        /// What the caller asked for.
        expected: &'static str,
        /// What the file holds (for integers that do not fit, the value too).
        found: String,
    },
    /// A tensor is absent.
    #[error("missing tensor '{0}'")]
    MissingTensor(String),
    /// A tensor has another shape than required.
    #[error("tensor '{name}' has shape {found:?}, expected {expected:?} (ggml order, row length first)")]
    ShapeMismatch {
        /// The tensor.
        name: String,
        /// The required dims.
        expected: Vec<u64>,
        /// The dims in the file.
        found: Vec<u64>,
    },
    /// A tensor's ggml type id is unknown or unsupported.
    #[error("tensor '{tensor}' has ggml type id {id}{}, which edgevl does not read", crate::ggml_type::unread_type_name(*.id).map(|n| format!(" ({n})")).unwrap_or_default())]
    UnknownType {
        /// The tensor.
        tensor: String,
        /// The type id found.
        id: u32,
    },
    /// The same metadata key appears twice.
    #[error("duplicate metadata key '{key}'{}", at(.offset))]
    DuplicateKey {
        /// The key.
        key: String,
        /// Where the second occurrence starts, when reading.
        offset: Option<u64>,
    },
    /// The same tensor name appears twice.
    #[error("duplicate tensor name '{name}'{}", at(.offset))]
    DuplicateTensor {
        /// The tensor name.
        name: String,
        /// Where the second occurrence starts, when reading.
        offset: Option<u64>,
    },
    /// `general.alignment` is zero, not a power of two, or too large.
    #[error("bad general.alignment {value}: must be a power of two between 1 and {max}")]
    BadAlignment {
        /// The value found.
        value: u64,
        /// The largest accepted alignment.
        max: u64,
    },
    /// A tensor with more dimensions than ggml supports.
    #[error("tensor '{tensor}' has {n_dims} dimensions (at most {max} supported)")]
    TooManyDims {
        /// The tensor.
        tensor: String,
        /// The declared dimension count.
        n_dims: u32,
        /// The most dimensions accepted.
        max: u32,
    },
    /// A size computed from file data overflows.
    #[error("arithmetic overflow computing {what}")]
    Overflow {
        /// What was being computed.
        what: String,
    },
    /// A tensor's row length is not a whole number of blocks of its type.
    #[error("tensor '{tensor}': row length {row_len} is not a multiple of the {ggml_type} block size {block_size}")]
    BadRowLength {
        /// The tensor.
        tensor: String,
        /// Its type name.
        ggml_type: &'static str,
        /// The row length, `dims[0]`.
        row_len: u64,
        /// Elements per block of the type.
        block_size: usize,
    },
    /// A tensor's bytes are not inside the file's data section.
    #[error("tensor '{name}' at data offset {offset} with {n_bytes} bytes lies past the end of the data section ({data_len} bytes)")]
    TensorOutOfBounds {
        /// The tensor.
        name: String,
        /// Its offset relative to the data section.
        offset: u64,
        /// Its size.
        n_bytes: u64,
        /// Size of the data section in the file.
        data_len: u64,
    },
    /// Two tensors' bytes overlap (no GGUF writer shares bytes between tensors; a file that
    /// does could make one region count as many matrices).
    #[error("tensors '{first}' and '{second}' overlap in the data section (at data offset {offset})")]
    OverlappingTensors {
        /// The tensor that starts first.
        first: String,
        /// The tensor that starts inside it.
        second: String,
        /// Where the second starts, relative to the data section.
        offset: u64,
    },
    /// The header's metadata and tensor infos would take more memory than the reader allows
    /// (their in-memory form can be several times their encoded size).
    #[error("{what}: the file's header would take more than {limit} bytes of memory (the limit for metadata and tensor infos); the file is corrupt or hostile")]
    HeaderTooLarge {
        /// What was being read when the limit was passed.
        what: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// A tensor's offset is not a multiple of the alignment.
    #[error("tensor '{name}' data offset {offset} is not a multiple of the alignment {alignment}")]
    Misaligned {
        /// The tensor.
        name: String,
        /// Its offset relative to the data section.
        offset: u64,
        /// The file's alignment.
        alignment: u64,
    },
    /// Writer: tensor data of the wrong length for its type and shape.
    #[error("tensor '{name}': data has {found} bytes, but type and shape need {expected}")]
    DataSizeMismatch {
        /// The tensor.
        name: String,
        /// Bytes needed by type and dims.
        expected: u64,
        /// Bytes given.
        found: u64,
    },
    /// Writing a streamed file failed.
    #[error("writing {what} failed: {source}")]
    Write {
        /// What was being written (`the header`, `tensor 'x'`).
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Formats an optional offset as " at offset N" (or nothing).
fn at(offset: &Option<u64>) -> String {
    offset.map(|o| format!(" at offset {o}")).unwrap_or_default()
}
