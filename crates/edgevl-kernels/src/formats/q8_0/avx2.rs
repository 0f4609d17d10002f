//! Q8_0 x Q8_0 with AVX2, and ggml-cpu's x86 Q8_0 activation quantiser.

use std::arch::x86_64::*;

use super::{BlockQ8_0, QK8_0};
use crate::dispatch::QuantizeFn;
use crate::formats::{as_blocks_mut, f32_to_f16};
use crate::x86::avx2::{dot_i8, even_odd_row, f16_table, load32_i8, simd_dot_entry};
use crate::x86::Avx2;

simd_dot_entry!("avx2,fma,f16c", BlockQ8_0, BlockQ8_0, row);

/// One weight row with `N` activation rows ([`even_odd_row`]).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn row<const N: usize>(w: &[BlockQ8_0], a: &[&[BlockQ8_0]; N]) -> [f32; N] {
    even_odd_row(w, |wb, b, acc| block(wb, a, b, acc))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn block<const N: usize>(wb: &BlockQ8_0, a: &[&[BlockQ8_0]; N], b: usize, acc: &mut [__m256; N]) {
    let qw = load32_i8(&wb.qs);
    let t = f16_table();
    let dw = t[usize::from(u16::from_le_bytes(wb.d))];
    for r in 0..N {
        let ab = &a[r][b];
        let prod = _mm256_cvtepi32_ps(dot_i8(qw, load32_i8(&ab.qs)));
        acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dw * t[usize::from(u16::from_le_bytes(ab.d))]), prod, acc[r]);
    }
}

/// Table entry ([`QuantizeFn`]) for Q8_0 activations, handed out only for the proof that the CPU has AVX2, FMA and
/// F16C.
pub(crate) fn quantize(_: Avx2) -> QuantizeFn {
    quantize_entry
}

/// The entry [`quantize`] hands out.
fn quantize_entry(x: &[f32], out: &mut [u8]) {
    for (xb, b) in x.chunks_exact(QK8_0).zip(as_blocks_mut::<BlockQ8_0>(out)) {
        let xb: &[f32; QK8_0] = xb.try_into().unwrap_or_else(|_| unreachable!("chunks_exact"));
        // SAFETY: `quantize_entry` is private and only handed out by `quantize`, whose argument proves the
        // features `quantize_block` is compiled with.
        let (d, _) = unsafe { quantize_block(xb, &mut b.qs) };
        b.d = f32_to_f16(d);
    }
}

/// ggml-cpu's AVX2 `quantize_row_q8_0` for one block: `id = 127 / amax`, round half to even. Returns the f32
/// scale and the sum of the quants (Q8_1 needs it).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn quantize_block(x: &[f32; QK8_0], qs: &mut [i8; QK8_0]) -> (f32, i32) {
    // SAFETY: `x` holds 32 f32, read as four unaligned 8-lane loads.
    let v: [__m256; 4] = std::array::from_fn(|i| unsafe { _mm256_loadu_ps(x.as_ptr().add(8 * i)) });
    let sign = _mm256_set1_ps(-0.0);
    let mut m = _mm256_andnot_ps(sign, v[0]);
    for vi in &v[1..] {
        m = _mm256_max_ps(m, _mm256_andnot_ps(sign, *vi));
    }
    let mut m4 = _mm_max_ps(_mm256_extractf128_ps::<1>(m), _mm256_castps256_ps128(m));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    let amax = _mm_cvtss_f32(m4);
    let d = amax / 127.0;
    let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
    let i: [__m256i; 4] = std::array::from_fn(|k| {
        _mm256_cvtps_epi32(_mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_ps(v[k], id),
        ))
    });
    let sum = crate::x86::avx2::hsum_i32(_mm256_add_epi32(
        _mm256_add_epi32(i[0], i[1]),
        _mm256_add_epi32(i[2], i[3]),
    ));
    let p01 = _mm256_packs_epi32(i[0], i[1]);
    let p23 = _mm256_packs_epi32(i[2], i[3]);
    let p =
        _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p01, p23), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    // SAFETY: `qs` is 32 writable bytes; unaligned store.
    unsafe { _mm256_storeu_si256(qs.as_mut_ptr().cast(), p) };
    (d, sum)
}
