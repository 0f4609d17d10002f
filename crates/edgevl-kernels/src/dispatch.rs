//! The kernel table ([`Kernels`]): every compute kernel of the engine, chosen once from the CPU's features and the
//! options of a [`KernelConfig`] — per weight format a dot product and a dequantiser, per activation format a
//! quantiser, the packed integer GEMM ([`crate::packed`]), the float GEMM ([`crate::fgemm`]), the attention
//! loops ([`crate::attention`]), attention's small GEMM ([`crate::sgemm`]) and softmax ([`crate::softmax`]).
//!
//! Correctness never depends on compile-time `target-cpu`. SIMD kernels are compiled with `#[target_feature]`, and
//! each ISA module hands out its table entries only in exchange for a proof token whose sole constructor checks the
//! CPU's features at run time (`x86::Avx2`, `aarch64::Dotprod`, ...): an entry, a safe function, exists only on a
//! CPU that can run it. Every entry validates its arguments, or takes a type that was checked when it was built
//! ([`crate::packed::PackedTile`], [`crate::fgemm::FloatTile`], [`crate::WeightRef`]).
//!
//! The table is built by whoever starts the engine and passed explicitly (the model holds the one it was loaded
//! with); neither this crate nor the model reads the environment. The overrides `EDGEVL_MAX_SIMD`,
//! `EDGEVL_FORCE_SCALAR` and `EDGEVL_NO_PACK` are read once at the edge (the CLI, test support) and turned into a
//! [`KernelConfig`] by [`KernelConfig::from_vars`].
//!
//! A new kernel registers here: a slot in [`Kernels`] with its scalar twin in [`Kernels::scalar`], its SIMD
//! versions installed by `x86::upgrade` / `aarch64::upgrade` behind their proof tokens, and a test against the twin.

use crate::attention::AttentionKernels;
use crate::dtype::{DType, VecDotType};
use crate::error::KernelError;
use crate::fgemm::FloatKernel;
use crate::formats::{
    as_blocks, as_blocks_mut, bf16, f16, f32, q4_0, q4_1, q4_k, q5_0, q6_k, q8_0, q8_1, q8_k, ActFormat,
    WeightFormat,
};
use crate::fpanel::PanelKernel;
use crate::gelu::{Gelu, GeluKernels};
use crate::packed::wide::WideKernel;
use crate::packed::PackedKernel;
use crate::sgemm::SgemmKernel;
use crate::softmax::ExpShiftedFn;
use crate::transpose::TransposeFn;

/// Dot products of consecutive weight rows with up to 4 activation rows (see [`FormatKernels::dot`], which checks
/// the arguments before calling one).
pub(crate) type DotFn =
    fn(w: &[u8], w_row_bytes: usize, acts: &[u8], act_row_bytes: usize, n_act: usize, out: &mut [f32]);
/// Converts an f32 row into activation blocks (see [`Quantizer::quantize`]).
pub(crate) type QuantizeFn = fn(x: &[f32], out: &mut [u8]);
/// Dequantises whole blocks (see [`FormatKernels::dequantize`]).
pub(crate) type DequantizeFn = fn(src: &[u8], dst: &mut [f32]);

/// The instruction-set level a kernel table was built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
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
    /// x86-64 AVX2 level plus AVX-VNNI (`vpdpbusd` on 256-bit vectors, VEX-encoded): Intel's client cores from
    /// Alder Lake on, which have no AVX-512, and Zen 5.
    AvxVnni,
    /// x86-64 AVX2 level plus AVX-512 F/BW/VL/VNNI.
    Avx512Vnni,
}

impl SimdLevel {
    /// Every level, in order.
    pub const ALL: [SimdLevel; 6] = [
        SimdLevel::Scalar,
        SimdLevel::Neon,
        SimdLevel::NeonDotprod,
        SimdLevel::Avx2,
        SimdLevel::AvxVnni,
        SimdLevel::Avx512Vnni,
    ];

