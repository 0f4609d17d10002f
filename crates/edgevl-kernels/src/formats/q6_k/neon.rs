//! Q6_K x Q8_K with NEON: 6-bit quants rebuilt from `ql`/`qh` as signed bytes (`q - 32`), exact integer dots
//! weighted by the 16 group scales, then the scalar twin's f32 update per super-block: bit-identical results.

use std::arch::aarch64::*;

use super::BlockQ6K;
use crate::aarch64::neon::{ld_i8, ld_u8, neon_dot_entry, I8Dot};
use crate::formats::{f16_to_f32, q8_k::BlockQ8K};

neon_dot_entry!(BlockQ6K, BlockQ8K, row);

/// One weight row with one activation row.
///
/// # Safety
/// `D`'s CPU feature is available.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn row<D: I8Dot>(w: &[BlockQ6K], a: &[BlockQ8K]) -> f32 {
    let (m4, m3, k32) = (vdupq_n_u8(0x0f), vdupq_n_u8(0x03), vdupq_n_s8(32));
    let mut sumf = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let mut acc = vdupq_n_s32(0);
        // Elements 128h + 32k + 16s + (0..16): group 8h + 2k + s.
        for h in 0..2 {
            for s in 0..2 {
                let qh = ld_u8(&x.qh, 32 * h + 16 * s);
                let ql = [ld_u8(&x.ql, 64 * h + 16 * s), ld_u8(&x.ql, 64 * h + 32 + 16 * s)];
                for k in 0..4 {
                    let lo = if k < 2 { vandq_u8(ql[k], m4) } else { vshrq_n_u8::<4>(ql[k - 2]) };
                    let hi = match k {
                        0 => qh,
                        1 => vshrq_n_u8::<2>(qh),
                        2 => vshrq_n_u8::<4>(qh),
                        _ => vshrq_n_u8::<6>(qh),
                    };
                    let q = vorrq_u8(lo, vshlq_n_u8::<4>(vandq_u8(hi, m3)));
                    let q = vsubq_s8(vreinterpretq_s8_u8(q), k32);
                    let g = 8 * h + 2 * k + s;
                    // SAFETY: the caller guarantees `D`'s feature.
                    let isum = unsafe { D::dot(vdupq_n_s32(0), q, ld_i8(&y.qs, 16 * g)) };
                    acc = vmlaq_n_s32(acc, isum, i32::from(x.scales[g]));
                }
            }
        }
        sumf += f16_to_f32(x.d) * y.d() * vaddvq_s32(acc) as f32;
    }
    sumf
}
