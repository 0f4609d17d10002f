//! The crate's error type.

use crate::dtype::DType;

/// Errors from validating kernel inputs.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// A row length that is not a whole number of blocks.
    #[error("{dtype}: row length {cols} is not a multiple of the block size {block}")]
    RowNotBlockAligned {
        /// Storage type.
        dtype: DType,
        /// Elements per row.
        cols: usize,
        /// Elements per block.
        block: usize,
    },
    /// A byte size that overflows `usize`.
    #[error("{dtype}: size of {rows} rows x {cols} columns overflows")]
    SizeOverflow {
        /// Storage type.
        dtype: DType,
        /// Rows.
        rows: usize,
        /// Elements per row.
        cols: usize,
    },
    /// A buffer whose length does not match the shape.
    #[error("{what}: expected {expected} {unit}, found {found}")]
    Length {
        /// Which buffer.
        what: &'static str,
        /// Required length.
        expected: usize,
        /// Actual length.
        found: usize,
        /// "bytes" or "elements".
        unit: &'static str,
    },
    /// A format without a packed layout.
    #[error("{dtype}: no packed layout for this format")]
    NotPackable {
        /// Storage type.
        dtype: DType,
    },
    /// A wide packed tile of a format the wide kernel does not take (only Q4_0, Q4_1 and Q8_0).
    #[error("{dtype}: no wide packed kernel for this format")]
    NoWideKernel {
        /// Storage type.
        dtype: DType,
    },
    /// A float GEMM tile of a format that is not F16 or F32.
    #[error("{dtype}: not a float GEMM format (F16 or F32)")]
    NotFloat {
        /// Storage type.
        dtype: DType,
    },
    /// A count outside its range.
    #[error("{what}: {value} is outside {min}..={max}")]
    OutOfRange {
        /// Which count.
        what: &'static str,
        /// The count given.
        value: usize,
        /// Smallest allowed.
        min: usize,
        /// Largest allowed.
        max: usize,
    },
    /// An override variable (`EDGEVL_MAX_SIMD`, ...) with a value it does not take.
    #[error("{var}={value:?}: expected {expected}")]
    Override {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// The values it takes.
        expected: &'static str,
    },
}
