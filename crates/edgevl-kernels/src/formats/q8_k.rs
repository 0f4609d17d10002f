//! Q8_K: 256 signed bytes with an f32 scale and 16 group sums; the activation format of the K-quants.

use super::{assert_block_layout, nearest_int, signed_max, ActFormat, Block};
use crate::dtype::VecDotType;

/// Elements per super-block.
pub const QK_K: usize = 256;

/// A Q8_K block: `x[j] = d * qs[j]`; `bsums[g] = sum(qs[16g..16g+16])`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ8K {
    /// Scale, f32 little-endian.
    pub d: [u8; 4],
    /// Quants.
    pub qs: [i8; QK_K],
    /// Sums of 16 quants, i16 little-endian.
    pub bsums: [[u8; 2]; QK_K / 16],
}
assert_block_layout!(BlockQ8K, 292);
// SAFETY: repr(C) of byte-sized fields: alignment 1, no padding, every bit pattern valid.
unsafe impl Block for BlockQ8K {
    const QK: usize = QK_K;
}

impl Default for BlockQ8K {
    fn default() -> Self {
        BlockQ8K { d: [0; 4], qs: [0; QK_K], bsums: [[0; 2]; QK_K / 16] }
    }
}

impl BlockQ8K {
    /// The scale.
    #[inline(always)]
    pub fn d(&self) -> f32 {
        f32::from_le_bytes(self.d)
    }
    /// Sum of quants `16g..16g+16`.
    #[inline(always)]
    pub fn bsum(&self, g: usize) -> i32 {
        i32::from(i16::from_le_bytes(self.bsums[g]))
    }
}

/// The Q8_K activation format.
pub struct Q8K;

impl ActFormat for Q8K {
    const TYPE: VecDotType = VecDotType::Q8_K;
    type A = BlockQ8K;
    /// As ggml's `quantize_row_q8_K_ref` (used by ggml-cpu on x86): `iscale = -127 / max` (max = signed element of
    /// largest magnitude), `q = min(127, nearest_int(iscale * x))`, `d = 1 / iscale`.
    fn quantize(x: &[f32], out: &mut [BlockQ8K]) {
        for (xb, b) in x.chunks_exact(QK_K).zip(out) {
            let (max, amax) = signed_max(xb);
            if amax == 0.0 {
                *b = BlockQ8K::default();
                continue;
            }
            let iscale = -127.0 / max;
            for (q, v) in b.qs.iter_mut().zip(xb) {
                *q = nearest_int(iscale * v).min(127) as i8;
            }
            for (g, s) in b.bsums.iter_mut().enumerate() {
                let sum: i32 = b.qs[16 * g..16 * g + 16].iter().map(|&q| i32::from(q)).sum();
                *s = (sum as i16).to_le_bytes();
            }
            b.d = (1.0 / iscale).to_le_bytes();
        }
    }
}
