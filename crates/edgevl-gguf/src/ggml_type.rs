//! ggml tensor element types: ids, names and block geometry.

use std::fmt;

/// A ggml tensor element type. Discriminants are the ids of `ggml.h`.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum GgmlType {
    /// 32-bit float.
    F32 = 0,
    /// IEEE half float.
    F16 = 1,
    /// 4-bit, 32 per block, one f16 scale.
    Q4_0 = 2,
    /// 4-bit, 32 per block, f16 scale and min.
    Q4_1 = 3,
    /// 5-bit, 32 per block, f16 scale.
    Q5_0 = 6,
    /// 5-bit, 32 per block, f16 scale and min.
    Q5_1 = 7,
    /// 8-bit, 32 per block, f16 scale.
    Q8_0 = 8,
    /// 8-bit, 32 per block, f16 scale and sum.
    Q8_1 = 9,
    /// 2-bit k-quant, 256 per super-block.
    Q2_K = 10,
    /// 3-bit k-quant, 256 per super-block.
    Q3_K = 11,
    /// 4-bit k-quant, 256 per super-block.
    Q4_K = 12,
    /// 5-bit k-quant, 256 per super-block.
    Q5_K = 13,
    /// 6-bit k-quant, 256 per super-block.
    Q6_K = 14,
    /// 8-bit k-quant (activations), 256 per super-block.
    Q8_K = 15,
    /// 8-bit signed integer.
    I8 = 24,
    /// 16-bit signed integer.
    I16 = 25,
    /// 32-bit signed integer.
    I32 = 26,
    /// 64-bit signed integer.
    I64 = 27,
    /// 64-bit float.
    F64 = 28,
    /// bfloat16.
    BF16 = 30,
}

impl GgmlType {
    /// Every supported type, in id order.
    pub const ALL: [GgmlType; 20] = [
        Self::F32,
        Self::F16,
        Self::Q4_0,
        Self::Q4_1,
        Self::Q5_0,
        Self::Q5_1,
        Self::Q8_0,
        Self::Q8_1,
        Self::Q2_K,
        Self::Q3_K,
        Self::Q4_K,
        Self::Q5_K,
        Self::Q6_K,
        Self::Q8_K,
        Self::I8,
        Self::I16,
        Self::I32,
        Self::I64,
        Self::F64,
        Self::BF16,
    ];

    /// The type with ggml id `id`, or `None` if unknown or unsupported.
    pub fn from_id(id: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.id() == id)
    }

    /// The ggml id of this type.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// The ggml name, e.g. `"Q8_0"`.
    pub fn name(self) -> &'static str {
        self.geometry().0
    }

    /// Elements per block.
    pub fn block_size(self) -> usize {
        self.geometry().1
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        self.geometry().2
    }

    /// Bytes taken by `n_elements` consecutive elements; `None` if `n_elements` is not a
    /// multiple of [`block_size`](Self::block_size) or the size overflows `u64`.
    pub fn row_bytes(self, n_elements: u64) -> Option<u64> {
        let block = self.block_size() as u64;
        if n_elements % block != 0 {
            return None;
        }
        (n_elements / block).checked_mul(self.type_size() as u64)
    }

    /// (name, elements per block, bytes per block), as ggml's type traits.
    fn geometry(self) -> (&'static str, usize, usize) {
        match self {
            Self::F32 => ("F32", 1, 4),
            Self::F16 => ("F16", 1, 2),
            Self::Q4_0 => ("Q4_0", 32, 18),
            Self::Q4_1 => ("Q4_1", 32, 20),
            Self::Q5_0 => ("Q5_0", 32, 22),
            Self::Q5_1 => ("Q5_1", 32, 24),
            Self::Q8_0 => ("Q8_0", 32, 34),
            Self::Q8_1 => ("Q8_1", 32, 36),
            Self::Q2_K => ("Q2_K", 256, 84),
            Self::Q3_K => ("Q3_K", 256, 110),
            Self::Q4_K => ("Q4_K", 256, 144),
            Self::Q5_K => ("Q5_K", 256, 176),
            Self::Q6_K => ("Q6_K", 256, 210),
            Self::Q8_K => ("Q8_K", 256, 292),
            Self::I8 => ("I8", 1, 1),
            Self::I16 => ("I16", 1, 2),
            Self::I32 => ("I32", 1, 4),
            Self::I64 => ("I64", 1, 8),
            Self::F64 => ("F64", 1, 8),
            Self::BF16 => ("BF16", 1, 2),
        }
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The ggml name of a type id edgevl does not read (llama.cpp's `ggml.h`: the i-quants, the ternary
/// and FP4 types), so an error can say which type a file uses; `None` for an id ggml does not define.
pub(crate) fn unread_type_name(id: u32) -> Option<&'static str> {
    Some(match id {
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        29 => "IQ1_M",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        40 => "NVFP4",
        41 => "Q1_0",
        42 => "Q2_0",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_unknown_ids_are_none() {
        for t in GgmlType::ALL {
            assert_eq!(GgmlType::from_id(t.id()), Some(t));
        }
        for id in [4, 5, 16, 23, 29, 31, 39, u32::MAX] {
            assert_eq!(GgmlType::from_id(id), None, "id {id}");
        }
    }

    #[test]
    fn row_bytes_checks_blocks_and_overflow() {
        assert_eq!(GgmlType::Q8_0.row_bytes(576), Some(18 * 34));
        assert_eq!(GgmlType::Q8_0.row_bytes(33), None);
        assert_eq!(GgmlType::Q6_K.row_bytes(255), None);
        assert_eq!(GgmlType::F32.row_bytes(u64::MAX), None);
        assert_eq!(GgmlType::F32.row_bytes(0), Some(0));
    }
}
