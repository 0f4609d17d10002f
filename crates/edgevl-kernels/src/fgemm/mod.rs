//! Float GEMM for F16 and F32 weights (the ViT's F16 `ffn_down`, F32/F16 matrices generally): tiles of
//! [`ROWS`] weight rows x up to [`ACTS`] activation rows, f32 FMA on the weights converted in registers.
//!
//! Numerics (identical in every kernel, so scalar, AVX2, AVX-512 and NEON agree bit for bit): the activations are the f32
//! values of the `vec_dot_type` (F16 weights: `x` rounded to f16, as ggml does; F32: `x`). Each output keeps 16
//! partial sums, lane `j` accumulating `acc_j = fma(w[k], x[k], acc_j)` for `k = 16c + j`, `c = 0, 1, ...` (zero
//! padded past the row's end), then reduces them as `(j, j + 8)`, `(j, j + 4)`, `(j, j + 2)`, `(0, 1)` pairwise sums.

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon;

use crate::dtype::DType;
use crate::entry::KernelEntry;
use crate::error::KernelError;
use crate::formats::f16::F16;
use crate::formats::{as_blocks, f16_to_f32, WeightFormat};

/// Weight rows per kernel call.
pub const ROWS: usize = 4;
/// Most activation rows per kernel call.
pub const ACTS: usize = 6;
/// Partial sums per output.
pub const LANES: usize = 16;

/// Whether `dtype` goes through this GEMM.
pub fn is_float(dtype: DType) -> bool {
    matches!(dtype, DType::F16 | DType::F32)
}

/// One kernel call: up to [`ROWS`] F16 or F32 weight rows times up to [`ACTS`] f32 activation rows. The fields are
/// private and checked by [`FloatTile::new`], so a kernel can rely on them.
#[derive(Clone, Copy, Debug)]
pub struct FloatTile<'a> {
    /// F16 or F32.
    dtype: DType,
    /// `n_rows` weight rows of `wrb` bytes each (the last may end after its `cols` elements).
    w: &'a [u8],
    /// Bytes per weight row (at least `cols` elements).
    wrb: usize,
    /// Weight rows (1..=[`ROWS`]).
    n_rows: usize,
    /// `n_act` activation rows of `cols` f32 values each.
    x: &'a [f32],
    /// Elements per row.
    cols: usize,
    /// Activation rows (1..=[`ACTS`]).
    n_act: usize,
}

impl<'a> FloatTile<'a> {
    /// `n_rows` weight rows of `cols` elements of `dtype` (F16 or F32), each starting `wrb` bytes after the last,
    /// times `n_act` rows of `cols` values in `x`. Longer buffers are cut to the shape.
    ///
    /// # Errors
    /// If `dtype` is not F16 or F32, a count is out of range (`n_rows` in `1..=ROWS`, `n_act` in `1..=ACTS`),
    /// `wrb` is shorter than a row, or a buffer is shorter than its rows.
    pub fn new(
        dtype: DType,
        w: &'a [u8],
        wrb: usize,
        n_rows: usize,
        x: &'a [f32],
        cols: usize,
        n_act: usize,
    ) -> Result<Self, KernelError> {
        if !is_float(dtype) {
            return Err(KernelError::NotFloat { dtype });
        }
        let range = |what, value, max| KernelError::OutOfRange { what, value, min: 1, max };
        if !(1..=ROWS).contains(&n_rows) {
            return Err(range("float tile weight rows", n_rows, ROWS));
        }
        if !(1..=ACTS).contains(&n_act) {
            return Err(range("float tile activation rows", n_act, ACTS));
        }
        let overflow = || KernelError::SizeOverflow { dtype, rows: n_rows.max(n_act), cols };
        let row = dtype.row_bytes(cols).ok_or_else(overflow)?;
        let short = |what, expected, found, unit| KernelError::Length { what, expected, found, unit };
        if wrb < row {
            return Err(short("float tile weight row stride", row, wrb, "bytes"));
        }
        let w_len = (n_rows - 1).checked_mul(wrb).and_then(|b| b.checked_add(row)).ok_or_else(overflow)?;
        let x_len = n_act.checked_mul(cols).ok_or_else(overflow)?;
        let w = w.get(..w_len).ok_or(short("float tile weights", w_len, w.len(), "bytes"))?;
        let x = x.get(..x_len).ok_or(short("float tile activations", x_len, x.len(), "elements"))?;
        Ok(FloatTile { dtype, w, wrb, n_rows, x, cols, n_act })
    }
}

