//! F32 x F32 dot products with AVX2 + FMA (the shared float kernel [`crate::x86::avx2::float_dot`]).

use crate::dispatch::DotFn;
use crate::x86::avx2::{float_dot, FLOAT_F32};
use crate::x86::Avx2;

/// Table entry ([`DotFn`]), handed out only for the proof that the CPU has AVX2, FMA and F16C.
pub(crate) fn dot(t: Avx2) -> DotFn {
    float_dot::<FLOAT_F32>(t)
}
