//! Float GEMM over F16/F32 weights re-laid at load into panels of [`PANEL`] rows, element `(k, r)` of a panel at
//! position `k * PANEL + r`: a kernel step loads one vector of 16 rows' weights at one `k` and multiplies it by
//! each activation row's value at that `k`, broadcast, into one accumulator per (activation row, panel). Against
//! the row layout of [`crate::fgemm`] (one 16-lane accumulator per output, both operands loaded at every step), a
//! weight vector is loaded once for [`ACTS`] activation rows and an activation costs a broadcast load, not a
//! vector. For products with many activation rows and no decode (the vision tower): the model lays out only those
//! matrices this way.
//!
//! The kernels read f32 panels ([`F32Panels`]): a task of the product widens its panels once
//! ([`FloatPanels::to_f32`], F16 values exactly) into its thread's buffer and runs all its activation rows over
//! them, so the F16 conversion (`vcvtph2ps` is two uops on the AVX-512 FMA ports) is paid once per task rather than
//! once per [`ACTS`] rows: so400m's F16 `ffn_down` (1152 x 4304, 729 tokens, one Xeon core) runs at 78-80% of the
//! FMA peak (73% converting in the kernel, 57-58% in the row layout).
//!
//! Numerics (identical in every kernel, so scalar, AVX2, AVX-512 and NEON agree bit for bit): the activations are
//! the f32 values of the `vec_dot_type` (F16 weights: `x` rounded to f16, as ggml does; F32: `x`), and each output
//! is one chain `acc = fma(w[k], x[k], acc)` over `k = 0, 1, ..., cols - 1` from `acc = 0`.

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon;

use crate::buffer::AlignedBuf;
use crate::dtype::DType;
use crate::entry::KernelEntry;
use crate::error::KernelError;
use crate::fgemm::{is_float, weight};
use crate::Kernels;

/// Weight rows per panel.
pub const PANEL: usize = 16;
/// Most panels per kernel call.
pub const PANELS: usize = 2;
/// Most activation rows per kernel call.
pub const ACTS: usize = 12;
/// Outputs of one kernel call: `out[i * CALL_ROWS + r]` for activation row `i`, weight row `r` of the call.
pub const CALL_ROWS: usize = PANELS * PANEL;

/// A float matrix in panels (see the module documentation), each panel starting on a 64-byte boundary; the rows
/// of the last panel past the matrix are zero.
pub struct FloatPanels {
    dtype: DType,
    rows: usize,
    cols: usize,
    stride: usize,
    data: AlignedBuf,
}

impl std::fmt::Debug for FloatPanels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FloatPanels")
            .field("dtype", &self.dtype)
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .finish_non_exhaustive()
    }
}

impl FloatPanels {
    /// Lays out `rows` rows of `cols` elements of `dtype` (F16 or F32, row-major GGUF data, exactly the rows'
    /// bytes) in panels.
    ///
    /// # Errors
    /// If `dtype` is not F16 or F32, the sizes overflow, or `data` is not exactly the rows' bytes.
    pub fn pack(dtype: DType, data: &[u8], rows: usize, cols: usize) -> Result<Self, KernelError> {
        if !is_float(dtype) {
            return Err(KernelError::NotFloat { dtype });
        }
        let src = crate::matmul::WeightRef::new(dtype, data, rows, cols)?;
        let (rb, es) = (src.row_bytes(), dtype.block_bytes());
        let overflow = || KernelError::SizeOverflow { dtype, rows, cols };
        let stride = cols.checked_mul(PANEL * es).ok_or_else(overflow)?.next_multiple_of(64);
        let total = rows.div_ceil(PANEL).checked_mul(stride).ok_or_else(overflow)?;
        let mut buf = AlignedBuf::zeroed_lines(total / 64);
        // Large matrices are laid out by a few scoped threads, each taking whole panels.
        crate::buffer::fill_units(buf.as_mut_slice(), stride, |p, panel| {
            for r in 0..PANEL.min(rows - p * PANEL) {
                let row = &data[(p * PANEL + r) * rb..][..cols * es];
                for (k, e) in row.chunks_exact(es).enumerate() {
                    panel[(k * PANEL + r) * es..][..es].copy_from_slice(e);
                }
            }
        });
        Ok(FloatPanels { dtype, rows, cols, stride, data: buf })
    }

