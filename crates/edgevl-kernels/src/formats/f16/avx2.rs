//! F16 x F16 dot products with AVX2 + FMA (the shared float kernel of [`crate::x86::avx2::dot_floats`]).

use crate::x86::avx2::{dot_floats, FLOAT_F16};

/// Table entry ([`crate::dispatch::DotFn`]). Only installed after AVX2, FMA and F16C were detected.
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
