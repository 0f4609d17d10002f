//! Q6_K x Q8_K with AVX2: 6-bit quants rebuilt from `ql`/`qh`, `maddubs` with activations (unsigned 0..64), `madd`
//! with the group scales, the `-32` offset applied once through the activation group sums; exact integers per
//! super-block and the same f32 update as the scalar twin, so results are bit-identical.

use std::arch::x86_64::*;

use super::BlockQ6K;
use crate::formats::{f16_to_f32, q8_k::BlockQ8K};
use crate::x86::avx2::{hsum_i32, loadu256, simd_dot_entry};

simd_dot_entry!("avx2,fma,f16c", BlockQ6K, BlockQ8K, row);

/// One weight row with `N` activation rows.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn row<const N: usize>(w: &[BlockQ6K], rows: &[&[BlockQ8K]; N]) -> [f32; N] {
    let mut sumf = [0f32; N];
    let m4 = _mm256_set1_epi8(0x0f);
    let m3 = _mm256_set1_epi8(0x03);
    for (b, wb) in w.iter().enumerate() {
        // q[4h + k]: the 32 quants (0..64) of quarter k of half h, elements 128h + 32k ..
        let q: [__m256i; 8] = std::array::from_fn(|i| {
            let (h, k) = (i / 4, i % 4);
            let ql = loadu256(&wb.ql, 64 * h + 32 * (k % 2));
            let qh = loadu256(&wb.qh, 32 * h);
            let lo = if k < 2 { ql } else { _mm256_srli_epi16::<4>(ql) };
            let hi = match k {
                0 => qh,
                1 => _mm256_srli_epi16::<2>(qh),
                2 => _mm256_srli_epi16::<4>(qh),
                _ => _mm256_srli_epi16::<6>(qh),
            };
            _mm256_or_si256(_mm256_and_si256(lo, m4), _mm256_slli_epi16::<4>(_mm256_and_si256(hi, m3)))
        });
        let sc: [__m256i; 8] = std::array::from_fn(|i| {
            let g = 2 * i;
            _mm256_set_m128i(
                _mm_set1_epi16(i16::from(wb.scales[g + 1])),
                _mm_set1_epi16(i16::from(wb.scales[g])),
            )
        });
        let d = f16_to_f32(wb.d);
        for r in 0..N {
            let ab = &rows[r][b];
            let mut sumi = _mm256_setzero_si256();
            for i in 0..8 {
                let p16 = _mm256_maddubs_epi16(q[i], loadu256(&ab.qs, 32 * i));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p16, sc[i]));
            }
            let offset: i32 = (0..16).map(|g| i32::from(wb.scales[g]) * ab.bsum(g)).sum();
            sumf[r] += d * ab.d() * (hsum_i32(sumi) - 32 * offset) as f32;
        }
    }
    sumf
}
