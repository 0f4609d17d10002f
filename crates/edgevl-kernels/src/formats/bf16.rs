//! BF16 weights with bf16 activations (ggml's `vec_dot_type` for BF16 is BF16).

use super::{assert_block_layout, ActFormat, Block, WeightFormat};
use crate::dtype::{DType, VecDotType};

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon;

/// One bf16, little-endian.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlockBF16 {
    /// The value's bytes.
    pub bits: [u8; 2],
}
assert_block_layout!(BlockBF16, 2);
// SAFETY: repr(C) byte array: alignment 1, no padding, every bit pattern valid.
unsafe impl Block for BlockBF16 {
    const QK: usize = 1;
}

impl BlockBF16 {
    /// The value as f32 (exact).
    #[inline(always)]
    pub fn get(self) -> f32 {
        f32::from_bits(u32::from(u16::from_le_bytes(self.bits)) << 16)
    }
}

/// f32 -> bf16 bits as ggml rounds it: nearest even; NaN stays a quiet NaN.
#[inline(always)]
pub fn f32_to_bf16_bits(x: f32) -> u16 {
    let u = x.to_bits();
    if (u & 0x7fff_ffff) > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    ((u + (0x7fff + ((u >> 16) & 1))) >> 16) as u16
}

/// BF16 weights.
pub struct BF16;

impl WeightFormat for BF16 {
    const DTYPE: DType = DType::BF16;
    type W = BlockBF16;
    type A = BlockBF16;
    fn dequantize(w: &[BlockBF16], out: &mut [f32]) {
        for (o, b) in out.iter_mut().zip(w) {
            *o = b.get();
        }
    }
    fn vec_dot(w: &[BlockBF16], a: &[BlockBF16]) -> f32 {
        let s: f64 = w.iter().zip(a).map(|(x, y)| f64::from(x.get() * y.get())).sum();
        s as f32
    }
}

impl ActFormat for BF16 {
    const TYPE: VecDotType = VecDotType::BF16;
    type A = BlockBF16;
    fn quantize(x: &[f32], out: &mut [BlockBF16]) {
        for (o, v) in out.iter_mut().zip(x) {
            o.bits = f32_to_bf16_bits(*v).to_le_bytes();
        }
    }
}

/// Rounds f32 values to bf16 (nearest even).
pub fn quantize_ref(x: &[f32]) -> Vec<BlockBF16> {
    x.iter().map(|v| BlockBF16 { bits: f32_to_bf16_bits(*v).to_le_bytes() }).collect()
}
