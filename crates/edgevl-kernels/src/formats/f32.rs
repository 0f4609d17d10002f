//! F32 weights with f32 activations.

use super::{assert_block_layout, ActFormat, Block, WeightFormat};
use crate::dtype::{DType, VecDotType};

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon;

/// One f32, little-endian.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlockF32 {
    /// The value's bytes.
    pub bits: [u8; 4],
}
assert_block_layout!(BlockF32, 4);
// SAFETY: repr(C) byte array: alignment 1, no padding, every bit pattern valid.
unsafe impl Block for BlockF32 {
    const QK: usize = 1;
}

impl BlockF32 {
    /// The value.
    #[inline(always)]
    pub fn get(self) -> f32 {
        f32::from_le_bytes(self.bits)
    }
}

/// F32 weights.
pub struct F32;

impl WeightFormat for F32 {
    const DTYPE: DType = DType::F32;
    type W = BlockF32;
    type A = BlockF32;
    fn dequantize(w: &[BlockF32], out: &mut [f32]) {
        for (o, b) in out.iter_mut().zip(w) {
            *o = b.get();
        }
    }
    fn vec_dot(w: &[BlockF32], a: &[BlockF32]) -> f32 {
        // ggml's scalar f32 dot accumulates in double.
        let s: f64 = w.iter().zip(a).map(|(x, y)| f64::from(x.get() * y.get())).sum();
        s as f32
    }
}

impl ActFormat for F32 {
    const TYPE: VecDotType = VecDotType::F32;
    type A = BlockF32;
    fn quantize(x: &[f32], out: &mut [BlockF32]) {
        for (o, v) in out.iter_mut().zip(x) {
            o.bits = v.to_le_bytes();
        }
    }
}

/// Encodes f32 values as little-endian bytes (the "quantiser" of the F32 type).
pub fn quantize_ref(x: &[f32]) -> Vec<BlockF32> {
    x.iter().map(|v| BlockF32 { bits: v.to_le_bytes() }).collect()
}
