//! Tensor storage formats ([`DType`]) and the activation formats they are multiplied with ([`VecDotType`]).

/// Weight storage formats the engine computes with.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE 754 single precision.
    F32,
    /// IEEE 754 half precision.
    F16,
    /// bfloat16 (the top half of an f32).
    BF16,
    /// 32 signed bytes with one f16 scale.
    Q8_0,
    /// 32 4-bit values with one f16 scale, offset 8.
    Q4_0,
    /// 32 4-bit values with an f16 scale and an f16 minimum.
    Q4_1,
    /// 32 5-bit values with one f16 scale, offset 16.
    Q5_0,
    /// 256-element super-block: 8 groups of 32 4-bit values with 6-bit scales and minimums.
    Q4_K,
    /// 256-element super-block: 16 groups of 16 6-bit values with 8-bit scales.
    Q6_K,
}

impl DType {
    /// Every supported type, in a fixed order (used for per-type tables).
    pub const ALL: [DType; 9] = [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::Q8_0,
        DType::Q4_0,
        DType::Q4_1,
        DType::Q5_0,
        DType::Q4_K,
        DType::Q6_K,
    ];

    /// Elements per block (1 for the float types).
    pub fn block_size(self) -> usize {
        match self {
            DType::F32 | DType::F16 | DType::BF16 => 1,
            DType::Q8_0 | DType::Q4_0 | DType::Q4_1 | DType::Q5_0 => 32,
            DType::Q4_K | DType::Q6_K => 256,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::Q8_0 => 34,
            DType::Q4_0 => 18,
            DType::Q4_1 => 20,
            DType::Q5_0 => 22,
            DType::Q4_K => 144,
            DType::Q6_K => 210,
        }
    }

    /// Bytes of a row of `n` elements; `None` when `n` is not a whole number of blocks or the size overflows.
    pub fn row_bytes(self, n: usize) -> Option<usize> {
        row_bytes(n, self.block_size(), self.block_bytes())
    }

    /// ggml's name for the type (`"q4_K"`, `"f16"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::Q8_0 => "q8_0",
            DType::Q4_0 => "q4_0",
            DType::Q4_1 => "q4_1",
            DType::Q5_0 => "q5_0",
            DType::Q4_K => "q4_K",
            DType::Q6_K => "q6_K",
        }
    }

    /// The `ggml_type` id used in GGUF tensor infos.
    pub fn ggml_type_id(self) -> u32 {
        match self {
            DType::F32 => 0,
            DType::F16 => 1,
            DType::Q4_0 => 2,
            DType::Q4_1 => 3,
            DType::Q5_0 => 6,
            DType::Q8_0 => 8,
            DType::Q4_K => 12,
            DType::Q6_K => 14,
            DType::BF16 => 30,
        }
    }

    /// The type with `ggml_type` id `id`, if supported.
    pub fn from_ggml_type_id(id: u32) -> Option<DType> {
        DType::ALL.into_iter().find(|t| t.ggml_type_id() == id)
    }

    /// The format activations are converted to before a dot product with this type (ggml-cpu's `vec_dot_type`).
    pub fn vec_dot_type(self) -> VecDotType {
        match self {
            DType::F32 => VecDotType::F32,
            DType::F16 => VecDotType::F16,
            DType::BF16 => VecDotType::BF16,
            DType::Q8_0 | DType::Q4_0 | DType::Q5_0 => VecDotType::Q8_0,
            DType::Q4_1 => VecDotType::Q8_1,
            DType::Q4_K | DType::Q6_K => VecDotType::Q8_K,
        }
    }

    /// Position of the type in [`DType::ALL`].
    pub(crate) fn index(self) -> usize {
        match self {
            DType::F32 => 0,
            DType::F16 => 1,
            DType::BF16 => 2,
            DType::Q8_0 => 3,
            DType::Q4_0 => 4,
            DType::Q4_1 => 5,
            DType::Q5_0 => 6,
            DType::Q4_K => 7,
            DType::Q6_K => 8,
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Formats activations are quantised to for the dot products (ggml's `vec_dot_type`s).
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VecDotType {
    /// f32, unchanged.
    F32,
    /// f16 (round to nearest even).
    F16,
    /// bf16 (round to nearest even).
    BF16,
    /// 32 signed bytes with an f16 scale.
    Q8_0,
    /// 32 signed bytes with an f16 scale and f16 `scale * sum`.
    Q8_1,
    /// 256 signed bytes with an f32 scale and 16 i16 group sums.
    Q8_K,
}

impl VecDotType {
    /// Every activation format, in a fixed order (used for per-type tables).
    pub const ALL: [VecDotType; 6] = [
        VecDotType::F32,
        VecDotType::F16,
        VecDotType::BF16,
        VecDotType::Q8_0,
        VecDotType::Q8_1,
        VecDotType::Q8_K,
    ];

    /// Position of the format in [`VecDotType::ALL`].
    pub(crate) fn index(self) -> usize {
        match self {
            VecDotType::F32 => 0,
            VecDotType::F16 => 1,
            VecDotType::BF16 => 2,
            VecDotType::Q8_0 => 3,
            VecDotType::Q8_1 => 4,
            VecDotType::Q8_K => 5,
        }
    }

    /// Elements per block.
    pub fn block_size(self) -> usize {
        match self {
            VecDotType::F32 | VecDotType::F16 | VecDotType::BF16 => 1,
            VecDotType::Q8_0 | VecDotType::Q8_1 => 32,
            VecDotType::Q8_K => 256,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            VecDotType::F32 => 4,
            VecDotType::F16 | VecDotType::BF16 => 2,
            VecDotType::Q8_0 => 34,
            VecDotType::Q8_1 => 36,
            VecDotType::Q8_K => 292,
        }
    }

    /// Bytes of a row of `n` elements; `None` when `n` is not a whole number of blocks or the size overflows.
    pub fn row_bytes(self, n: usize) -> Option<usize> {
        row_bytes(n, self.block_size(), self.block_bytes())
    }
}

fn row_bytes(n: usize, block_size: usize, block_bytes: usize) -> Option<usize> {
    if !n.is_multiple_of(block_size) {
        return None;
    }
    (n / block_size).checked_mul(block_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_bytes_checks_blocks_and_overflow() {
        assert_eq!(DType::Q4_0.row_bytes(64), Some(36));
        assert_eq!(DType::Q4_0.row_bytes(33), None);
        assert_eq!(DType::Q6_K.row_bytes(512), Some(420));
        assert_eq!(DType::F32.row_bytes(usize::MAX), None);
        for t in DType::ALL {
            assert_eq!(DType::from_ggml_type_id(t.ggml_type_id()), Some(t));
            assert_eq!(DType::ALL[t.index()], t);
        }
        assert_eq!(DType::from_ggml_type_id(7), None, "Q5_1 is not computed");
    }
}