    /// Its name: `scalar`, `neon`, `neon-dotprod`, `avx2`, `avx-vnni` or `avx512-vnni`.
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Scalar => "scalar",
            SimdLevel::Neon => "neon",
            SimdLevel::NeonDotprod => "neon-dotprod",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::AvxVnni => "avx-vnni",
            SimdLevel::Avx512Vnni => "avx512-vnni",
        }
    }

    /// The level named `s` ([`SimdLevel::name`], ignoring case, `-` and `_`: `AVX512_VNNI` and `avx512vnni`
    /// too).
    pub fn parse(s: &str) -> Option<SimdLevel> {
        let key =
            |n: &str| n.chars().filter(|c| !matches!(c, '-' | '_')).collect::<String>().to_ascii_lowercase();
        let want = key(s);
        SimdLevel::ALL.into_iter().find(|l| key(l.name()) == want)
    }

    /// Whether a CPU of the architecture this was compiled for can have this level (scalar: every one).
    pub fn is_native(self) -> bool {
        match self {
            SimdLevel::Scalar => true,
            SimdLevel::Neon | SimdLevel::NeonDotprod => cfg!(target_arch = "aarch64"),
            SimdLevel::Avx2 | SimdLevel::AvxVnni | SimdLevel::Avx512Vnni => cfg!(target_arch = "x86_64"),
        }
    }
}

impl std::fmt::Display for SimdLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How to build a kernel table: the options the run-time overrides turn into.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelConfig {
    /// The highest level the table may use: `None` for the best this CPU has, `Some(SimdLevel::Scalar)` for the
    /// scalar twins only (a cap: a CPU without the level gets its best below it).
    pub max_level: Option<SimdLevel>,
    /// Keep weight matrices in their file layout instead of repacking them at load for the packed GEMM.
    pub no_pack: bool,
}

impl KernelConfig {
    /// Caps the SIMD level: `avx2` (the AVX2 path on an AVX-512 machine), `avx-vnni` (AVX2 with 256-bit `vpdpbusd`,
    /// a laptop core's path on an AVX-512 machine that has AVX-VNNI too), `neon` (NEON without `sdot`), or any
    /// [`SimdLevel::name`] of this architecture.
    pub const MAX_SIMD_VAR: &'static str = "EDGEVL_MAX_SIMD";
    /// `1`: the scalar twins only (overrides [`KernelConfig::MAX_SIMD_VAR`]).
    pub const FORCE_SCALAR_VAR: &'static str = "EDGEVL_FORCE_SCALAR";
    /// `1`: no repacking at load (to compare with the unpacked kernels).
    pub const NO_PACK_VAR: &'static str = "EDGEVL_NO_PACK";

    /// The options the override variables ask for, `var(name)` giving each one's value (`None` when unset). The
    /// edge of the program passes `|name| std::env::var(name).ok()`: kernel and model code never read the
    /// environment. Unset and empty variables (and `0` for the flags) leave the defaults.
    ///
    /// # Errors
    /// A value a variable does not take: a level that is not one of this architecture, a flag other than `0`/`1`.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, KernelError> {
        let flag = |name: &'static str| match var(name).as_deref() {
            None | Some("" | "0") => Ok(false),
            Some("1") => Ok(true),
            Some(v) => Err(KernelError::Override { var: name, value: v.to_string(), expected: "1 or 0" }),
        };
        let max_level = match var(Self::MAX_SIMD_VAR).as_deref() {
            None | Some("") => None,
            Some(v) => {
                Some(SimdLevel::parse(v).filter(|l| l.is_native()).ok_or_else(|| KernelError::Override {
                    var: Self::MAX_SIMD_VAR,
                    value: v.to_string(),
                    expected: NATIVE_LEVELS,
                })?)
            }
        };
        let force_scalar = flag(Self::FORCE_SCALAR_VAR)?;
        Ok(KernelConfig {
            max_level: if force_scalar { Some(SimdLevel::Scalar) } else { max_level },
            no_pack: flag(Self::NO_PACK_VAR)?,
        })
    }
}

