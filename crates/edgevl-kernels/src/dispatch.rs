//! Run-time kernel selection: a table of function pointers per format, filled once from the CPU's features.
//!
//! Correctness never depends on compile-time `target-cpu`: SIMD kernels are compiled with `#[target_feature]` and
//! only put in a table after `is_x86_feature_detected!` confirmed the features. `EDGEVL_FORCE_SCALAR=1` makes
//! [`kernels`] return the scalar table; tests construct [`Kernels::scalar`] / [`Kernels::detect`] directly.

use std::sync::OnceLock;

use crate::dtype::{DType, VecDotType};
use crate::formats::{
    as_blocks, as_blocks_mut, bf16, f16, f32, q4_0, q4_1, q4_k, q6_k, q8_0, q8_1, q8_k, ActFormat,
    WeightFormat,
};

/// Dot products of consecutive weight rows with up to 4 activation rows:
/// `out[j * n_act + i] = dot(weight row j, activation row i)` for `j` in `0..out.len() / n_act` (rows of
/// `w_row_bytes` bytes from the start of `w`; `w` may hold further rows, which kernels may prefetch) and `i` in
/// `0..n_act` (`n_act` in 1..=4; activation rows every `act_row_bytes` bytes of `acts`, same length in elements).
/// Each output is computed independently of `n_act` and of the other rows (bit-identical results).
pub type DotFn =
    fn(w: &[u8], w_row_bytes: usize, acts: &[u8], act_row_bytes: usize, n_act: usize, out: &mut [f32]);
/// Converts an f32 row into activation blocks (`out.len() == row_bytes(x.len())`).
pub type QuantizeFn = fn(x: &[f32], out: &mut [u8]);
/// Dequantises whole blocks into `dst` (`src.len() == row_bytes(dst.len())`).
pub type DequantizeFn = fn(src: &[u8], dst: &mut [f32]);

/// The instruction-set level a kernel table was built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdLevel {
    /// Portable Rust.
    Scalar,
    /// aarch64 Advanced SIMD (NEON), the aarch64 baseline. (Levels of different architectures never meet in one
    /// table: their order only matters within an architecture.)
    Neon,
    /// aarch64 NEON plus the Armv8.2 dot-product instructions (`sdot`).
    NeonDotprod,
    /// x86-64 AVX2 + FMA + F16C.
    Avx2,
    /// x86-64 AVX2 level plus AVX-512 F/BW/VL/VNNI.
    Avx512Vnni,
}

/// Kernels of one weight format.
#[derive(Clone, Copy)]
pub struct FormatKernels {
    /// Weight row x activation rows.
    pub dot: DotFn,
    /// Row dequantisation.
    pub dequantize: DequantizeFn,
}

/// A complete kernel table.
#[derive(Clone)]
pub struct Kernels {
    level: SimdLevel,
    formats: [FormatKernels; DType::ALL.len()],
    quantizers: [QuantizeFn; VecDotType::ALL.len()],
    /// The packed-weight kernel ([`crate::packed`]) and whether it is a fast (SIMD) one worth packing for.
    packed: (crate::packed::PackedDotFn, bool),
    /// The F16/F32 GEMM kernel ([`crate::fgemm`]), whether it is a SIMD one, and whether F16/F32 products use it
    /// (they do unless a SIMD per-format F16/F32 dot was installed without a SIMD GEMM kernel, e.g. NEON).
    float: (crate::fgemm::FloatDotFn, bool, bool),
}

fn dot_scalar<F: WeightFormat>(
    w: &[u8],
    w_row_bytes: usize,
    acts: &[u8],
    act_row_bytes: usize,
    n_act: usize,
    out: &mut [f32],
) {
    let n_act = n_act.clamp(1, 4);
    for (wr, o) in w.chunks_exact(w_row_bytes).zip(out.chunks_exact_mut(n_act)) {
        let wb = as_blocks::<F::W>(wr);
        for (o, a) in o.iter_mut().zip(acts.chunks(act_row_bytes)) {
            *o = F::vec_dot(wb, as_blocks::<F::A>(a));
        }
    }
}

fn dequantize_scalar<F: WeightFormat>(src: &[u8], dst: &mut [f32]) {
    F::dequantize(as_blocks::<F::W>(src), dst);
}

fn quantize_scalar<A: ActFormat>(x: &[f32], out: &mut [u8]) {
    A::quantize(x, as_blocks_mut::<A::A>(out));
}

fn scalar_format<F: WeightFormat>() -> FormatKernels {
    FormatKernels { dot: dot_scalar::<F>, dequantize: dequantize_scalar::<F> }
}

impl Kernels {
    /// The portable scalar table.
    pub fn scalar() -> Self {
        let mut formats = [scalar_format::<f32::F32>(); DType::ALL.len()];
        for t in DType::ALL {
            formats[t.index()] = match t {
                DType::F32 => scalar_format::<f32::F32>(),
                DType::F16 => scalar_format::<f16::F16>(),
                DType::BF16 => scalar_format::<bf16::BF16>(),
                DType::Q8_0 => scalar_format::<q8_0::Q8_0>(),
                DType::Q4_0 => scalar_format::<q4_0::Q4_0>(),
                DType::Q4_1 => scalar_format::<q4_1::Q4_1>(),
                DType::Q4_K => scalar_format::<q4_k::Q4K>(),
                DType::Q6_K => scalar_format::<q6_k::Q6K>(),
            };
        }
        let mut quantizers: [QuantizeFn; VecDotType::ALL.len()] =
            [quantize_scalar::<f32::F32>; VecDotType::ALL.len()];
        for t in VecDotType::ALL {
            quantizers[t.index()] = match t {
                VecDotType::F32 => quantize_scalar::<f32::F32>,
                VecDotType::F16 => quantize_scalar::<f16::F16>,
                VecDotType::BF16 => quantize_scalar::<bf16::BF16>,
                VecDotType::Q8_0 => quantize_scalar::<q8_0::Q8_0>,
                VecDotType::Q8_1 => quantize_scalar::<q8_1::Q8_1>,
                VecDotType::Q8_K => quantize_scalar::<q8_k::Q8K>,
            };
        }
        Kernels {
            level: SimdLevel::Scalar,
            formats,
            quantizers,
            packed: (crate::packed::dot_scalar, false),
            float: (crate::fgemm::dot_scalar, false, true),
        }
    }

