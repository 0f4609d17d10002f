//! Q6_K x Q8_K with AVX2: 6-bit quants rebuilt from `ql`/`qh`, `maddubs` with activations (unsigned 0..64), `madd`
//! with the group scales, the `-32` offset applied once through the activation group sums (one `madd`); exact
//! integers per super-block and the same f32 update as the scalar twin, so results are bit-identical.

use std::arch::x86_64::*;

use super::BlockQ6K;
use crate::formats::q8_k::BlockQ8K;
use crate::x86::avx2::{f16_scale, hsum_i32, loadu256, simd_dot_entry};

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
        let mut q = [_mm256_setzero_si256(); 8];
        for h in 0..2 {
            let qh = loadu256(&wb.qh, 32 * h);
            let (ql0, ql1) = (loadu256(&wb.ql, 64 * h), loadu256(&wb.ql, 64 * h + 32));
            let lo = [ql0, ql1, _mm256_srli_epi16::<4>(ql0), _mm256_srli_epi16::<4>(ql1)];
            let hi = [qh, _mm256_srli_epi16::<2>(qh), _mm256_srli_epi16::<4>(qh), _mm256_srli_epi16::<6>(qh)];
            for k in 0..4 {
                let high = _mm256_slli_epi16::<4>(_mm256_and_si256(hi[k], m3));
                q[4 * h + k] = _mm256_or_si256(_mm256_and_si256(lo[k], m4), high);
            }
        }
        // The 16 scales as i16 (lane g = scale g), and scales 0..8 / 8..16 in both 128-bit halves.
        // SAFETY: `scales` is 16 readable bytes; the load is unaligned.
        let sc16 = _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(wb.scales.as_ptr().cast()) });
        let halves =
            [_mm256_permute2x128_si256::<0x00>(sc16, sc16), _mm256_permute2x128_si256::<0x11>(sc16, sc16)];
        let d = f16_scale(wb.d);
        for r in 0..N {
            let ab = &rows[r][b];
            let mut sumi = _mm256_setzero_si256();
            for (i, qi) in q.iter().enumerate() {
                // Quarter i covers groups 2i (low 16 elements) and 2i + 1: their scales' bytes broadcast per half.
                let (g0, g1) = ((2 * i % 8) as u8, (2 * i % 8 + 1) as u8);
                let pick = _mm256_set_m128i(
                    _mm_set1_epi16(i16::from_le_bytes([2 * g1, 2 * g1 + 1])),
                    _mm_set1_epi16(i16::from_le_bytes([2 * g0, 2 * g0 + 1])),
                );
                let sc = _mm256_shuffle_epi8(halves[i / 4], pick);
                let p16 = _mm256_maddubs_epi16(*qi, loadu256(&ab.qs, 32 * i));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p16, sc));
            }
            // SAFETY: `bsums` is 32 readable bytes; the load is unaligned.
            let bs = unsafe { _mm256_loadu_si256(ab.bsums.as_ptr().cast()) };
            let offset = _mm256_madd_epi16(sc16, bs);
            sumf[r] += d * ab.d() * (hsum_i32(sumi) - 32 * hsum_i32(offset)) as f32;
        }
    }
    sumf
}
