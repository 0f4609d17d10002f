//! Q5_0 x Q8_0 with AVX2: the fifth bits spread to bytes (ggml's `bytes_from_bits_32`), `q - 16` as signed bytes,
//! the sign trick + `maddubs` for the exact integer sum of each block, then one scalar FMA per block: the scalar
//! twin's sequence, so bit-identical to it.

use std::arch::x86_64::*;

use super::BlockQ5_0;
use crate::formats::q8_0::BlockQ8_0;
use crate::x86::avx2::{dot_i8, f16_scale, hsum_i32, load16, load32_i8, nibbles, simd_dot_entry};

simd_dot_entry!("avx2,fma,f16c", BlockQ5_0, BlockQ8_0, row);

/// One weight row with `N` activation rows: per block the exact integer sum, then `acc = fma(sumi, d_w * d_a, acc)`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn row<const N: usize>(w: &[BlockQ5_0], a: &[&[BlockQ8_0]; N]) -> [f32; N] {
    let mut acc = [0f32; N];
    for (b, wb) in w.iter().enumerate() {
        let qw = signed_quants(wb);
        let dw = f16_scale(wb.d);
        for (acc, a) in acc.iter_mut().zip(a) {
            let sumi = hsum_i32(dot_i8(qw, load32_i8(&a[b].qs)));
            *acc = (sumi as f32).mul_add(dw * f16_scale(a[b].d), *acc);
        }
    }
    acc
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
