//! x86-64 kernels: shared SIMD building blocks and the feature detection that installs the per-format kernels
//! (`formats/<format>/avx2.rs`, `.../avx512.rs`) into a [`Kernels`] table.

pub(crate) mod avx2;
pub(crate) mod avx512;

use crate::dispatch::{FormatKernels, Kernels, SimdLevel};
use crate::dtype::{DType, VecDotType};
use crate::formats::{bf16, f16, f32, q4_0, q4_1, q4_k, q6_k, q8_0, q8_1};

/// Whether AVX2, FMA and F16C are all available.
pub(crate) fn has_avx2() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
}

/// Whether AVX-512 F/BW/VL/VNNI are available (on top of [`has_avx2`]).
pub(crate) fn has_avx512_vnni() -> bool {
    has_avx2()
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni")
}

/// Returns `k` with every kernel this CPU has a faster version of (at most `max`) replaced.
pub(crate) fn upgrade(mut k: Kernels, max: SimdLevel) -> Kernels {
    if max < SimdLevel::Avx2 || !has_avx2() {
        return k;
    }
    let l = SimdLevel::Avx2;
    let with_dot = |k: &Kernels, t: DType, dot| FormatKernels { dot, ..k.format(t) };
    // SAFETY (for every kernel installed below): AVX2, FMA and F16C were detected above.
    k.set_format(DType::Q4_0, l, with_dot(&k, DType::Q4_0, q4_0::avx2::dot));
    k.set_format(DType::Q4_1, l, with_dot(&k, DType::Q4_1, q4_1::avx2::dot));
    k.set_format(DType::Q8_0, l, with_dot(&k, DType::Q8_0, q8_0::avx2::dot));
    k.set_format(DType::Q4_K, l, with_dot(&k, DType::Q4_K, q4_k::avx2::dot));
    k.set_format(DType::Q6_K, l, with_dot(&k, DType::Q6_K, q6_k::avx2::dot));
    k.set_format(DType::F32, l, with_dot(&k, DType::F32, f32::avx2::dot));
    k.set_format(DType::F16, l, with_dot(&k, DType::F16, f16::avx2::dot));
    k.set_format(DType::BF16, l, with_dot(&k, DType::BF16, bf16::avx2::dot));
    k.set_quantizer(VecDotType::Q8_0, l, q8_0::avx2::quantize);
    k.set_quantizer(VecDotType::Q8_1, l, q8_1::avx2::quantize);
    k.set_packed(l, crate::packed::avx2::dot);
    k.set_float(l, crate::fgemm::avx2::dot);
    if max >= SimdLevel::Avx512Vnni && has_avx512_vnni() {
        let l = SimdLevel::Avx512Vnni;
        // SAFETY (for the kernels below): AVX-512 F/BW/VL/VNNI detected.
        k.set_format(DType::Q4_0, l, with_dot(&k, DType::Q4_0, q4_0::avx512::dot));
        k.set_format(DType::Q4_1, l, with_dot(&k, DType::Q4_1, q4_1::avx512::dot));
        k.set_format(DType::Q8_0, l, with_dot(&k, DType::Q8_0, q8_0::avx512::dot));
        k.set_packed(l, crate::packed::avx512::dot);
        k.set_float(l, crate::fgemm::avx512::dot);
    }
    k
}
