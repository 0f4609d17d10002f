//! Q4_K x Q8_K with AVX2: per super-block, exact integer sums (`maddubs` of nibbles with activations, `madd` with
//! the 6-bit group scales; the minimums' term from the activation group sums with one `madd`), then one f32 update
//! per block exactly as the scalar twin, so results are bit-identical.

use std::arch::x86_64::*;

use super::BlockQ4K;
use crate::formats::q8_k::BlockQ8K;
use crate::x86::avx2::{f16_scale, hsum_i32, loadu256, simd_dot_entry};

simd_dot_entry!("avx2,fma,f16c", BlockQ4K, BlockQ8K, row);

/// One weight row with `N` activation rows.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn row<const N: usize>(w: &[BlockQ4K], rows: &[&[BlockQ8K]; N]) -> [f32; N] {
    let mut sumf = [0f32; N];
    let m4 = _mm256_set1_epi8(0x0f);
    for (b, wb) in w.iter().enumerate() {
        // 8 scales then 8 minimums as i16; the scales' 128-bit half in both halves, for the per-group broadcast.
        let sm = wb.scales_mins();
        // SAFETY: `sm` is 16 readable bytes; the load is unaligned.
        let sm16 = _mm256_cvtepu8_epi16(unsafe { _mm_loadu_si128(sm.as_ptr().cast()) });
        let sc = _mm256_permute2x128_si256::<0x00>(sm16, sm16);
        let mins = _mm256_extracti128_si256::<1>(sm16);
        let mut q = [_mm256_setzero_si256(); 8];
        for k in 0..4 {
            let raw = loadu256(&wb.qs, 32 * k);
            q[2 * k] = _mm256_and_si256(raw, m4);
            q[2 * k + 1] = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), m4);
        }
        let (d, dmin) = (f16_scale(wb.d), f16_scale(wb.dmin));
        for r in 0..N {
            let ab = &rows[r][b];
            let mut sumi = _mm256_setzero_si256();
            for (g, qg) in q.iter().enumerate() {
                // Scale g (i16 lane g of each half) broadcast: shuffle bytes 2g, 2g + 1 into every i16 lane.
                let pick = _mm256_set1_epi16(i16::from_le_bytes([2 * g as u8, 2 * g as u8 + 1]));
                let p16 = _mm256_maddubs_epi16(*qg, loadu256(&ab.qs, 32 * g));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p16, _mm256_shuffle_epi8(sc, pick)));
            }
            // SAFETY: `bsums` is 32 readable bytes; the load is unaligned.
            let bs = unsafe { _mm256_loadu_si256(ab.bsums.as_ptr().cast()) };
            // Group sums (16 elements each) paired into the 8 groups of 32 the minimums apply to.
            let g32 = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256::<1>(bs));
            let m = _mm_madd_epi16(mins, g32);
            let m = _mm_add_epi32(m, _mm_unpackhi_epi64(m, m));
            let m = _mm_cvtsi128_si32(_mm_add_epi32(m, _mm_shuffle_epi32::<0b01>(m)));
            let dy = ab.d();
            sumf[r] += d * dy * hsum_i32(sumi) as f32 - dmin * dy * m as f32;
        }
    }
    sumf
}
