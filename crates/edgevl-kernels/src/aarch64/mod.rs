//! aarch64 kernels: shared NEON building blocks ([`neon`]), the attention helpers ([`attention`]), the proofs of
//! detected CPU features ([`Neon`], [`Dotprod`]) and the installation of the per-format kernels
//! (`formats/<format>/neon.rs`) into a [`Kernels`] table.
//!
//! NEON (Advanced SIMD) is part of the baseline of the aarch64 Linux and Android targets, so
//! [`SimdLevel::Neon`] is available on every aarch64 CPU; the `dotprod` extension (`sdot`, Armv8.2+, e.g.
//! Cortex-A55/A76 and later, not Cortex-A53/A72) is detected at run time and selects [`SimdLevel::NeonDotprod`].
//! The integer dot products of both levels are exact and summed per block in the scalar twin's order, so their
//! results are bit-identical to the scalar kernels. As on x86-64, a module hands out its table entries only for the
//! proof token of the features they use.

pub(crate) mod attention;
pub(crate) mod neon;

use crate::dispatch::{DotFn, Kernels, SimdLevel};
use crate::dtype::{DType, VecDotType};
use crate::formats::{bf16, f16, f32, q4_0, q4_1, q4_k, q5_0, q6_k, q8_0, q8_1};

/// Proof that this CPU has Advanced SIMD (always, on the aarch64 targets Rust supports for Linux and Android):
/// only [`Neon::detect`] makes one, after checking.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Neon(());

impl Neon {
    /// The proof, if Advanced SIMD is available.
    pub(crate) fn detect() -> Option<Self> {
        std::arch::is_aarch64_feature_detected!("neon").then_some(Neon(()))
    }
}

/// Proof that this CPU has the Armv8.2 dot-product instructions (`sdot`) on top of [`Neon`]: only
/// [`Dotprod::detect`] makes one, after checking.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dotprod(());

impl Dotprod {
    /// The proof, if NEON and `dotprod` are available.
    pub(crate) fn detect() -> Option<Self> {
        let ok = Neon::detect().is_some() && std::arch::is_aarch64_feature_detected!("dotprod");
        ok.then_some(Dotprod(()))
    }
}

/// Replaces every kernel of `k` this CPU has a faster version of, at most at level `max`.
pub(crate) fn upgrade(k: &mut Kernels, max: SimdLevel) {
    let Some(t) = Neon::detect().filter(|_| max >= SimdLevel::Neon) else { return };
    let l = SimdLevel::Neon;
    k.set_dot(DType::F32, l, f32::neon::dot(t));
    k.set_dot(DType::F16, l, f16::neon::dot(t));
    k.set_dot(DType::BF16, l, bf16::neon::dot(t));
    k.set_quantizer(VecDotType::F16, l, f16::neon::quantize(t));
    k.set_quantizer(VecDotType::Q8_0, l, q8_0::neon::quantize(t));
    k.set_quantizer(VecDotType::Q8_1, l, q8_1::neon::quantize(t));
    k.set_attention(l, attention::kernels(t));
    k.set_sgemm(l, crate::sgemm::neon::entry(t));
    k.set_float(l, crate::fgemm::neon::entry(t));
    k.set_panels(l, crate::fpanel::neon::entry(t));
    let dotprod = Dotprod::detect().filter(|_| max >= SimdLevel::NeonDotprod);
    let (l, ints): (SimdLevel, [DotFn; 6]) = match dotprod {
        Some(d) => (
            SimdLevel::NeonDotprod,
            [
                q4_0::neon::dot_dotprod(d),
                q4_1::neon::dot_dotprod(d),
                q5_0::neon::dot_dotprod(d),
                q8_0::neon::dot_dotprod(d),
                q4_k::neon::dot_dotprod(d),
                q6_k::neon::dot_dotprod(d),
            ],
        ),
        None => (
            l,
            [
                q4_0::neon::dot(t),
                q4_1::neon::dot(t),
                q5_0::neon::dot(t),
                q8_0::neon::dot(t),
                q4_k::neon::dot(t),
                q6_k::neon::dot(t),
            ],
        ),
    };
    for (dtype, dot) in
        [DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q8_0, DType::Q4_K, DType::Q6_K].into_iter().zip(ints)
    {
        k.set_dot(dtype, l, dot);
    }
    if let Some(d) = dotprod {
        k.set_packed(SimdLevel::NeonDotprod, crate::packed::neon::entry(d));
    }
}