/// The levels [`KernelConfig::MAX_SIMD_VAR`] takes on this architecture.
#[cfg(target_arch = "x86_64")]
const NATIVE_LEVELS: &str = "scalar, avx2, avx-vnni or avx512-vnni";
/// The levels [`KernelConfig::MAX_SIMD_VAR`] takes on this architecture.
#[cfg(target_arch = "aarch64")]
const NATIVE_LEVELS: &str = "scalar, neon or neon-dotprod";
/// The levels [`KernelConfig::MAX_SIMD_VAR`] takes on this architecture.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const NATIVE_LEVELS: &str = "scalar";

/// The kernels of one weight format in a table ([`Kernels::format`]).
#[derive(Clone, Copy)]
pub struct FormatKernels {
    dtype: DType,
    dot: DotFn,
    dequantize: DequantizeFn,
}

impl std::fmt::Debug for FormatKernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FormatKernels").field("dtype", &self.dtype).finish_non_exhaustive()
    }
}

impl FormatKernels {
    /// The weight format.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// `out[j * n_act + i] = dot(weight row j, activation row i)` for the `out.len() / n_act` weight rows of
    /// `w_row_bytes` bytes (a whole number of blocks) from the start of `w` and the `n_act` (1..=4) activation
    /// rows starting every `act_row_bytes` bytes of `acts`, in the format's activation type
    /// ([`DType::vec_dot_type`]) and as long as a weight row. `w` may hold further rows, which kernels may
    /// prefetch. Each output is computed independently of `n_act` and of the other rows (bit-identical results).
    ///
    /// # Panics
    /// If `w_row_bytes` is zero or not whole blocks, `n_act` is not in `1..=4` or does not divide `out.len()`,
    /// `act_row_bytes` is shorter than an activation row, or `w` or `acts` is shorter than its rows.
    #[inline]
    pub fn dot(
        &self,
        w: &[u8],
        w_row_bytes: usize,
        acts: &[u8],
        act_row_bytes: usize,
        n_act: usize,
        out: &mut [f32],
    ) {
        let t = self.dtype;
        let whole = w_row_bytes > 0 && w_row_bytes.is_multiple_of(t.block_bytes());
        assert!(whole, "{t} dot: weight rows of {w_row_bytes} bytes are not whole blocks");
        assert!(
            (1..=4).contains(&n_act) && out.len().is_multiple_of(n_act),
            "{t} dot: {n_act} activation rows for {} outputs",
            out.len()
        );
        let cols = w_row_bytes / t.block_bytes() * t.block_size();
        let Some(arb) = t.vec_dot_type().row_bytes(cols) else {
            panic!("{t} dot: a row of {cols} values has no activation row")
        };
        let w_len = (out.len() / n_act).checked_mul(w_row_bytes);
        let a_len = (n_act - 1).checked_mul(act_row_bytes).and_then(|b| b.checked_add(arb));
        assert!(
            act_row_bytes >= arb && a_len.is_some_and(|n| n <= acts.len()) && w_len.is_some_and(|n| n <= w.len()),
            "{t} dot: buffers shorter than {} weight rows of {w_row_bytes} bytes and {n_act} activation rows of \
             {arb} bytes every {act_row_bytes}",
            out.len() / n_act
        );
        (self.dot)(w, w_row_bytes, acts, act_row_bytes, n_act, out);
    }

    /// Dequantises the whole blocks of `dst.len()` elements from the start of `src` (more bytes are ignored).
    ///
    /// # Panics
    /// If `dst.len()` is not a whole number of blocks or `src` is shorter than those blocks.
    #[inline]
    pub fn dequantize(&self, src: &[u8], dst: &mut [f32]) {
        let t = self.dtype;
        let Some(n) = t.row_bytes(dst.len()) else {
            panic!("{t} dequantize: {} values are not whole blocks", dst.len())
        };
        assert!(src.len() >= n, "{t} dequantize: {} values need {n} bytes, got {}", dst.len(), src.len());
        (self.dequantize)(&src[..n], dst);
    }
}

