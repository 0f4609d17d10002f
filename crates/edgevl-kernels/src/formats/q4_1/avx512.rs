//! Q4_1 x Q8_1 with AVX-512 VNNI: two blocks per 512-bit vector; `vpdpbusd` of the unsigned nibbles with the
//! activations, one f32 FMA per block pair, plus each block's `m * s`. An odd last block uses the AVX2 step.

use std::arch::x86_64::*;

use super::BlockQ4_1;
use crate::formats::q8_1::BlockQ8_1;
use crate::x86::avx2::{f16_table, hsum_ps, simd_dot_entry};
use crate::x86::avx512::{dot_u8_i8, load_pair_i8, nibbles_pair, splat_pair};

simd_dot_entry!("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni", BlockQ4_1, BlockQ8_1, row);

/// One weight row with `N` activation rows.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn row<const N: usize>(w: &[BlockQ4_1], a: &[&[BlockQ8_1]; N]) -> [f32; N] {
    let t = f16_table();
    let h = |x: [u8; 2]| t[usize::from(u16::from_le_bytes(x))];
    let mut acc = [_mm512_setzero_ps(); N];
    let mut tail = [_mm256_setzero_ps(); N];
    let (mut summs0, mut summs1) = ([0f32; N], [0f32; N]);
    let mut b = 0;
    while b + 1 < w.len() {
        let (w0, w1) = (&w[b], &w[b + 1]);
        let qw = nibbles_pair(&w0.qs, &w1.qs);
        let (dw0, dw1, mw0, mw1) = (h(w0.d), h(w1.d), h(w0.m), h(w1.m));
        for r in 0..N {
            let (a0, a1) = (&a[r][b], &a[r][b + 1]);
            let qa = load_pair_i8(&a0.qs, &a1.qs);
            let d = splat_pair(dw0 * h(a0.d), dw1 * h(a1.d));
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot_u8_i8(qw, qa)), d, acc[r]);
            summs0[r] += mw0 * h(a0.s);
            summs1[r] += mw1 * h(a1.s);
        }
        b += 2;
    }
    if b < w.len() {
        super::avx2::block(&w[b], a, b, &mut tail, &mut summs0);
    }
    std::array::from_fn(|r| _mm512_reduce_add_ps(acc[r]) + hsum_ps(tail[r]) + (summs0[r] + summs1[r]))
}
