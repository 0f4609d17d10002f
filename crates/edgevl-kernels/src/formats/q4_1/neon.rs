//! Q4_1 x Q8_1 with NEON: nibbles as bytes 0..16, exact integer block sums, and the scalar twin's f32 update per
//! block, so results are bit-identical.

use std::arch::aarch64::*;

use super::BlockQ4_1;
use crate::aarch64::neon::{f16x4, ld_i8, ld_u8, neon_dot_entry, I8Dot};
use crate::formats::q8_1::BlockQ8_1;

neon_dot_entry!(BlockQ4_1, BlockQ8_1, row);

/// One weight row with one activation row.
///
/// # Safety
/// `D`'s CPU feature is available.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn row<D: I8Dot>(w: &[BlockQ4_1], a: &[BlockQ8_1]) -> f32 {
    let m4 = vdupq_n_u8(0x0f);
    let mut sumf = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let q = ld_u8(&x.qs, 0);
        let lo = vreinterpretq_s8_u8(vandq_u8(q, m4));
        let hi = vreinterpretq_s8_u8(vshrq_n_u8::<4>(q));
        // SAFETY: the caller guarantees `D`'s feature.
        let acc = unsafe { D::dot(D::dot(vdupq_n_s32(0), lo, ld_i8(&y.qs, 0)), hi, ld_i8(&y.qs, 16)) };
        let [dx, mx, dy, sy] = f16x4([x.d, x.m, y.d, y.s]);
        sumf = (vaddvq_s32(acc) as f32).mul_add(dx * dy, sumf);
        sumf = mx.mul_add(sy, sumf);
    }
    sumf
}