/// The converter of f32 rows into one activation format in a table ([`Kernels::quantizer`]).
#[derive(Clone, Copy)]
pub struct Quantizer {
    to: VecDotType,
    f: QuantizeFn,
}

impl std::fmt::Debug for Quantizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quantizer").field("to", &self.to).finish_non_exhaustive()
    }
}

impl Quantizer {
    /// The activation format it writes.
    pub fn format(&self) -> VecDotType {
        self.to
    }

    /// Converts `x` into activation blocks in `out`, as ggml-cpu does on x86 (bit-identical at every level).
    ///
    /// # Panics
    /// If `x.len()` is not a whole number of blocks or `out.len()` is not their size.
    #[inline]
    pub fn quantize(&self, x: &[f32], out: &mut [u8]) {
        let t = self.to;
        let n = t.row_bytes(x.len());
        assert!(n == Some(out.len()), "{t:?} quantize: {} values into {} bytes", x.len(), out.len());
        (self.f)(x, out);
    }
}

/// A complete kernel table. Build one with [`Kernels::new`] (or [`Kernels::detect`], [`Kernels::scalar`]) and pass
/// it to the model, which keeps it; every entry is safe to call with any arguments (they are checked).
#[derive(Clone)]
pub struct Kernels {
    level: SimdLevel,
    config: KernelConfig,
    formats: [FormatKernels; DType::ALL.len()],
    quantizers: [Quantizer; VecDotType::ALL.len()],
    packed: PackedKernel,
    /// The packed GEMM of prefill-sized products with 16 activation rows in the lanes (AVX-512 only).
    packed_wide: WideKernel,
    float: FloatKernel,
    /// Whether F16/F32 products use `float` rather than the formats' dots: they do unless a SIMD dot of a float
    /// format was installed without a SIMD float GEMM (NEON).
    float_for_floats: bool,
    panels: PanelKernel,
    attention: AttentionKernels,
    sgemm: SgemmKernel,
    exp_shifted: ExpShiftedFn,
    gelu: GeluKernels,
    transpose: TransposeFn,
}

impl std::fmt::Debug for Kernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernels")
            .field("level", &self.level)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
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

/// The scalar kernels of weight format `F`.
fn scalar_format<F: WeightFormat>() -> FormatKernels {
    FormatKernels { dtype: F::DTYPE, dot: dot_scalar::<F>, dequantize: dequantize_scalar::<F> }
}

/// The scalar converter of activation format `A`.
fn scalar_quantizer<A: ActFormat>() -> Quantizer {
    Quantizer { to: A::TYPE, f: quantize_scalar::<A> }
}

impl Kernels {
    /// The best table this CPU supports within `config`.
    pub fn new(config: KernelConfig) -> Self {
        let mut k = Self::scalar();
        k.config = config;
        let max = config.max_level.unwrap_or(SimdLevel::Avx512Vnni);
        #[cfg(target_arch = "x86_64")]
        crate::x86::upgrade(&mut k, max);
        #[cfg(target_arch = "aarch64")]
        crate::aarch64::upgrade(&mut k, max);
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        let _ = max;
        k
    }

    /// The best table for this CPU with the default options.
    pub fn detect() -> Self {
        Self::new(KernelConfig::default())
    }

