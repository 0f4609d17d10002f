//! Q4_K x Q8_K with NEON: per super-block, exact integer sums (nibble x activation dots weighted by the 6-bit group
//! scales), then one f32 update per super-block exactly as the scalar twin, so results are bit-identical.

use std::arch::aarch64::*;

use super::BlockQ4K;
use crate::aarch64::neon::{ld_i8, ld_u8, neon_dot_entry, I8Dot};
use crate::formats::{f16_to_f32, q8_k::BlockQ8K};

neon_dot_entry!(BlockQ4K, BlockQ8K, row);

/// One weight row with one activation row.
///
/// # Safety
/// `D`'s CPU feature is available.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn row<D: I8Dot>(w: &[BlockQ4K], a: &[BlockQ8K]) -> f32 {
    let m4 = vdupq_n_u8(0x0f);
    let mut sumf = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let mut acc = vdupq_n_s32(0);
        let mut mins = 0i32;
        for g in 0..8 {
            let (sc, m) = x.scale_min(g);
            let mut isum = vdupq_n_s32(0);
            for h in 0..2 {
                let raw = ld_u8(&x.qs, 32 * (g / 2) + 16 * h);
                let q = if g % 2 == 0 { vandq_u8(raw, m4) } else { vshrq_n_u8::<4>(raw) };
                // SAFETY: the caller guarantees `D`'s feature.
                isum = unsafe { D::dot(isum, vreinterpretq_s8_u8(q), ld_i8(&y.qs, 32 * g + 16 * h)) };
            }
            acc = vmlaq_n_s32(acc, isum, i32::from(sc));
            mins += i32::from(m) * (y.bsum(2 * g) + y.bsum(2 * g + 1));
        }
        let dy = y.d();
        sumf += f16_to_f32(x.d) * dy * vaddvq_s32(acc) as f32 - f16_to_f32(x.dmin) * dy * mins as f32;
    }
    sumf
}