    /// The best table for this CPU.
    pub fn detect() -> Self {
        Self::detect_up_to(SimdLevel::Avx512Vnni)
    }

    /// The best table for this CPU using no level above `max` (to test or measure the lower levels).
    pub fn detect_up_to(max: SimdLevel) -> Self {
        let k = Self::scalar();
        #[cfg(target_arch = "x86_64")]
        let k = crate::x86::upgrade(k, max);
        #[cfg(target_arch = "aarch64")]
        let k = crate::aarch64::upgrade(k, max);
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        let _ = max;
        k
    }

    /// Every distinct table this CPU supports, from scalar up to [`Kernels::detect`].
    pub fn all_levels() -> Vec<Kernels> {
        let mut out: Vec<Kernels> = Vec::new();
        for level in [
            SimdLevel::Scalar,
            SimdLevel::Neon,
            SimdLevel::NeonDotprod,
            SimdLevel::Avx2,
            SimdLevel::Avx512Vnni,
        ] {
            let k = Self::detect_up_to(level);
            if out.last().is_none_or(|prev| prev.level() != k.level()) {
                out.push(k);
            }
        }
        out
    }

    /// The level this table was built for (the best level any of its kernels uses).
    pub fn level(&self) -> SimdLevel {
        self.level
    }

    /// Kernels of weight format `t`.
    pub fn format(&self, t: DType) -> FormatKernels {
        self.formats[t.index()]
    }

    /// The activation converter for `t`.
    pub fn quantizer(&self, t: VecDotType) -> QuantizeFn {
        self.quantizers[t.index()]
    }

    /// Replaces the kernels of format `t` (used by the ISA modules while filling the table).
    #[allow(dead_code)]
    pub(crate) fn set_format(&mut self, t: DType, level: SimdLevel, f: FormatKernels) {
        self.formats[t.index()] = f;
        self.level = self.level.max(level);
        // A SIMD F16/F32 dot beats the scalar float GEMM: use it until a SIMD GEMM kernel is installed.
        if crate::fgemm::is_float(t) && level > SimdLevel::Scalar && !self.float.1 {
            self.float.2 = false;
        }
    }

    /// The packed-weight kernel (always usable: the scalar twin when no SIMD one is installed).
    pub fn packed_dot(&self) -> crate::packed::PackedDotFn {
        self.packed.0
    }

    /// Whether weights of `dtype` should be packed at load for this table (a SIMD packed kernel exists for it).
    pub fn prefers_packed(&self, dtype: DType) -> bool {
        self.packed.1 && crate::packed::is_packable(dtype)
    }

    /// The F16/F32 GEMM kernel.
    pub fn float_dot(&self) -> crate::fgemm::FloatDotFn {
        self.float.0
    }

    /// Whether products with `dtype` weights go through the float GEMM ([`crate::fgemm`]) rather than the format's
    /// dot kernel.
    pub fn uses_float_gemm(&self, dtype: DType) -> bool {
        self.float.2 && crate::fgemm::is_float(dtype)
    }

    /// Installs a SIMD F16/F32 GEMM kernel.
    #[allow(dead_code)]
    pub(crate) fn set_float(&mut self, level: SimdLevel, f: crate::fgemm::FloatDotFn) {
        self.float = (f, true, true);
        self.level = self.level.max(level);
    }

    /// Installs a SIMD packed-weight kernel.
    #[allow(dead_code)]
    pub(crate) fn set_packed(&mut self, level: SimdLevel, f: crate::packed::PackedDotFn) {
        self.packed = (f, true);
        self.level = self.level.max(level);
    }

    /// Replaces the converter for `t`.
    #[allow(dead_code)]
    pub(crate) fn set_quantizer(&mut self, t: VecDotType, level: SimdLevel, f: QuantizeFn) {
        self.quantizers[t.index()] = f;
        self.level = self.level.max(level);
    }
}

/// The process-wide table: [`Kernels::detect`]; [`Kernels::scalar`] when `EDGEVL_FORCE_SCALAR=1`; capped at AVX2
/// when `EDGEVL_MAX_SIMD=avx2` (to measure the AVX2 path on an AVX-512 machine), at plain NEON when
/// `EDGEVL_MAX_SIMD=neon` (the path without `sdot` on a dotprod CPU). Filled on first use and cached.
pub fn kernels() -> &'static Kernels {
    static K: OnceLock<Kernels> = OnceLock::new();
    K.get_or_init(|| {
        if std::env::var("EDGEVL_FORCE_SCALAR").is_ok_and(|v| v == "1") {
            Kernels::scalar()
        } else if std::env::var("EDGEVL_MAX_SIMD").is_ok_and(|v| v.eq_ignore_ascii_case("avx2")) {
            Kernels::detect_up_to(SimdLevel::Avx2)
        } else if std::env::var("EDGEVL_MAX_SIMD").is_ok_and(|v| v.eq_ignore_ascii_case("neon")) {
            Kernels::detect_up_to(SimdLevel::Neon)
        } else {
            Kernels::detect()
        }
    })
}
