//! Q8_0 x Q8_0 with AVX-512 VNNI: two blocks per 512-bit vector; `vpdpbusd` of |w| with the activations carrying
//! the sign of w, one f32 FMA per block pair. An odd last block uses the AVX2 step.

use std::arch::x86_64::*;

use super::BlockQ8_0;
use crate::x86::avx2::{f16_table, hsum_ps, simd_dot_entry};
use crate::x86::avx512::{dot_u8_i8, load_pair_i8, splat_pair};

simd_dot_entry!("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni", BlockQ8_0, BlockQ8_0, row);

/// One weight row with `N` activation rows.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn row<const N: usize>(w: &[BlockQ8_0], a: &[&[BlockQ8_0]; N]) -> [f32; N] {
    let t = f16_table();
    let h = |x: [u8; 2]| t[usize::from(u16::from_le_bytes(x))];
    let mut acc = [_mm512_setzero_ps(); N];
    let mut tail = [_mm256_setzero_ps(); N];
    let mut b = 0;
    while b + 1 < w.len() {
        let (w0, w1) = (&w[b], &w[b + 1]);
        let qw = load_pair_i8(&w0.qs, &w1.qs);
        // |w| as unsigned bytes (|-128| = 128 is exact as u8) and the sign of w moved onto the activations.
        let abs_w = _mm512_abs_epi8(qw);
        let neg = _mm512_movepi8_mask(qw);
        let (dw0, dw1) = (h(w0.d), h(w1.d));
        for r in 0..N {
            let (a0, a1) = (&a[r][b], &a[r][b + 1]);
            let qa = load_pair_i8(&a0.qs, &a1.qs);
            let signed_a = _mm512_mask_sub_epi8(qa, neg, _mm512_setzero_si512(), qa);
            let d = splat_pair(dw0 * h(a0.d), dw1 * h(a1.d));
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot_u8_i8(abs_w, signed_a)), d, acc[r]);
        }
        b += 2;
    }
    if b < w.len() {
        super::avx2::block(&w[b], a, b, &mut tail);
    }
    std::array::from_fn(|r| _mm512_reduce_add_ps(acc[r]) + hsum_ps(tail[r]))
}