impl FloatTile<'_> {
    /// Whether the counts are in range and the buffers hold the rows the tile describes: what [`FloatTile::new`]
    /// guarantees, checked again by the SIMD kernels, which read through raw pointers.
    #[cfg_attr(not(any(target_arch = "x86_64", target_arch = "aarch64")), allow(dead_code))]
    pub(crate) fn holds_shape(&self) -> bool {
        let es = self.dtype.block_bytes();
        let (nr, na, n) = (self.n_rows, self.n_act, self.cols);
        (1..=ROWS).contains(&nr)
            && (1..=ACTS).contains(&na)
            && self.wrb >= n * es
            && self.w.len() >= (nr - 1) * self.wrb + n * es
            && self.x.len() >= na * n
    }
}

/// Computes `out[i * ROWS + r] = dot(weight row r, activation row i)`.
pub(crate) type FloatDotFn = fn(t: &FloatTile, out: &mut [f32; ROWS * ACTS]);

/// The float GEMM entry of a kernel table ([`crate::Kernels::float_gemm`]): the scalar twin, or a SIMD kernel the
/// table installed after detecting its CPU features.
pub type FloatKernel = KernelEntry<FloatDotFn>;

impl FloatKernel {
    /// The scalar twin.
    pub(crate) const SCALAR: FloatKernel = KernelEntry::scalar(dot_scalar);

    /// `out[i * ROWS + r] = dot(weight row r, activation row i)` with the numerics of the module documentation
    /// (bit-identical at every level).
    #[inline]
    pub fn dot(&self, t: &FloatTile, out: &mut [f32; ROWS * ACTS]) {
        (self.get())(t, out);
    }
}

/// Prefetches, for each weight row pointer of a kernel call, byte `off` of the row `3 * ROWS` rows further on
/// (three calls ahead): rows a few KB long end before the hardware prefetcher has ramped up, and one-row (decode) products
/// are then bound by the memory latency rather than its bandwidth (SmolLM2 F16 decode at half of llama.cpp's speed
/// without it). A hint only: prefetches never fault, so the address may lie past the matrix.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn prefetch_next_rows<const NR: usize>(w: &[*const u8; NR], off: usize, wrb: usize) {
    for p in w {
        // SAFETY: `_mm_prefetch` is SSE (baseline on x86-64) and only hints: it never faults or writes.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                p.wrapping_add(off + 3 * ROWS * wrb).cast(),
            )
        };
    }
}

/// Element `k` of F16 or F32 weight bytes (a row here, a panel in [`crate::fpanel`]).
#[inline(always)]
pub(crate) fn weight(dtype: DType, row: &[u8], k: usize) -> f32 {
    if dtype == DType::F16 {
        f16_to_f32([row[2 * k], row[2 * k + 1]])
    } else {
        f32::from_le_bytes([row[4 * k], row[4 * k + 1], row[4 * k + 2], row[4 * k + 3]])
    }
}

/// The fixed reduction of the 16 partial sums.
#[inline(always)]
pub(crate) fn reduce16(a: &[f32; LANES]) -> f32 {
    let v8: [f32; 8] = std::array::from_fn(|j| a[j] + a[j + 8]);
    let v4: [f32; 4] = std::array::from_fn(|j| v8[j] + v8[j + 4]);
    let v2: [f32; 2] = std::array::from_fn(|j| v4[j] + v4[j + 2]);
    v2[0] + v2[1]
}

/// The scalar twin of every float kernel.
fn dot_scalar(t: &FloatTile, out: &mut [f32; ROWS * ACTS]) {
    let n = t.cols;
    for i in 0..t.n_act {
        let x = &t.x[i * n..(i + 1) * n];
        for r in 0..t.n_rows {
            let row = &t.w[r * t.wrb..(r + 1) * t.wrb];
            let mut acc = [0f32; LANES];
            for c in 0..n.div_ceil(LANES) {
                for (j, a) in acc.iter_mut().enumerate() {
                    let k = c * LANES + j;
                    let (w, x) = if k < n { (weight(t.dtype, row, k), x[k]) } else { (0.0, 0.0) };
                    *a = w.mul_add(x, *a);
                }
            }
            out[i * ROWS + r] = reduce16(&acc);
        }
    }
}

/// Converts activation row `src` (the `vec_dot_type` bytes of F16 or F32 weights) into f32 values.
pub(crate) fn act_to_f32(dtype: DType, src: &[u8], dst: &mut [f32]) {
    if dtype == DType::F16 {
        F16::dequantize(as_blocks(src), dst);
    } else {
        for (d, b) in dst.iter_mut().zip(src.chunks_exact(4)) {
            *d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
    }
}
