//! Q4_0: 32 4-bit values with one f16 scale, `x = d * (q - 8)`; multiplied with Q8_0 activations.

use super::{assert_block_layout, f16_to_f32, f32_to_f16, q8_0::BlockQ8_0, signed_max, Block, WeightFormat};
use crate::dtype::DType;

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon;

/// Elements per block.
pub const QK4_0: usize = 32;

/// A Q4_0 block: element `j < 16` is the low nibble of `qs[j]`, element `j + 16` its high nibble.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlockQ4_0 {
    /// Scale, f16 little-endian.
    pub d: [u8; 2],
    /// Nibbles.
    pub qs: [u8; QK4_0 / 2],
}
assert_block_layout!(BlockQ4_0, 18);
// SAFETY: repr(C) byte arrays: alignment 1, no padding, every bit pattern valid.
unsafe impl Block for BlockQ4_0 {
    const QK: usize = QK4_0;
}

impl BlockQ4_0 {
    /// The scale.
    #[inline(always)]
    pub fn d(&self) -> f32 {
        f16_to_f32(self.d)
    }
}

/// Quantises `x` (a multiple of 32 long) as ggml's `quantize_row_q4_0_ref`: `d = max / -8` where `max` is the
/// signed element of largest magnitude, `q = min(15, trunc(x / d + 8.5))`.
#[allow(clippy::needless_range_loop)] // index arithmetic mirrors the block layout
pub fn quantize_ref(x: &[f32]) -> Vec<BlockQ4_0> {
    x.chunks_exact(QK4_0)
        .map(|xb| {
            let (max, _) = signed_max(xb);
            let d = max / -8.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let mut b = BlockQ4_0 { d: f32_to_f16(d), qs: [0; 16] };
            let q = |v: f32| ((v * id + 8.5) as i8).min(15) as u8;
            for j in 0..16 {
                b.qs[j] = q(xb[j]) | (q(xb[j + 16]) << 4);
            }
            b
        })
        .collect()
}

/// Q4_0 weights.
pub struct Q4_0;

impl WeightFormat for Q4_0 {
    const DTYPE: DType = DType::Q4_0;
    type W = BlockQ4_0;
    type A = BlockQ8_0;
    fn dequantize(w: &[BlockQ4_0], out: &mut [f32]) {
        for (b, o) in w.iter().zip(out.chunks_exact_mut(QK4_0)) {
            let d = b.d();
            for j in 0..16 {
                o[j] = (i32::from(b.qs[j] & 0x0f) - 8) as f32 * d;
                o[j + 16] = (i32::from(b.qs[j] >> 4) - 8) as f32 * d;
            }
        }
    }
    fn vec_dot(w: &[BlockQ4_0], a: &[BlockQ8_0]) -> f32 {
        let mut sumf = 0.0f32;
        for (x, y) in w.iter().zip(a) {
            let mut sumi = 0i32;
            for j in 0..16 {
                sumi += (i32::from(x.qs[j] & 0x0f) - 8) * i32::from(y.qs[j]);
                sumi += (i32::from(x.qs[j] >> 4) - 8) * i32::from(y.qs[j + 16]);
            }
            // One fma per block, as the packed kernels: every level computes the same f32 sequence.
            sumf = (sumi as f32).mul_add(x.d() * y.d(), sumf);
        }
        sumf
    }
}
