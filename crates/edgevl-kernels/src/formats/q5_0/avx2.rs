//! Q5_0 x Q8_0 with AVX2: the fifth bits spread to bytes (ggml's `bytes_from_bits_32`), `q - 16` as signed bytes,
//! the sign trick + `maddubs` for exact integer sums of 4 consecutive elements per lane, then one FMA per block
//! into even/odd 8-lane accumulators: the order of [`crate::formats::Lanes8`], so bit-identical to the scalar twin.

use std::arch::x86_64::*;

use super::BlockQ5_0;
use crate::formats::q8_0::BlockQ8_0;
use crate::x86::avx2::{dot_i8, even_odd_row, f16_scale, load16, load32_i8, nibbles, simd_dot_entry};

simd_dot_entry!("avx2,fma,f16c", BlockQ5_0, BlockQ8_0, row);

/// One weight row with `N` activation rows ([`even_odd_row`]).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn row<const N: usize>(w: &[BlockQ5_0], a: &[&[BlockQ8_0]; N]) -> [f32; N] {
    even_odd_row(w, |wb, b, acc| block(wb, a, b, acc))
}

/// Adds block `b` of every activation row times weight block `wb` into `acc`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn block<const N: usize>(wb: &BlockQ5_0, a: &[&[BlockQ8_0]; N], b: usize, acc: &mut [__m256; N]) {
    let qw = signed_quants(wb);
    let dw = f16_scale(wb.d);
    for r in 0..N {
        let ab = &a[r][b];
        let prod = _mm256_cvtepi32_ps(dot_i8(qw, load32_i8(&ab.qs)));
        acc[r] = _mm256_fmadd_ps(prod, _mm256_set1_ps(dw * f16_scale(ab.d)), acc[r]);
    }
}

/// The block's 32 values `q - 16` (-16..=15) as signed bytes in element order.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn signed_quants(wb: &BlockQ5_0) -> __m256i {
    // Byte j of the broadcast word's byte j / 8, tested against bit j % 8: 0xff where bit j of qh is set.
    let qh = i32::from_le_bytes(wb.qh);
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(qh),
        _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0),
    );
    let bit = _mm256_set1_epi64x(0x8040201008040201u64 as i64);
    let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
    // A clear fifth bit means q - 16 = nibble - 16: the nibble with its high bits set (two's complement).
    _mm256_or_si256(nibbles(load16(&wb.qs)), _mm256_andnot_si256(set, _mm256_set1_epi8(0xf0u8 as i8)))
}