    /// The portable scalar table.
    pub fn scalar() -> Self {
        let formats = DType::ALL.map(|t| match t {
            DType::F32 => scalar_format::<f32::F32>(),
            DType::F16 => scalar_format::<f16::F16>(),
            DType::BF16 => scalar_format::<bf16::BF16>(),
            DType::Q8_0 => scalar_format::<q8_0::Q8_0>(),
            DType::Q4_0 => scalar_format::<q4_0::Q4_0>(),
            DType::Q4_1 => scalar_format::<q4_1::Q4_1>(),
            DType::Q5_0 => scalar_format::<q5_0::Q5_0>(),
            DType::Q4_K => scalar_format::<q4_k::Q4K>(),
            DType::Q6_K => scalar_format::<q6_k::Q6K>(),
        });
        let quantizers = VecDotType::ALL.map(|t| match t {
            VecDotType::F32 => scalar_quantizer::<f32::F32>(),
            VecDotType::F16 => scalar_quantizer::<f16::F16>(),
            VecDotType::BF16 => scalar_quantizer::<bf16::BF16>(),
            VecDotType::Q8_0 => scalar_quantizer::<q8_0::Q8_0>(),
            VecDotType::Q8_1 => scalar_quantizer::<q8_1::Q8_1>(),
            VecDotType::Q8_K => scalar_quantizer::<q8_k::Q8K>(),
        });
        Kernels {
            level: SimdLevel::Scalar,
            config: KernelConfig { max_level: Some(SimdLevel::Scalar), no_pack: false },
            formats,
            quantizers,
            packed: PackedKernel::SCALAR,
            packed_wide: WideKernel::SCALAR,
            float: FloatKernel::SCALAR,
            float_for_floats: true,
            panels: PanelKernel::SCALAR,
            attention: AttentionKernels::SCALAR,
            sgemm: SgemmKernel::SCALAR,
            exp_shifted: crate::softmax::exp_shifted_scalar,
            gelu: GeluKernels::SCALAR,
            transpose: crate::transpose::transpose_scalar,
        }
    }

