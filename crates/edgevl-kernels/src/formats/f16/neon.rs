//! F16 x F16 dot products with NEON (the shared float kernel [`crate::aarch64::neon::dot_floats`]) and the f16
//! activation converter (`fcvtn`: round to nearest even, bit-identical to the scalar one).

use std::arch::aarch64::*;

use crate::aarch64::neon::{dot_floats, f32_to_f16x4, ld_f32, FLOAT_F16};
use crate::formats::f32_to_f16;

/// Table entry ([`crate::dispatch::DotFn`]). Only installed after NEON was detected.
pub(crate) fn dot(
    w: &[u8],
    w_row_bytes: usize,
    acts: &[u8],
    act_row_bytes: usize,
    n_act: usize,
    out: &mut [f32],
) {
    dot_floats::<FLOAT_F16>(w, w_row_bytes, acts, act_row_bytes, n_act, out);
}

/// Table entry ([`crate::dispatch::QuantizeFn`]) for f16 activations. Only installed after NEON was detected.
pub(crate) fn quantize(x: &[f32], out: &mut [u8]) {
    // SAFETY: NEON is the aarch64 baseline (and was detected).
    unsafe { quantize_neon(x, out) }
}

#[target_feature(enable = "neon")]
fn quantize_neon(x: &[f32], out: &mut [u8]) {
    let n = x.len().min(out.len() / 2);
    let main = n - n % 4;
    for (e, o) in (0..main).step_by(4).zip(out.chunks_exact_mut(8)) {
        let h = vreinterpret_u8_u16(f32_to_f16x4(ld_f32(x, e)));
        // SAFETY: `o` is 8 writable bytes.
        unsafe { vst1_u8(o.as_mut_ptr(), h) };
    }
    for (v, o) in x[main..n].iter().zip(out[2 * main..].chunks_exact_mut(2)) {
        o.copy_from_slice(&f32_to_f16(*v));
    }
}
