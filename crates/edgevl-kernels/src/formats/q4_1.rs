//! Q4_1: 32 4-bit values with an f16 scale and an f16 minimum, `x = d * q + m`; multiplied with Q8_1 activations.

use super::{assert_block_layout, f16_to_f32, f32_to_f16, q8_1::BlockQ8_1, Block, WeightFormat};
use crate::dtype::DType;

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon;

/// Elements per block.
pub const QK4_1: usize = 32;

/// A Q4_1 block: element `j < 16` is the low nibble of `qs[j]`, element `j + 16` its high nibble.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlockQ4_1 {
    /// Scale, f16 little-endian.
    pub d: [u8; 2],
    /// Minimum, f16 little-endian.
    pub m: [u8; 2],
    /// Nibbles.
    pub qs: [u8; QK4_1 / 2],
}
assert_block_layout!(BlockQ4_1, 20);
// SAFETY: repr(C) byte arrays: alignment 1, no padding, every bit pattern valid.
unsafe impl Block for BlockQ4_1 {
    const QK: usize = QK4_1;
}

impl BlockQ4_1 {
    /// The scale.
    #[inline(always)]
    pub fn d(&self) -> f32 {
        f16_to_f32(self.d)
    }
    /// The minimum.
    #[inline(always)]
    pub fn m(&self) -> f32 {
        f16_to_f32(self.m)
    }
}

/// Quantises `x` (a multiple of 32 long) as ggml's `quantize_row_q4_1_ref`: `d = (max - min) / 15`,
/// `q = min(15, trunc((x - min) / d + 0.5))`.
#[allow(clippy::needless_range_loop)] // index arithmetic mirrors the block layout
pub fn quantize_ref(x: &[f32]) -> Vec<BlockQ4_1> {
    x.chunks_exact(QK4_1)
        .map(|xb| {
            let min = xb.iter().fold(f32::MAX, |m, &v| if v < m { v } else { m });
            let max = xb.iter().fold(-f32::MAX, |m, &v| if v > m { v } else { m });
            let d = (max - min) / 15.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let mut b = BlockQ4_1 { d: f32_to_f16(d), m: f32_to_f16(min), qs: [0; 16] };
            let q = |v: f32| (((v - min) * id + 0.5) as i8).min(15) as u8;
            for j in 0..16 {
                b.qs[j] = q(xb[j]) | (q(xb[j + 16]) << 4);
            }
            b
        })
        .collect()
}

/// Q4_1 weights.
pub struct Q4_1;

impl WeightFormat for Q4_1 {
    const DTYPE: DType = DType::Q4_1;
    type W = BlockQ4_1;
    type A = BlockQ8_1;
    fn dequantize(w: &[BlockQ4_1], out: &mut [f32]) {
        for (b, o) in w.iter().zip(out.chunks_exact_mut(QK4_1)) {
            let (d, m) = (b.d(), b.m());
            for j in 0..16 {
                o[j] = f32::from(b.qs[j] & 0x0f) * d + m;
                o[j + 16] = f32::from(b.qs[j] >> 4) * d + m;
            }
        }
    }
    fn vec_dot(w: &[BlockQ4_1], a: &[BlockQ8_1]) -> f32 {
        let mut sumf = 0.0f32;
        for (x, y) in w.iter().zip(a) {
            let mut sumi = 0i32;
            for j in 0..16 {
                sumi += i32::from(x.qs[j] & 0x0f) * i32::from(y.qs[j]);
                sumi += i32::from(x.qs[j] >> 4) * i32::from(y.qs[j + 16]);
            }
            // Two fmas per block, as the packed kernels: every level computes the same f32 sequence.
            sumf = (sumi as f32).mul_add(x.d() * y.d(), sumf);
            sumf = x.m().mul_add(y.s(), sumf);
        }
        sumf
    }
}