    /// Every distinct table this CPU supports, from scalar up to [`Kernels::detect`] (for tests comparing them).
    pub fn all_levels() -> Vec<Kernels> {
        let mut out: Vec<Kernels> = Vec::new();
        for level in SimdLevel::ALL {
            let k = Self::new(KernelConfig { max_level: Some(level), no_pack: false });
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

    /// The options it was built with.
    pub fn config(&self) -> KernelConfig {
        self.config
    }

    /// The kernels of weight format `t`.
    #[inline]
    pub fn format(&self, t: DType) -> FormatKernels {
        self.formats[t.index()]
    }

    /// The converter into activation format `t`.
    #[inline]
    pub fn quantizer(&self, t: VecDotType) -> Quantizer {
        self.quantizers[t.index()]
    }

    /// The packed GEMM kernel ([`crate::packed`]; the scalar twin when no SIMD one is installed).
    #[inline]
    pub fn packed(&self) -> PackedKernel {
        self.packed
    }

    /// The wide packed kernel for products of at least [`crate::packed::wide::LANES`] activation rows (the scalar
    /// twins when no SIMD one is installed; the matmul uses it only then).
    pub(crate) fn packed_wide(&self) -> WideKernel {
        self.packed_wide
    }

    /// The F16/F32 GEMM kernel ([`crate::fgemm`]).
    #[inline]
    pub fn float_gemm(&self) -> FloatKernel {
        self.float
    }

    /// The GEMM of F16/F32 weights laid out in panels ([`crate::fpanel`]).
    #[inline]
    pub fn float_panels(&self) -> PanelKernel {
        self.panels
    }

    /// The attention loops ([`crate::attention`]).
    #[inline]
    pub fn attention(&self) -> AttentionKernels {
        self.attention
    }

    /// The small f32 GEMM of attention's products ([`crate::sgemm`]).
    #[inline]
    pub fn sgemm(&self) -> SgemmKernel {
        self.sgemm
    }

    /// The unnormalised softmax of a row of scores, in place: each `x` becomes `exp(x * scale - max)`; returns
    /// `(max, sum of the exponentials)` ([`crate::softmax`]; bit-identical at every level).
    #[inline]
    pub fn exp_shifted(&self, x: &mut [f32], scale: f32) -> (f32, f32) {
        (self.exp_shifted)(x, scale)
    }

    /// `kt[c * n + j] = rows[j * stride + c]`: `n` keys of `hd` values, each `stride` after the one before, laid out
    /// as `K^T` for attention's small GEMM ([`crate::transpose`]; the same values at every level). Panics unless
    /// `stride >= hd`, `rows` holds the keys and `kt` has room for `n * hd` values.
    pub fn transpose(&self, rows: &[f32], stride: usize, (n, hd): (usize, usize), kt: &mut [f32]) {
        (self.transpose)(rows, stride, (n, hd), kt)
    }

    /// GELU `kind` of `x` in place ([`crate::gelu`]; bit-identical at every level).
    pub fn gelu(&self, kind: Gelu, x: &mut [f32]) {
        self.gelu.apply(kind, x)
    }

    /// Whether weights of `dtype` should be packed at load for this table: a SIMD packed kernel exists for the
    /// format and the options allow it.
    pub fn prefers_packed(&self, dtype: DType) -> bool {
        !self.config.no_pack && self.packed.is_simd() && crate::packed::is_packable(dtype)
    }

    /// Whether a float matrix of `dtype` used only with many activation rows at a time (the vision tower's) should be
    /// laid out in panels at load ([`crate::fpanel::FloatPanels`]): a SIMD panel kernel exists and the options allow
    /// repacking.
    pub fn prefers_panels(&self, dtype: DType) -> bool {
        !self.config.no_pack && self.panels.is_simd() && crate::fgemm::is_float(dtype)
    }

    /// Whether products with `dtype` weights go through the float GEMM ([`Kernels::float_gemm`]) rather than the
    /// format's dot kernel.
    pub fn uses_float_gemm(&self, dtype: DType) -> bool {
        self.float_for_floats && crate::fgemm::is_float(dtype)
    }

    /// Raises the table's level to `level` (a kernel of that level was installed).
    fn raise(&mut self, level: SimdLevel) {
        self.level = self.level.max(level);
    }

    /// Installs the dot kernel of format `t` (an ISA module filling the table).
    #[allow(dead_code)]
    pub(crate) fn set_dot(&mut self, t: DType, level: SimdLevel, dot: DotFn) {
        self.formats[t.index()].dot = dot;
        self.raise(level);
        // A SIMD F16/F32 dot beats the scalar float GEMM: use it until a SIMD GEMM kernel is installed.
        if crate::fgemm::is_float(t) && level > SimdLevel::Scalar && !self.float.is_simd() {
            self.float_for_floats = false;
        }
    }

    /// Installs the converter into `t`.
    #[allow(dead_code)]
    pub(crate) fn set_quantizer(&mut self, t: VecDotType, level: SimdLevel, f: QuantizeFn) {
        self.quantizers[t.index()].f = f;
        self.raise(level);
    }

    /// Installs a SIMD packed-weight kernel.
    #[allow(dead_code)]
    pub(crate) fn set_packed(&mut self, level: SimdLevel, k: PackedKernel) {
        self.packed = k;
        self.raise(level);
    }

    /// Installs a SIMD wide packed kernel ([`crate::packed::wide`]).
    #[allow(dead_code)]
    pub(crate) fn set_packed_wide(&mut self, level: SimdLevel, k: WideKernel) {
        self.packed_wide = k;
        self.raise(level);
    }

    /// Installs a SIMD F16/F32 GEMM kernel (then used for every F16/F32 product).
    #[allow(dead_code)]
    pub(crate) fn set_float(&mut self, level: SimdLevel, k: FloatKernel) {
        self.float = k;
        self.float_for_floats = true;
        self.raise(level);
    }

    /// Installs a SIMD panel GEMM kernel.
    pub(crate) fn set_panels(&mut self, level: SimdLevel, k: PanelKernel) {
        self.panels = k;
        self.raise(level);
    }

    /// Installs a SIMD small GEMM.
    pub(crate) fn set_sgemm(&mut self, level: SimdLevel, k: SgemmKernel) {
        self.sgemm = k;
        self.raise(level);
    }

    /// Installs a SIMD build of the softmax's exponentials.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn set_exp_shifted(&mut self, level: SimdLevel, f: ExpShiftedFn) {
        self.exp_shifted = f;
        self.raise(level);
    }

    /// Installs SIMD builds of the GELUs.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn set_gelu(&mut self, level: SimdLevel, g: GeluKernels) {
        self.gelu = g;
        self.raise(level);
    }

