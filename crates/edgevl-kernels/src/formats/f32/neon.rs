//! F32 x F32 dot products with NEON (the shared float kernel [`crate::aarch64::neon::dot_floats`]).

use crate::aarch64::neon::{dot_floats, FLOAT_F32};

/// Table entry ([`crate::dispatch::DotFn`]). Only installed after NEON was detected.
pub(crate) fn dot(
    w: &[u8],
    w_row_bytes: usize,
    acts: &[u8],
    act_row_bytes: usize,
    n_act: usize,
    out: &mut [f32],
) {
    dot_floats::<FLOAT_F32>(w, w_row_bytes, acts, act_row_bytes, n_act, out);
}