    /// F16 or F32.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Rows of the matrix.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Elements per row.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Panels (the last one may be partly zero rows).
    pub fn panels(&self) -> usize {
        self.rows.div_ceil(PANEL)
    }

    /// Panels `p..p + n` (clamped to the matrix), contiguous.
    pub fn panel_bytes(&self, p: usize, n: usize) -> &[u8] {
        let p = p.min(self.panels());
        let end = p.saturating_add(n).min(self.panels());
        &self.data.as_slice()[p * self.stride..end * self.stride]
    }

    /// Row `r` as f32 into `out` (`cols` long). Panics if `r` is out of range.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        assert!(r < self.rows, "FloatPanels::dequantize_row: row {r} of {}", self.rows);
        let panel = self.panel_bytes(r / PANEL, 1);
        for (k, o) in out.iter_mut().take(self.cols).enumerate() {
            *o = weight(self.dtype, panel, k * PANEL + r % PANEL);
        }
    }
}

/// Panels of f32 values, borrowed: those [`FloatPanels::to_f32`] wrote into a task's buffer. Panel `p` starts at
/// element `p * stride` (`stride >= cols * PANEL`).
#[derive(Clone, Copy, Debug)]
pub struct F32Panels<'a> {
    data: &'a [f32],
    cols: usize,
    stride: usize,
    panels: usize,
}

impl<'a> F32Panels<'a> {
    /// Panels held.
    pub fn panels(&self) -> usize {
        self.panels
    }
}

impl FloatPanels {
    /// Panels `p..p + n` (clamped to the matrix) with their values as f32 in `buf` (grown as needed): F16 values
    /// widened exactly, F32 values copied; the panels keep their layout (and a partial last panel its zero rows),
    /// panel `p + i` at element `i * cols * PANEL` of `buf`.
    pub fn to_f32<'b>(&self, k: &Kernels, p: usize, n: usize, buf: &'b mut Vec<f32>) -> F32Panels<'b> {
        let src = self.panel_bytes(p, n);
        let p = p.min(self.panels());
        let panels = n.min(self.panels() - p);
        let (cols, es) = (self.cols, self.dtype.block_bytes());
        let stride = cols * PANEL;
        if buf.len() < panels * stride {
            buf.resize(panels * stride, 0.0);
        }
        let convert = k.format(self.dtype);
        for i in 0..panels {
            let dst = &mut buf[i * stride..][..stride];
            convert.dequantize(&src[i * self.stride..][..stride * es], dst);
        }
        F32Panels { data: &buf[..panels * stride], cols, stride, panels }
    }
}

/// One kernel call: up to [`PANELS`] consecutive f32 panels times up to [`ACTS`] f32 activation rows. The fields are
/// private and checked by [`PanelTile::new`], so a kernel can rely on them.
#[derive(Clone, Copy, Debug)]
pub struct PanelTile<'a> {
    /// `n_panels` panels, `stride` elements apart.
    w: &'a [f32],
    stride: usize,
    n_panels: usize,
    /// `n_act` activation rows of `cols` f32 values each.
    x: &'a [f32],
    cols: usize,
    n_act: usize,
}

impl<'a> PanelTile<'a> {
    /// Panels `p..p + n_panels` of `w` times the `n_act` rows of `cols` values in `x`.
    ///
    /// # Errors
    /// If a count is out of range (`n_panels` in `1..=PANELS` and within `w`, `n_act` in `1..=ACTS`) or `x` is
    /// shorter than its rows.
    pub fn new(
        w: &F32Panels<'a>,
        p: usize,
        n_panels: usize,
        x: &'a [f32],
        n_act: usize,
    ) -> Result<Self, KernelError> {
        let range = |what, value, max| KernelError::OutOfRange { what, value, min: 1, max };
        let max_panels = PANELS.min(w.panels.saturating_sub(p));
        if !(1..=max_panels).contains(&n_panels) {
            return Err(range("panel tile panels", n_panels, max_panels));
        }
        if !(1..=ACTS).contains(&n_act) {
            return Err(range("panel tile activation rows", n_act, ACTS));
        }
        let cols = w.cols;
        let overflow = || KernelError::SizeOverflow { dtype: DType::F32, rows: n_act, cols };
        let x_len = n_act.checked_mul(cols).ok_or_else(overflow)?;
        let short = |expected, found| KernelError::Length {
            what: "panel tile activations",
            expected,
            found,
            unit: "elements",
        };
        let x = x.get(..x_len).ok_or(short(x_len, x.len()))?;
        let w_data = &w.data[p * w.stride..(p + n_panels) * w.stride];
        Ok(PanelTile { w: w_data, stride: w.stride, n_panels, x, cols, n_act })
    }

