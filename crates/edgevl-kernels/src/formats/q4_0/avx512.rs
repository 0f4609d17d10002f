//! Q4_0 x Q8_0 with AVX-512 VNNI: two blocks per 512-bit vector; `vpdpbusd` of the unsigned nibbles with the
//! activations, minus `8 * sum(a)` (also by `vpdpbusd`), one f32 FMA per block pair. An odd last block uses the
//! AVX2 step.

use std::arch::x86_64::*;

use super::BlockQ4_0;
use crate::formats::q8_0::BlockQ8_0;
use crate::x86::avx2::{f16_table, hsum_ps, simd_dot_entry};
use crate::x86::avx512::{dot_u8_i8, load_pair_i8, nibbles_pair, splat_pair};

simd_dot_entry!("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni", BlockQ4_0, BlockQ8_0, row, row2);

/// One weight row with `N` activation rows.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn row<const N: usize>(w: &[BlockQ4_0], a: &[&[BlockQ8_0]; N]) -> [f32; N] {
    let t = f16_table();
    let h = |x: [u8; 2]| t[usize::from(u16::from_le_bytes(x))];
    let eights = _mm512_set1_epi8(8);
    let mut acc = [_mm512_setzero_ps(); N];
    let mut tail = [_mm256_setzero_ps(); N];
    let mut b = 0;
    while b + 1 < w.len() {
        let (w0, w1) = (&w[b], &w[b + 1]);
        let qw = nibbles_pair(&w0.qs, &w1.qs);
        let (dw0, dw1) = (h(w0.d), h(w1.d));
        for r in 0..N {
            let (a0, a1) = (&a[r][b], &a[r][b + 1]);
            let qa = load_pair_i8(&a0.qs, &a1.qs);
            let sumi = _mm512_sub_epi32(dot_u8_i8(qw, qa), dot_u8_i8(eights, qa));
            let d = splat_pair(dw0 * h(a0.d), dw1 * h(a1.d));
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi), d, acc[r]);
        }
        b += 2;
    }
    if b < w.len() {
        super::avx2::block(&w[b], a, b, &mut tail);
    }
    std::array::from_fn(|r| _mm512_reduce_add_ps(acc[r]) + hsum_ps(tail[r]))
}

/// Two weight rows with `N` activation rows: each output is computed exactly as [`row`] computes it (same
/// operations in the same order), but the activation loads and their `8 * sum(a)` are shared by the two rows.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn row2<const N: usize>(w0: &[BlockQ4_0], w1: &[BlockQ4_0], a: &[&[BlockQ8_0]; N]) -> ([f32; N], [f32; N]) {
    let t = f16_table();
    let h = |x: [u8; 2]| t[usize::from(u16::from_le_bytes(x))];
    let eights = _mm512_set1_epi8(8);
    let mut acc0 = [_mm512_setzero_ps(); N];
    let mut acc1 = [_mm512_setzero_ps(); N];
    let (mut tail0, mut tail1) = ([_mm256_setzero_ps(); N], [_mm256_setzero_ps(); N]);
    let nb = w0.len().min(w1.len());
    let mut b = 0;
    while b + 1 < nb {
        let (x0, x1, y0, y1) = (&w0[b], &w0[b + 1], &w1[b], &w1[b + 1]);
        let (qx, qy) = (nibbles_pair(&x0.qs, &x1.qs), nibbles_pair(&y0.qs, &y1.qs));
        let (dx0, dx1, dy0, dy1) = (h(x0.d), h(x1.d), h(y0.d), h(y1.d));
        for r in 0..N {
            let (a0, a1) = (&a[r][b], &a[r][b + 1]);
            let qa = load_pair_i8(&a0.qs, &a1.qs);
            let (da0, da1) = (h(a0.d), h(a1.d));
            let s8 = dot_u8_i8(eights, qa);
            let sx = _mm512_sub_epi32(dot_u8_i8(qx, qa), s8);
            let sy = _mm512_sub_epi32(dot_u8_i8(qy, qa), s8);
            acc0[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sx), splat_pair(dx0 * da0, dx1 * da1), acc0[r]);
            acc1[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sy), splat_pair(dy0 * da0, dy1 * da1), acc1[r]);
        }
        b += 2;
    }
    if b < nb {
        super::avx2::block(&w0[b], a, b, &mut tail0);
        super::avx2::block(&w1[b], a, b, &mut tail1);
    }
    (
        std::array::from_fn(|r| _mm512_reduce_add_ps(acc0[r]) + hsum_ps(tail0[r])),
        std::array::from_fn(|r| _mm512_reduce_add_ps(acc1[r]) + hsum_ps(tail1[r])),
    )
}
