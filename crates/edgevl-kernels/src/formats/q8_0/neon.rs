//! Q8_0 x Q8_0 with NEON (exact integer block sums, the scalar twin's f32 update: bit-identical results), and the
//! Q8_0 activation quantiser (ggml-cpu's x86 rounding, bit-identical to the scalar one).

use std::arch::aarch64::*;

use super::{BlockQ8_0, QK8_0};
use crate::aarch64::neon::{f16x4, ld_f32, ld_i8, neon_dot_entry, I8Dot};
use crate::aarch64::Neon;
use crate::dispatch::QuantizeFn;
use crate::formats::{as_blocks_mut, f32_to_f16};

neon_dot_entry!(BlockQ8_0, BlockQ8_0, row);

/// One weight row with one activation row.
///
/// # Safety
/// `D`'s CPU feature is available.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn row<D: I8Dot>(w: &[BlockQ8_0], a: &[BlockQ8_0]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        // SAFETY: the caller guarantees `D`'s feature.
        let acc = unsafe {
            let acc = D::dot(vdupq_n_s32(0), ld_i8(&x.qs, 0), ld_i8(&y.qs, 0));
            D::dot(acc, ld_i8(&x.qs, 16), ld_i8(&y.qs, 16))
        };
        let [dx, dy, _, _] = f16x4([x.d, y.d, [0; 2], [0; 2]]);
        sumf = (vaddvq_s32(acc) as f32).mul_add(dx * dy, sumf);
    }
    sumf
}

/// Table entry ([`QuantizeFn`]) for Q8_0 activations, handed out only for a NEON proof.
pub(crate) fn quantize(_: Neon) -> QuantizeFn {
    quantize_entry
}

/// The entry [`quantize`] hands out.
fn quantize_entry(x: &[f32], out: &mut [u8]) {
    for (xb, b) in x.chunks_exact(QK8_0).zip(as_blocks_mut::<BlockQ8_0>(out)) {
        // SAFETY: `quantize_entry` is private and only handed out by `quantize`, whose argument proves NEON.
        let (d, _) = unsafe { quantize_block(xb, &mut b.qs) };
        b.d = f32_to_f16(d);
    }
}

/// One activation block as ggml-cpu's x86 `quantize_row_q8_0`: `id = 127 / amax`, round half to even. Returns the
/// f32 scale and the sum of the quants (Q8_1 needs it).
///
/// # Panics
/// If `x` is shorter than a block.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn quantize_block(x: &[f32], qs: &mut [i8; QK8_0]) -> (f32, i32) {
    let v: [float32x4_t; 8] = std::array::from_fn(|i| ld_f32(x, 4 * i));
    // `vmaxnm` ignores NaN as `f32::max` does.
    let m = v.iter().fold(vdupq_n_f32(0.0), |m, vi| vmaxnmq_f32(m, vabsq_f32(*vi)));
    let amax = vmaxnmvq_f32(m);
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    // Round to nearest, ties to even (FCVTNS), as `round_ties_even`.
    let i: [int32x4_t; 8] = std::array::from_fn(|k| vcvtnq_s32_f32(vmulq_n_f32(v[k], id)));
    let sum = vaddvq_s32(i.iter().fold(vdupq_n_s32(0), |s, ik| vaddq_s32(s, *ik)));
    for (k, q) in qs.chunks_exact_mut(16).enumerate() {
        let i16s: [int16x8_t; 2] = std::array::from_fn(|h| {
            vcombine_s16(vqmovn_s32(i[4 * k + 2 * h]), vqmovn_s32(i[4 * k + 2 * h + 1]))
        });
        let bytes = vcombine_s8(vqmovn_s16(i16s[0]), vqmovn_s16(i16s[1]));
        // SAFETY: `q` is 16 writable bytes (a chunk of the 32-byte array).
        unsafe { vst1q_s8(q.as_mut_ptr(), bytes) };
    }
    (d, sum)
}
