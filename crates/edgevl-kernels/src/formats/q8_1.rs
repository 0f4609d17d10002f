//! Q8_1: 32 signed bytes with an f16 scale and the f16 of `scale * sum(quants)`; the activation format of Q4_1.

use super::{assert_block_layout, f16_to_f32, f32_to_f16, q8_0, ActFormat, Block};
use crate::dtype::VecDotType;

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon;

/// Elements per block.
pub const QK8_1: usize = 32;

/// A Q8_1 block.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlockQ8_1 {
    /// Scale, f16 little-endian.
    pub d: [u8; 2],
    /// `d * sum(qs)`, f16 little-endian.
    pub s: [u8; 2],
    /// Quants.
    pub qs: [i8; QK8_1],
}
assert_block_layout!(BlockQ8_1, 36);
// SAFETY: repr(C) of byte-sized fields: alignment 1, no padding, every bit pattern valid.
unsafe impl Block for BlockQ8_1 {
    const QK: usize = QK8_1;
}

impl BlockQ8_1 {
    /// The scale.
    #[inline(always)]
    pub fn d(&self) -> f32 {
        f16_to_f32(self.d)
    }
    /// `d * sum(qs)` as stored.
    #[inline(always)]
    pub fn s(&self) -> f32 {
        f16_to_f32(self.s)
    }
}

/// The Q8_1 activation format.
pub struct Q8_1;

impl ActFormat for Q8_1 {
    const TYPE: VecDotType = VecDotType::Q8_1;
    type A = BlockQ8_1;
    /// As ggml-cpu's x86 `quantize_row_q8_1`: Q8_0's rounding, and `s = f16(d_f32 * sum)`.
    fn quantize(x: &[f32], out: &mut [BlockQ8_1]) {
        for (xb, b) in x.chunks_exact(QK8_1).zip(out) {
            let (d, sum) = q8_0::quantize_act_block(xb, &mut b.qs);
            b.d = f32_to_f16(d);
            b.s = f32_to_f16(d * sum as f32);
        }
    }
}