    /// Whether the counts are in range and the buffers hold what the tile describes: what [`PanelTile::new`]
    /// guarantees, checked again by the SIMD kernels, which read through raw pointers.
    #[cfg_attr(not(any(target_arch = "x86_64", target_arch = "aarch64")), allow(dead_code))]
    pub(crate) fn holds_shape(&self) -> bool {
        let (np, na, n) = (self.n_panels, self.n_act, self.cols);
        (1..=PANELS).contains(&np)
            && (1..=ACTS).contains(&na)
            && self.stride >= n * PANEL
            && self.w.len() >= np * self.stride
            && self.x.len() >= na * n
    }
}

/// Activation rows of a sub-tile of the kernels that take one panel at a time (AVX2, NEON; [`by_sub_tiles`]).
#[cfg_attr(not(any(target_arch = "x86_64", target_arch = "aarch64")), allow(dead_code))]
pub(crate) const SUB_ACTS: usize = 6;

/// One instance of a sub-tile kernel: panel `p` of the tile times activation rows `i0..i0 + NA`.
pub(crate) type SubTileFn = fn(t: &PanelTile, p: usize, i0: usize, out: &mut [f32; CALL_ROWS * ACTS]);

/// A sub-tile kernel's instances: `[NA - 1]`.
pub(crate) type SubTileFns = [SubTileFn; SUB_ACTS];

/// The tile `t` as sub-tiles of one panel x up to [`SUB_ACTS`] activation rows, each computed by its instance in
/// `fns`: the kernels whose registers hold one panel's accumulators for [`SUB_ACTS`] rows (AVX2, NEON).
#[cfg_attr(not(any(target_arch = "x86_64", target_arch = "aarch64")), allow(dead_code))]
pub(crate) fn by_sub_tiles(t: &PanelTile, out: &mut [f32; CALL_ROWS * ACTS], fns: &SubTileFns) {
    for p in 0..t.n_panels {
        for i0 in (0..t.n_act).step_by(SUB_ACTS) {
            fns[(t.n_act - i0).min(SUB_ACTS) - 1](t, p, i0, out);
        }
    }
}

/// Computes `out[i * CALL_ROWS + r] = dot(weight row r of the call, activation row i)`.
pub(crate) type PanelDotFn = fn(t: &PanelTile, out: &mut [f32; CALL_ROWS * ACTS]);

/// The panel GEMM entry of a kernel table ([`crate::Kernels::float_panels`]): the scalar twin, or a SIMD kernel
/// the table installed after detecting its CPU features.
pub type PanelKernel = KernelEntry<PanelDotFn>;

impl PanelKernel {
    /// The scalar twin.
    pub(crate) const SCALAR: PanelKernel = KernelEntry::scalar(dot_scalar);

    /// `out[i * CALL_ROWS + r] = dot(weight row r of the tile, activation row i)` with the numerics of the module
    /// documentation (bit-identical at every level); outputs of absent panels and activation rows are left as
    /// they were.
    #[inline]
    pub fn dot(&self, t: &PanelTile, out: &mut [f32; CALL_ROWS * ACTS]) {
        (self.get())(t, out);
    }
}

/// The scalar twin of every panel kernel.
fn dot_scalar(t: &PanelTile, out: &mut [f32; CALL_ROWS * ACTS]) {
    let n = t.cols;
    for i in 0..t.n_act {
        let x = &t.x[i * n..(i + 1) * n];
        for pr in 0..t.n_panels * PANEL {
            let panel = &t.w[(pr / PANEL) * t.stride..][..t.stride];
            let mut acc = 0f32;
            for (k, &xk) in x.iter().enumerate() {
                acc = panel[k * PANEL + pr % PANEL].mul_add(xk, acc);
            }
            out[i * CALL_ROWS + pr] = acc;
        }
    }
}
