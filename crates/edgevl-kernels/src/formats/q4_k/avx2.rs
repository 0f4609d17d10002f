//! Q4_K x Q8_K with AVX2: per super-block, exact integer sums (`maddubs` of nibbles with activations, `madd` with
//! the 6-bit group scales), then one f32 update per block exactly as the scalar twin, so results are bit-identical.

use std::arch::x86_64::*;

use super::BlockQ4K;
use crate::formats::{f16_to_f32, q8_k::BlockQ8K};
use crate::x86::avx2::{hsum_i32, loadu256, simd_dot_entry};

simd_dot_entry!("avx2,fma,f16c", BlockQ4K, BlockQ8K, row);

/// One weight row with `N` activation rows.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn row<const N: usize>(w: &[BlockQ4K], rows: &[&[BlockQ8K]; N]) -> [f32; N] {
    let mut sumf = [0f32; N];
    let m4 = _mm256_set1_epi8(0x0f);
    for (b, wb) in w.iter().enumerate() {
        let sm: [(u8, u8); 8] = std::array::from_fn(|g| wb.scale_min(g));
        let q: [__m256i; 8] = std::array::from_fn(|g| {
            let raw = loadu256(&wb.qs, 32 * (g / 2));
            if g % 2 == 0 {
                _mm256_and_si256(raw, m4)
            } else {
                _mm256_and_si256(_mm256_srli_epi16::<4>(raw), m4)
            }
        });
        let (d, dmin) = (f16_to_f32(wb.d), f16_to_f32(wb.dmin));
        for r in 0..N {
            let ab = &rows[r][b];
            let mut sumi = _mm256_setzero_si256();
            let mut mins = 0i32;
            for g in 0..8 {
                let p16 = _mm256_maddubs_epi16(q[g], loadu256(&ab.qs, 32 * g));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p16, _mm256_set1_epi16(i16::from(sm[g].0))));
                mins += i32::from(sm[g].1) * (ab.bsum(2 * g) + ab.bsum(2 * g + 1));
            }
            let dy = ab.d();
            sumf[r] += d * dy * hsum_i32(sumi) as f32 - dmin * dy * mins as f32;
        }
    }
    sumf
}
