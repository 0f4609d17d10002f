//! Q5_0 x Q8_0 with NEON: the fifth bits spread to bytes, `q - 16` as signed bytes, the exact integer sum of each
//! block, then one scalar FMA per block: the scalar twin's sequence, so bit-identical to it.

use std::arch::aarch64::*;

use super::BlockQ5_0;
use crate::aarch64::neon::{f16x4, ld_i8, ld_u8, neon_dot_entry, I8Dot};
use crate::formats::q8_0::BlockQ8_0;

neon_dot_entry!(BlockQ5_0, BlockQ8_0, row);

/// One weight row with one activation row: per block the exact integer sum, then `acc = fma(sumi, d_w * d_a, acc)`.
///
/// # Safety
/// `D`'s CPU feature is available.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn row<D: I8Dot>(w: &[BlockQ5_0], a: &[BlockQ8_0]) -> f32 {
    let mut acc = 0f32;
    for (x, y) in w.iter().zip(a) {
        // SAFETY: the caller guarantees `D`'s feature.
        let sumi = unsafe { block_sum::<D>(x, y) };
        let [dx, dy, _, _] = f16x4([x.d, y.d, [0; 2], [0; 2]]);
        acc = (sumi as f32).mul_add(dx * dy, acc);
    }
    acc
}

/// The exact integer dot of one block, `sum((q - 16) * a)`.
///
/// # Safety
/// `D`'s CPU feature is available.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn block_sum<D: I8Dot>(x: &BlockQ5_0, y: &BlockQ8_0) -> i32 {
    let m4 = vdupq_n_u8(0x0f);
    let high = vdupq_n_u8(0xf0);
    // Byte j of a vector holding qh's bytes 2i (lanes 0..8) and 2i + 1 (lanes 8..16) tests bit j % 8.
    let bit = vcombine_u8(vcreate_u8(0x8040201008040201), vcreate_u8(0x8040201008040201));
    let spread = |i: usize| vcombine_u8(vdup_n_u8(x.qh[2 * i]), vdup_n_u8(x.qh[2 * i + 1]));
    let (set_lo, set_hi) = (vtstq_u8(spread(0), bit), vtstq_u8(spread(1), bit));
    let q = ld_u8(&x.qs, 0);
    // A clear fifth bit means q - 16 = nibble - 16: the nibble with its high bits set (two's complement).
    let lo = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(q, m4), vbicq_u8(high, set_lo)));
    let hi = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8::<4>(q), vbicq_u8(high, set_hi)));
    // SAFETY: the caller guarantees `D`'s feature.
    let s = unsafe { D::dot(D::dot(vdupq_n_s32(0), lo, ld_i8(&y.qs, 0)), hi, ld_i8(&y.qs, 16)) };
    vaddvq_s32(s)
}
