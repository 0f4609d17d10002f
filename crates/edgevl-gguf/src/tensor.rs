//! Tensor descriptions and their checked size computation.

use crate::{GgmlType, GgufError};

/// Most dimensions a ggml tensor may have.
pub const MAX_DIMS: u32 = 4;

/// One tensor's entry in the GGUF tensor-info table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions in ggml order: `dims[0]` is the contiguous row length.
    pub dims: Vec<u64>,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Byte offset of the tensor's data, relative to the start of the data section.
    pub offset: u64,
    /// Size of the tensor's data in bytes.
    pub n_bytes: u64,
}

impl TensorInfo {
    /// Number of elements (product of dims; saturates at `u64::MAX`, which a tensor read from a
    /// file can never reach because its size was validated at open).
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().fold(1u64, |acc, &d| acc.saturating_mul(d))
    }

    /// The dims without trailing ones: ggml pads every tensor's shape with ones to four
    /// dimensions, so `[32, 1, 1]` (a converter writing PyTorch's `[1, 1, 32]`) and `[32]` are
    /// the same shape.
    pub fn shape(&self) -> &[u64] {
        trim_ones(&self.dims)
    }

    /// Number of rows: the product of all dims but the first (1 for a vector).
    pub fn n_rows(&self) -> u64 {
        self.dims.iter().skip(1).fold(1u64, |acc, &d| acc.saturating_mul(d))
    }
}

/// `dims` without trailing ones (see [`TensorInfo::shape`]).
pub fn trim_ones(dims: &[u64]) -> &[u64] {
    let n = dims.iter().rposition(|&d| d != 1).map_or(0, |i| i + 1);
    &dims[..n]
}

/// Bytes taken by a tensor of type `t` and `dims`, checking block divisibility and overflow.
///
/// The element count must also fit in `i64` (ggml's `int64_t ne[]`).
pub fn tensor_n_bytes(name: &str, t: GgmlType, dims: &[u64]) -> Result<u64, GgufError> {
    let overflow = || GgufError::Overflow { what: format!("size of tensor '{name}' with dims {dims:?}") };
    let n_elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= i64::MAX as u64)
        .ok_or_else(overflow)?;
    let row_len = dims.first().copied().unwrap_or(1);
    if row_len % t.block_size() as u64 != 0 {
        return Err(GgufError::BadRowLength {
            tensor: name.to_string(),
            ggml_type: t.name(),
            row_len,
            block_size: t.block_size(),
        });
    }
    let row_bytes = t.row_bytes(row_len).ok_or_else(overflow)?;
    // n_elements fitting means the row count does too.
    let n_rows = n_elements.checked_div(row_len).unwrap_or(0);
    row_bytes.checked_mul(n_rows).ok_or_else(overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_block_geometry() {
        let n = tensor_n_bytes("t", GgmlType::Q8_0, &[576, 49152]).ok();
        assert_eq!(n, Some(576 / 32 * 34 * 49152));
        assert_eq!(tensor_n_bytes("t", GgmlType::F32, &[]).ok(), Some(4));
        assert_eq!(tensor_n_bytes("t", GgmlType::F32, &[3, 0, 5]).ok(), Some(0));
    }

    #[test]
    fn overflowing_products_are_errors() {
        let e = tensor_n_bytes("w", GgmlType::F32, &[1 << 32, 1 << 32]);
        assert!(matches!(e, Err(GgufError::Overflow { .. })));
        let e = tensor_n_bytes("w", GgmlType::F64, &[1 << 62]);
        assert!(matches!(e, Err(GgufError::Overflow { .. })));
        let e = tensor_n_bytes("w", GgmlType::Q4_K, &[100, 2]);
        assert!(matches!(e, Err(GgufError::BadRowLength { .. })));
    }
}
