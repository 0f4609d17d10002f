//! F16 x F16 dot products with NEON (the shared float kernel [`crate::aarch64::neon::float_dot`]) and the f16
//! activation converter (`fcvtn`: round to nearest even, bit-identical to the scalar one).

use std::arch::aarch64::*;

use crate::aarch64::neon::{f32_to_f16x4, float_dot, ld_f32, FLOAT_F16};
use crate::aarch64::Neon;
use crate::dispatch::{DotFn, QuantizeFn};
use crate::formats::f32_to_f16;

/// Table entry ([`DotFn`]), handed out only for a NEON proof.
pub(crate) fn dot(t: Neon) -> DotFn {
    float_dot::<FLOAT_F16>(t)
}

/// Table entry ([`QuantizeFn`]) for f16 activations, handed out only for a NEON proof.
pub(crate) fn quantize(_: Neon) -> QuantizeFn {
    quantize_entry
}

/// The entry [`quantize`] hands out.
fn quantize_entry(x: &[f32], out: &mut [u8]) {
    // SAFETY: `quantize_entry` is private and only handed out by `quantize`, whose argument proves NEON.
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
