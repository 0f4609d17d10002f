//! x86-64 kernels: shared SIMD building blocks, the proofs of detected CPU features ([`Avx2`], [`AvxVnni`],
//! [`Avx512Vnni`]) and the installation of the per-format kernels (`formats/<format>/avx2.rs`, `.../avx512.rs`), the
//! packed and float GEMMs and the attention loops into a [`Kernels`] table.
//!
//! Every kernel compiled with `#[target_feature]` is reached through a safe table entry that its module hands out
//! only in exchange for a proof token: a value of a zero-sized type whose only constructor checks the features at
//! run time. An entry therefore exists only on a CPU that has its features, whatever the compile-time target.

pub(crate) mod avx2;
pub(crate) mod avx512;

use crate::dispatch::{Kernels, SimdLevel};
use crate::dtype::{DType, VecDotType};
use crate::formats::{bf16, f16, f32, q4_0, q4_1, q4_k, q5_0, q6_k, q8_0, q8_1};

/// Proof that this CPU has AVX2, FMA and F16C: only [`Avx2::detect`] makes one, after checking.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx2(());

impl Avx2 {
    /// The proof, if AVX2, FMA and F16C are all available.
    pub(crate) fn detect() -> Option<Self> {
        let ok = is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c");
        ok.then_some(Avx2(()))
    }
}

/// Proof that this CPU has AVX-VNNI (256-bit `vpdpbusd`, VEX-encoded) on top of [`Avx2`]'s features: only
/// [`AvxVnni::detect`] makes one, after checking.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AvxVnni(());

impl AvxVnni {
    /// The proof, if the AVX2 level and AVX-VNNI are both available.
    pub(crate) fn detect() -> Option<Self> {
        let ok = Avx2::detect().is_some() && is_x86_feature_detected!("avxvnni");
        ok.then_some(AvxVnni(()))
    }
}

/// Proof that this CPU has AVX-512 F/BW/VL/VNNI on top of [`Avx2`]'s features: only [`Avx512Vnni::detect`] makes
/// one, after checking.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx512Vnni(());

impl Avx512Vnni {
    /// The proof, if the AVX2 level and AVX-512 F/BW/VL/VNNI are all available.
    pub(crate) fn detect() -> Option<Self> {
        let ok = Avx2::detect().is_some()
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vnni");
        ok.then_some(Avx512Vnni(()))
    }

    /// The proof of the AVX2 level this one includes.
    pub(crate) fn avx2(self) -> Avx2 {
        Avx2(())
    }
}

/// Replaces every kernel of `k` this CPU has a faster version of, at most at level `max`.
pub(crate) fn upgrade(k: &mut Kernels, max: SimdLevel) {
    let Some(t) = Avx2::detect().filter(|_| max >= SimdLevel::Avx2) else { return };
    let l = SimdLevel::Avx2;
    k.set_dot(DType::Q4_0, l, q4_0::avx2::dot(t));
    k.set_dot(DType::Q4_1, l, q4_1::avx2::dot(t));
    k.set_dot(DType::Q5_0, l, q5_0::avx2::dot(t));
    k.set_dot(DType::Q8_0, l, q8_0::avx2::dot(t));
    k.set_dot(DType::Q4_K, l, q4_k::avx2::dot(t));
    k.set_dot(DType::Q6_K, l, q6_k::avx2::dot(t));
    k.set_dot(DType::F32, l, f32::avx2::dot(t));
    k.set_dot(DType::F16, l, f16::avx2::dot(t));
    k.set_dot(DType::BF16, l, bf16::avx2::dot(t));
    k.set_quantizer(VecDotType::Q8_0, l, q8_0::avx2::quantize(t));
    k.set_quantizer(VecDotType::Q8_1, l, q8_1::avx2::quantize(t));
    k.set_packed(l, crate::packed::avx2::entry(t));
    k.set_float(l, crate::fgemm::avx2::entry(t));
    k.set_panels(l, crate::fpanel::avx2::entry(t));
    k.set_attention(l, crate::attention::avx2(t));
    k.set_sgemm(l, crate::sgemm::avx2::entry(t));
    k.set_exp_shifted(l, crate::softmax::avx2(t));
    k.set_gelu(l, crate::gelu::avx2(t));
    k.set_transpose(l, crate::transpose::avx2::entry(t));
    // A CPU may have AVX-512 VNNI without AVX-VNNI (Zen 4, Ice Lake) or AVX-VNNI without AVX-512 (Alder Lake on):
    // each level is installed when present and allowed, the AVX-512 one last.
    if let Some(t) = AvxVnni::detect().filter(|_| max >= SimdLevel::AvxVnni) {
        k.set_packed(SimdLevel::AvxVnni, crate::packed::avx2::entry_vnni(t));
        k.set_packed_wide(SimdLevel::AvxVnni, crate::packed::wide::avxvnni::entry(t));
    }
    let Some(t) = Avx512Vnni::detect().filter(|_| max >= SimdLevel::Avx512Vnni) else { return };
    let l = SimdLevel::Avx512Vnni;
    k.set_dot(DType::Q4_0, l, q4_0::avx512::dot(t));
    k.set_dot(DType::Q4_1, l, q4_1::avx512::dot(t));
    k.set_dot(DType::Q8_0, l, q8_0::avx512::dot(t));
    k.set_packed(l, crate::packed::avx512::entry(t));
    k.set_packed_wide(l, crate::packed::wide::avx512::entry(t));
    k.set_float(l, crate::fgemm::avx512::entry(t));
    k.set_panels(l, crate::fpanel::avx512::entry(t));
    k.set_attention(l, crate::attention::avx512(t));
    k.set_sgemm(l, crate::sgemm::avx512::entry(t));
    k.set_exp_shifted(l, crate::softmax::avx512(t));
    k.set_gelu(l, crate::gelu::avx512(t));
    k.set_transpose(l, crate::transpose::avx512::entry(t));
}
