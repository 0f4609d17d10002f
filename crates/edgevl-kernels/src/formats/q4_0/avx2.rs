//! Q4_0 x Q8_0 with AVX2 (ggml's AVX2 method: sign trick + `maddubs`, one f32 FMA per block).

use std::arch::x86_64::*;

use super::BlockQ4_0;
use crate::formats::q8_0::BlockQ8_0;
use crate::x86::avx2::{dot_i8, even_odd_row, f16_table, load16, load32_i8, nibbles, simd_dot_entry};

simd_dot_entry!("avx2,fma,f16c", BlockQ4_0, BlockQ8_0, row);

/// One weight row with `N` activation rows ([`even_odd_row`]).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn row<const N: usize>(w: &[BlockQ4_0], a: &[&[BlockQ8_0]; N]) -> [f32; N] {
    even_odd_row(w, |wb, b, acc| block(wb, a, b, acc))
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