    /// Installs a SIMD build of the keys' transposition.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn set_transpose(&mut self, level: SimdLevel, f: TransposeFn) {
        self.transpose = f;
        self.raise(level);
    }

    /// Installs SIMD attention loops.
    #[allow(dead_code)]
    pub(crate) fn set_attention(&mut self, level: SimdLevel, a: AttentionKernels) {
        self.attention = a;
        self.raise(level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn overrides_become_options() {
        let cfg = |pairs: &[(&str, &str)]| KernelConfig::from_vars(vars(pairs));
        assert_eq!(cfg(&[]).unwrap(), KernelConfig::default());
        assert_eq!(
            cfg(&[("EDGEVL_FORCE_SCALAR", "0"), ("EDGEVL_NO_PACK", "")]).unwrap(),
            KernelConfig::default()
        );
        let scalar = cfg(&[("EDGEVL_FORCE_SCALAR", "1"), ("EDGEVL_MAX_SIMD", "scalar")]).unwrap();
        assert_eq!(scalar.max_level, Some(SimdLevel::Scalar));
        assert!(cfg(&[("EDGEVL_NO_PACK", "1")]).unwrap().no_pack);
        #[cfg(target_arch = "x86_64")]
        {
            assert_eq!(cfg(&[("EDGEVL_MAX_SIMD", "AVX2")]).unwrap().max_level, Some(SimdLevel::Avx2));
            assert_eq!(cfg(&[("EDGEVL_MAX_SIMD", "AVX_VNNI")]).unwrap().max_level, Some(SimdLevel::AvxVnni));
            assert_eq!(
                cfg(&[("EDGEVL_MAX_SIMD", "avx512vnni")]).unwrap().max_level,
                Some(SimdLevel::Avx512Vnni)
            );
            // FORCE_SCALAR wins over a cap.
            let both = cfg(&[("EDGEVL_MAX_SIMD", "avx2"), ("EDGEVL_FORCE_SCALAR", "1")]).unwrap();
            assert_eq!(both.max_level, Some(SimdLevel::Scalar));
        }
        #[cfg(target_arch = "aarch64")]
        assert_eq!(cfg(&[("EDGEVL_MAX_SIMD", "neon")]).unwrap().max_level, Some(SimdLevel::Neon));
        // A level of another architecture, an unknown level and a flag that is not 0/1 are errors naming the
        // variable.
        let foreign = if cfg!(target_arch = "aarch64") { "avx2" } else { "neon" };
        for (var, value) in
            [("EDGEVL_MAX_SIMD", foreign), ("EDGEVL_MAX_SIMD", "sse9"), ("EDGEVL_FORCE_SCALAR", "yes")]
        {
            let e = cfg(&[(var, value)]).unwrap_err().to_string();
            assert!(e.contains(var) && e.contains(value), "{e}");
        }
    }

    #[test]
    fn options_reach_the_table() {
        let scalar = Kernels::new(KernelConfig { max_level: Some(SimdLevel::Scalar), no_pack: false });
        assert_eq!(scalar.level(), SimdLevel::Scalar);
        assert!(!scalar.prefers_packed(DType::Q4_0), "no SIMD packed kernel, nothing to pack for");
        let no_pack = Kernels::new(KernelConfig { max_level: None, no_pack: true });
        assert_eq!(no_pack.level(), Kernels::detect().level());
        assert!(DType::ALL.iter().all(|&t| !no_pack.prefers_packed(t)));
        for level in SimdLevel::ALL {
            let k = Kernels::new(KernelConfig { max_level: Some(level), no_pack: false });
            assert!(k.level() <= level, "{level}: table at {}", k.level());
        }
    }

    #[test]
    fn level_names_round_trip() {
        for l in SimdLevel::ALL {
            assert_eq!(SimdLevel::parse(l.name()), Some(l));
            assert_eq!(SimdLevel::parse(&l.name().to_uppercase().replace('-', "_")), Some(l));
        }
        assert_eq!(SimdLevel::parse("avx512"), None);
    }
}
