//! AVX-512 (F/BW/VL/VNNI) building blocks: two 32-element blocks per 512-bit vector, `vpdpbusd` dot products.
//!
//! Every function here carries the full AVX-512 feature list of [`crate::x86::has_avx512_vnni`] and must only be
//! called from code compiled with it, which only runs after detection.

use std::arch::x86_64::*;

use crate::x86::avx2::{load16, load32_i8};

/// The nibbles of two Q4 blocks' 16 quant bytes as unsigned bytes (0..16), laid out like two activation blocks
/// side by side: `[lo0 | hi0 | lo1 | hi1]` (128-bit lanes), i.e. elements 0..32 of block 0 then of block 1.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) fn nibbles_pair(q0: &[u8; 16], q1: &[u8; 16]) -> __m512i {
    let x = _mm256_set_m128i(load16(q1), load16(q0));
    let m = _mm256_set1_epi8(0x0f);
    let lo = _mm256_and_si256(x, m);
    let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(x), m);
    let z = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
    _mm512_shuffle_i64x2::<0b11_01_10_00>(z, z)
}

/// Two blocks' 32 signed quants side by side: `[q0 | q1]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) fn load_pair_i8(q0: &[i8; 32], q1: &[i8; 32]) -> __m512i {
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(load32_i8(q0)), load32_i8(q1))
}

/// `[x0; 8] ++ [x1; 8]`: one scale per block of a pair.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) fn splat_pair(x0: f32, x1: f32) -> __m512 {
    let lo = _mm512_castps_pd(_mm512_castps256_ps512(_mm256_set1_ps(x0)));
    _mm512_castpd_ps(_mm512_insertf64x4::<1>(lo, _mm256_castps_pd(_mm256_set1_ps(x1))))
}

/// Sum of 16 i32 lanes of products of unsigned bytes `u` with signed bytes `s`, in groups of 4 (`vpdpbusd`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) fn dot_u8_i8(u: __m512i, s: __m512i) -> __m512i {
    _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, s)
}

/// The 16 x 16 transpose of `r` (vector `i` of the result holds lane `i` of each `r[l]`): 32-bit then 64-bit unpacks
/// within 128-bit lanes, then two rounds of 128-bit lane shuffles.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) fn transpose16(r: &[__m512; 16]) -> [__m512; 16] {
    // t[2k], t[2k + 1]: rows 2k and 2k + 1 interleaved, lane q holding their columns 4q, 4q + 1 (lo) or 4q + 2,
    // 4q + 3 (hi).
    let t: [__m512; 16] = std::array::from_fn(|n| {
        let (a, b) = (r[n & !1], r[n | 1]);
        if n % 2 == 0 {
            _mm512_unpacklo_ps(a, b)
        } else {
            _mm512_unpackhi_ps(a, b)
        }
    });
    // x[4g + c]: lane q holds column 4q + c of rows 4g..4g + 4.
    let x: [__m512; 16] = std::array::from_fn(|n| {
        let (g, c) = (n / 4, n % 4);
        let (a, b) = (_mm512_castps_pd(t[4 * g + c / 2]), _mm512_castps_pd(t[4 * g + 2 + c / 2]));
        _mm512_castpd_ps(if c % 2 == 0 { _mm512_unpacklo_pd(a, b) } else { _mm512_unpackhi_pd(a, b) })
    });
    // Column 4q + c: lane q of x[c], x[4 + c], x[8 + c], x[12 + c].
    let mut out = [_mm512_setzero_ps(); 16];
    for c in 0..4 {
        let y0 = _mm512_shuffle_f32x4::<0x44>(x[c], x[4 + c]);
        let y1 = _mm512_shuffle_f32x4::<0xEE>(x[c], x[4 + c]);
        let y2 = _mm512_shuffle_f32x4::<0x44>(x[8 + c], x[12 + c]);
        let y3 = _mm512_shuffle_f32x4::<0xEE>(x[8 + c], x[12 + c]);
        out[c] = _mm512_shuffle_f32x4::<0x88>(y0, y2);
        out[4 + c] = _mm512_shuffle_f32x4::<0xDD>(y0, y2);
        out[8 + c] = _mm512_shuffle_f32x4::<0x88>(y1, y3);
        out[12 + c] = _mm512_shuffle_f32x4::<0xDD>(y1, y3);
    }
    out
}
