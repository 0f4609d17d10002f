//! Q4_0 x Q8_0 with AVX2 (ggml's AVX2 method: sign trick + `maddubs`, one f32 FMA per block).

use std::arch::x86_64::*;

use super::BlockQ4_0;
use crate::formats::q8_0::BlockQ8_0;
use crate::x86::avx2::{dot_i8, f16_table, hsum_ps, load16, load32_i8, nibbles, simd_dot_entry};

simd_dot_entry!("avx2,fma,f16c", BlockQ4_0, BlockQ8_0, row);

/// One weight row with `N` activation rows; even and odd blocks use separate accumulators (FMA latency).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn row<const N: usize>(w: &[BlockQ4_0], a: &[&[BlockQ8_0]; N]) -> [f32; N] {
    let (mut even, mut odd) = ([_mm256_setzero_ps(); N], [_mm256_setzero_ps(); N]);
    let mut b = 0;
    while b + 1 < w.len() {
        block(&w[b], a, b, &mut even);
        block(&w[b + 1], a, b + 1, &mut odd);
        b += 2;
    }
    if b < w.len() {
        block(&w[b], a, b, &mut even);
    }
    std::array::from_fn(|r| hsum_ps(_mm256_add_ps(even[r], odd[r])))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn block<const N: usize>(wb: &BlockQ4_0, a: &[&[BlockQ8_0]; N], b: usize, acc: &mut [__m256; N]) {
    let qw = _mm256_sub_epi8(nibbles(load16(&wb.qs)), _mm256_set1_epi8(8));
    let t = f16_table();
    let dw = t[usize::from(u16::from_le_bytes(wb.d))];
    for r in 0..N {
        let ab = &a[r][b];
        let prod = _mm256_cvtepi32_ps(dot_i8(qw, load32_i8(&ab.qs)));
        acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dw * t[usize::from(u16::from_le_bytes(ab.d))]), prod, acc[r]);
    }
}
