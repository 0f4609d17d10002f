//! BF16 x BF16 dot products with NEON (the shared float kernel [`crate::aarch64::neon::float_dot`]).

use crate::aarch64::neon::{float_dot, FLOAT_BF16};
use crate::aarch64::Neon;
use crate::dispatch::DotFn;

/// Table entry ([`DotFn`]), handed out only for a NEON proof.
pub(crate) fn dot(t: Neon) -> DotFn {
    float_dot::<FLOAT_BF16>(t)
}
