//! aarch64 kernels: shared NEON building blocks ([`neon`]), the attention helpers ([`attention`]) and the feature
//! detection that installs the per-format kernels (`formats/<format>/neon.rs`) into a [`Kernels`] table.
//!
//! NEON (Advanced SIMD) is part of the baseline of the aarch64 Linux and Android targets, so
//! [`SimdLevel::Neon`] is available on every aarch64 CPU; the `dotprod` extension (`sdot`, Armv8.2+, e.g.
//! Cortex-A55/A76 and later, not Cortex-A53/A72) is detected at run time and selects [`SimdLevel::NeonDotprod`].
//! The integer dot products of both levels are exact and summed per block in the scalar twin's order, so their
//! results are bit-identical to the scalar kernels.

pub(crate) mod attention;
pub(crate) mod neon;

use crate::dispatch::{FormatKernels, Kernels, SimdLevel};
use crate::dtype::{DType, VecDotType};
use crate::formats::{bf16, f16, f32, q4_0, q4_1, q4_k, q6_k, q8_0, q8_1};

/// Whether Advanced SIMD is available (always, on the aarch64 targets Rust supports for Linux and Android).
pub(crate) fn has_neon() -> bool {
    std::arch::is_aarch64_feature_detected!("neon")
}

/// Whether the Armv8.2 dot-product instructions (`sdot`) are available (on top of [`has_neon`]).
pub(crate) fn has_dotprod() -> bool {
    has_neon() && std::arch::is_aarch64_feature_detected!("dotprod")
}

/// Returns `k` with every kernel this CPU has a faster version of (at most `max`) replaced.
pub(crate) fn upgrade(mut k: Kernels, max: SimdLevel) -> Kernels {
    if max < SimdLevel::Neon || !has_neon() {
        return k;
    }
    let with_dot = |k: &Kernels, t: DType, dot| FormatKernels { dot, ..k.format(t) };
    let l = SimdLevel::Neon;
    // SAFETY (for every kernel installed below): NEON was detected above.
    k.set_format(DType::F32, l, with_dot(&k, DType::F32, f32::neon::dot));
    k.set_format(DType::F16, l, with_dot(&k, DType::F16, f16::neon::dot));
    k.set_format(DType::BF16, l, with_dot(&k, DType::BF16, bf16::neon::dot));
    k.set_quantizer(VecDotType::F16, l, f16::neon::quantize);
    k.set_quantizer(VecDotType::Q8_0, l, q8_0::neon::quantize);
    k.set_quantizer(VecDotType::Q8_1, l, q8_1::neon::quantize);
    let (l, ints): (SimdLevel, [crate::dispatch::DotFn; 5]) =
        if max >= SimdLevel::NeonDotprod && has_dotprod() {
            // SAFETY (for the `_dotprod` kernels): dotprod detected.
            (
                SimdLevel::NeonDotprod,
                [
                    q4_0::neon::dot_dotprod,
                    q4_1::neon::dot_dotprod,
                    q8_0::neon::dot_dotprod,
                    q4_k::neon::dot_dotprod,
                    q6_k::neon::dot_dotprod,
                ],
            )
        } else {
            (l, [q4_0::neon::dot, q4_1::neon::dot, q8_0::neon::dot, q4_k::neon::dot, q6_k::neon::dot])
        };
    for (t, dot) in [DType::Q4_0, DType::Q4_1, DType::Q8_0, DType::Q4_K, DType::Q6_K].into_iter().zip(ints) {
        k.set_format(t, l, with_dot(&k, t, dot));
    }
    k
}
