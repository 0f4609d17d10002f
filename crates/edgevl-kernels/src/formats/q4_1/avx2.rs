//! Q4_1 x Q8_1 with AVX2 (`maddubs` of unsigned nibbles with signed activations, one f32 FMA per block, plus
//! the `m * s` term of each block as ggml does).

use std::arch::x86_64::*;

use super::BlockQ4_1;
use crate::formats::q8_1::BlockQ8_1;
use crate::x86::avx2::{dot_u8_i8, f16_table, hsum_ps, load16, load32_i8, nibbles, simd_dot_entry};

simd_dot_entry!("avx2,fma,f16c", BlockQ4_1, BlockQ8_1, row);

/// One weight row with `N` activation rows; even and odd blocks use separate accumulators (FMA latency).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn row<const N: usize>(w: &[BlockQ4_1], a: &[&[BlockQ8_1]; N]) -> [f32; N] {
    let (mut even, mut odd) = ([_mm256_setzero_ps(); N], [_mm256_setzero_ps(); N]);
    let (mut summs_even, mut summs_odd) = ([0f32; N], [0f32; N]);
    let mut b = 0;
    while b + 1 < w.len() {
        block(&w[b], a, b, &mut even, &mut summs_even);
        block(&w[b + 1], a, b + 1, &mut odd, &mut summs_odd);
        b += 2;
    }
    if b < w.len() {
        block(&w[b], a, b, &mut even, &mut summs_even);
    }
    std::array::from_fn(|r| hsum_ps(_mm256_add_ps(even[r], odd[r])) + (summs_even[r] + summs_odd[r]))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn block<const N: usize>(
    wb: &BlockQ4_1,
    a: &[&[BlockQ8_1]; N],
    b: usize,
    acc: &mut [__m256; N],
    summs: &mut [f32; N],
) {
    let qw = nibbles(load16(&wb.qs));
    let t = f16_table();
    let h = |x: [u8; 2]| t[usize::from(u16::from_le_bytes(x))];
    let (dw, mw) = (h(wb.d), h(wb.m));
    for r in 0..N {
        let ab = &a[r][b];
        let prod = _mm256_cvtepi32_ps(dot_u8_i8(qw, load32_i8(&ab.qs)));
        acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dw * h(ab.d)), prod, acc[r]);
        summs[r] += mw * h(ab.s);
    }
}
