//! Q5_0 x Q8_0 with NEON: the fifth bits spread to bytes, `q - 16` as signed bytes, exact integer sums of 4
//! consecutive elements per lane, one FMA per block into even/odd 8-lane accumulators: the order of
//! [`crate::formats::Lanes8`], so bit-identical to the scalar twin.

use std::arch::aarch64::*;

use super::BlockQ5_0;
use crate::aarch64::neon::{f16x4, hsum8_f32, ld_i8, ld_u8, neon_dot_entry, I8Dot};
use crate::formats::q8_0::BlockQ8_0;

neon_dot_entry!(BlockQ5_0, BlockQ8_0, row);

/// One weight row with one activation row.
///
/// # Safety
/// `D`'s CPU feature is available.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn row<D: I8Dot>(w: &[BlockQ5_0], a: &[BlockQ8_0]) -> f32 {
    let zero = vdupq_n_f32(0.0);
    let (mut even, mut odd) = ([zero; 2], [zero; 2]);
    let mut b = 0;
    // SAFETY (both calls): the caller guarantees `D`'s feature.
    while b + 1 < w.len() {
        unsafe {
            block::<D>(&w[b], &a[b], &mut even);
            block::<D>(&w[b + 1], &a[b + 1], &mut odd);
        }
        b += 2;
    }
    if b < w.len() {
        unsafe { block::<D>(&w[b], &a[b], &mut even) };
    }
    hsum8_f32(vaddq_f32(even[0], odd[0]), vaddq_f32(even[1], odd[1]))
}

/// Adds the lane sums of one block times its scale into `acc` (lanes 0..4, 4..8).
///
/// # Safety
/// `D`'s CPU feature is available.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn block<D: I8Dot>(x: &BlockQ5_0, y: &BlockQ8_0, acc: &mut [float32x4_t; 2]) {
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
    let (slo, shi) = unsafe { (D::lanes(lo, ld_i8(&y.qs, 0)), D::lanes(hi, ld_i8(&y.qs, 16))) };
    let [dx, dy, _, _] = f16x4([x.d, y.d, [0; 2], [0; 2]]);
    let d = vdupq_n_f32(dx * dy);
    acc[0] = vfmaq_f32(acc[0], vcvtq_f32_s32(slo), d);
    acc[1] = vfmaq_f32(acc[1], vcvtq_f32_s32(shi), d);
}
