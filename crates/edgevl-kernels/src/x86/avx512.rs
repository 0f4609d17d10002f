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
