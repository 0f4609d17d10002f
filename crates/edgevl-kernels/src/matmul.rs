//! Matrix products of a weight matrix with activation rows, multithreaded over a [`ThreadPool`].
//!
//! Activation rows are first converted to the weight type's `vec_dot_type` (into a reusable [`MatmulScratch`]),
//! then output tiles of (weight-row range x activation-row range) are computed as pool tasks. Inside a tile, four
//! activation rows are processed per pass over a weight row, so each weight row is loaded once per four tokens.
//! Results do not depend on the number of threads: every output is computed by the same kernel call whatever the
//! split.

use crate::dispatch::Kernels;
use crate::dtype::DType;
use crate::error::KernelError;
use crate::fgemm::{act_to_f32, FloatTile, ACTS, ROWS};
use crate::fpanel::{FloatPanels, PanelTile, ACTS as PANEL_ACTS, CALL_ROWS, PANEL, PANELS};
use crate::packed::wide::{self, WideKernel, WideTile, DEC_BLOCK, LANES, PANEL_BLOCK};
use crate::packed::{act_meta, ActMeta, PackedTile, PackedWeights, GROUP, MAX_ACT, MAX_GROUPS};
use crate::pool::ThreadPool;
use std::cell::RefCell;

/// A weight matrix view: `rows` rows of `cols` elements each, row-major, stored in `dtype` (a GGUF tensor with dims
/// `[cols, rows]`), or the same matrix repacked ([`PackedWeights`], [`FloatPanels`]). The fields are private and checked at
/// construction: `cols` is a whole number of blocks and the bytes are exactly the rows' (no alignment is needed:
/// blocks are byte arrays and kernels load unaligned).
#[derive(Clone, Copy, Debug)]
pub struct WeightRef<'a> {
    dtype: DType,
    rows: usize,
    cols: usize,
    /// `dtype.row_bytes(cols)`.
    row_bytes: usize,
    data: WeightData<'a>,
}

/// Where a [`WeightRef`]'s weights are.
#[derive(Clone, Copy, Debug)]
enum WeightData<'a> {
    /// `rows * row_bytes` bytes, row-major.
    Rows(&'a [u8]),
    /// The packed matrix (of the same type and shape).
    Packed(&'a PackedWeights),
    /// The float matrix in panels (of the same type and shape).
    Panels(&'a FloatPanels),
}

impl<'a> WeightRef<'a> {
    /// A checked view of `rows` rows of `cols` elements stored in `dtype`, row-major in `data`.
    ///
    /// # Errors
    /// If `cols` is not a whole number of blocks, the size overflows, or `data` is not exactly
    /// `rows * dtype.row_bytes(cols)` bytes.
    pub fn new(dtype: DType, data: &'a [u8], rows: usize, cols: usize) -> Result<Self, KernelError> {
        let row_bytes = dtype.row_bytes(cols).ok_or(KernelError::RowNotBlockAligned {
            dtype,
            cols,
            block: dtype.block_size(),
        })?;
        let need = row_bytes.checked_mul(rows).ok_or(KernelError::SizeOverflow { dtype, rows, cols })?;
        if data.len() != need {
            return Err(KernelError::Length {
                what: "weight data",
                expected: need,
                found: data.len(),
                unit: "bytes",
            });
        }
        Ok(WeightRef { dtype, rows, cols, row_bytes, data: WeightData::Rows(data) })
    }

    /// The view of a packed matrix.
    pub fn from_packed(p: &'a PackedWeights) -> Self {
        // A packed matrix holds whole blocks (its source rows were checked when it was packed).
        let row_bytes = p.blocks_per_row() * p.dtype().block_bytes();
        WeightRef { dtype: p.dtype(), rows: p.rows(), cols: p.cols(), row_bytes, data: WeightData::Packed(p) }
    }

    /// The view of a float matrix in panels.
    pub fn from_panels(p: &'a FloatPanels) -> Self {
        // F16/F32 rows of any length are whole elements; the source rows were checked when it was laid out.
        let row_bytes = p.cols() * p.dtype().block_bytes();
        WeightRef { dtype: p.dtype(), rows: p.rows(), cols: p.cols(), row_bytes, data: WeightData::Panels(p) }
    }

    /// Storage type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Output features.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input features.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes of one row in the file layout.
    pub fn row_bytes(&self) -> usize {
        self.row_bytes
    }

    /// The row-major bytes (`rows * row_bytes`), unless the view is of a repacked matrix.
    pub fn data(&self) -> Option<&'a [u8]> {
        match self.data {
            WeightData::Rows(d) => Some(d),
            WeightData::Packed(_) | WeightData::Panels(_) => None,
        }
    }

    /// The packed matrix, if the view is of one.
    pub fn packed(&self) -> Option<&'a PackedWeights> {
        match self.data {
            WeightData::Packed(p) => Some(p),
            WeightData::Rows(_) | WeightData::Panels(_) => None,
        }
    }

    /// The matrix in panels, if the view is of one.
    pub fn panels(&self) -> Option<&'a FloatPanels> {
        match self.data {
            WeightData::Panels(p) => Some(p),
            WeightData::Rows(_) | WeightData::Packed(_) => None,
        }
    }

    /// Whether products with this matrix take f32 activation rows (the float GEMMs).
    fn takes_f32_acts(&self, k: &Kernels) -> bool {
        self.panels().is_some() || k.uses_float_gemm(self.dtype)
    }
}

/// Reusable scratch (quantised activations) so the token loop does not allocate once warmed up.
#[derive(Default)]
pub struct MatmulScratch {
    act: Vec<u8>,
    meta: Vec<ActMeta>,
    actf: Vec<f32>,
    /// The activations in panels for the wide packed kernel ([`wide::build_panels`]).
    panels: Vec<u8>,
}

thread_local! {
    /// A pool thread's decoded row group for the wide packed kernel ([`WideKernel::decode`]).
    static WIDE_DECODED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// A pool thread's panels of a float matrix, widened to f32 for the panel GEMM ([`FloatPanels::to_f32`]).
    static WIDENED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

impl MatmulScratch {
    /// An empty scratch; it grows to the largest product it has seen.
    pub fn new() -> Self {
        Self::default()
    }
}

/// A raw pointer to a buffer that pool tasks write disjoint parts of.
struct SharedOut<T> {
    ptr: *mut T,
    len: usize,
}

// SAFETY: tasks only write disjoint indices (see each use), and the buffer outlives `ThreadPool::run`.
unsafe impl<T: Send> Sync for SharedOut<T> {}

impl<T> SharedOut<T> {
    fn new(buf: &mut [T]) -> Self {
        SharedOut { ptr: buf.as_mut_ptr(), len: buf.len() }
    }

    /// # Safety
    /// No other live reference may overlap `start..start + n`.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice(&self, start: usize, n: usize) -> &mut [T] {
        assert!(start <= self.len && n <= self.len - start, "SharedOut: out of bounds");
        // SAFETY: in bounds (checked above); exclusivity is the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), n) }
    }
}

/// Activation rows per kernel call.
const ACT_GROUP: usize = 4;
/// Activation rows per task when the product is split over activations too (a multiple of `ACT_GROUP`).
const ACT_CHUNK: usize = 64;
/// The same when the wide packed kernel takes the product (a multiple of its `LANES`): each task decodes its row
/// groups once for this many rows. One Xeon core (model 207), `packed_bench 256`, single runs: Q4_0 189-193 GMAC/s
/// at 64 rows, 201-216 at 128, 216-227 at 256.
const WIDE_ACT_CHUNK: usize = 256;
/// The same when the panel GEMM takes the product: each task widens its panels to f32 once for this many rows, so
/// the chunk is long. Xeon model 207, 2 threads, so400m 9 views at ViT batch 4 (products of 2,916 rows),
/// `encode-image`, alternating runs: 64 rows 26.4-28.1 s, 512 17.6-17.8 s, 1024 16.7-17.3 s, one chunk 16.6-17.0 s;
/// converting in the kernel (no widening) 17.7-17.9 s.
const PANEL_ACT_CHUNK: usize = 1024;
const _: () = assert!(ACT_CHUNK.is_multiple_of(LANES) && WIDE_ACT_CHUNK.is_multiple_of(LANES));
/// Weight rows per kernel call (the kernel's output tile is `ROW_TILE x ACT_GROUP`).
const ROW_TILE: usize = 16;
// Tasks start at multiples of ROW_TILE: whole packed groups and whole panels.
const _: () = assert!(ROW_TILE == GROUP && ROW_TILE == PANEL);
/// Bytes of weights a prefill task re-reads for each activation group: sized to stay in L2.
const L2_WEIGHT_BYTES: usize = 384 * 1024;

/// `y[i*rows + j] = dot(x[i*cols .. (i+1)*cols], W[j])` for `i` in `0..m`, `j` in `0..w.rows()`, with the kernels of
/// table `k`.
///
/// Only the first `m * cols` elements of `x` and `m * rows` of `y` are used. Results do not depend on the pool's
/// size.
///
/// # Panics
/// If `x.len() < m * cols` or `y.len() < m * rows` (use [`try_matmul`] for an error instead).
pub fn matmul(
    k: &Kernels,
    pool: &ThreadPool,
    w: WeightRef,
    x: &[f32],
    m: usize,
    y: &mut [f32],
    scratch: &mut MatmulScratch,
) {
    matmul_many(k, pool, &[w], x, m, &mut [y], scratch);
}

/// [`matmul`] returning shape errors instead of panicking.
///
/// # Errors
/// If `x` or `y` is shorter than `m` rows.
pub fn try_matmul(
    k: &Kernels,
    pool: &ThreadPool,
    w: WeightRef,
    x: &[f32],
    m: usize,
    y: &mut [f32],
    scratch: &mut MatmulScratch,
) -> Result<(), KernelError> {
    check_shapes(&w, x, m, y)?;
    matmul(k, pool, w, x, m, y, scratch);
    Ok(())
}

fn check_shapes(w: &WeightRef, x: &[f32], m: usize, y: &[f32]) -> Result<(), KernelError> {
    let overflow = KernelError::SizeOverflow { dtype: w.dtype, rows: m, cols: w.cols };
    let nx = m.checked_mul(w.cols).ok_or(overflow)?;
    if x.len() < nx {
        return Err(KernelError::Length {
            what: "matmul input",
            expected: nx,
            found: x.len(),
            unit: "elements",
        });
    }
    let overflow = KernelError::SizeOverflow { dtype: w.dtype, rows: m, cols: w.rows };
    let ny = m.checked_mul(w.rows).ok_or(overflow)?;
    if y.len() < ny {
        return Err(KernelError::Length {
            what: "matmul output",
            expected: ny,
            found: y.len(),
            unit: "elements",
        });
    }
    Ok(())
}

/// Most matrices [`matmul_many`] computes in one pool job.
pub const MAX_MANY: usize = 8;

/// One matrix of a pool job: its weights, bias, output, row bytes and task split.
struct Product<'a> {
    w: WeightRef<'a>,
    bias: Option<&'a [f32]>,
    out: SharedOut<f32>,
    wrb: usize,
    row_tasks: usize,
    rows_per_task: usize,
}

impl Product<'_> {
    /// Adds the bias, if the product has one, to `dst`: outputs `j0..j0 + dst.len()` of one activation row, as
    /// the kernel wrote them (so each output is `dot + b`, one f32 addition, as a separate pass would add it).
    #[inline(always)]
    fn add_bias(&self, dst: &mut [f32], j0: usize) {
        if let Some(b) = self.bias {
            let n = dst.len();
            for (d, &b) in dst.iter_mut().zip(&b[j0..j0 + n]) {
                *d += b;
            }
        }
    }
}

/// Several products of the same input, `ys[i] = x W_i^T` (e.g. the Q, K and V projections, or gate and up),
/// in one pool job: one synchronisation instead of one per matrix, and the input is quantised once when the
/// weights share a `vec_dot_type`. Results are bit-identical to separate [`matmul`] calls.
///
/// # Panics
/// As [`matmul`] for each pair; also if `ws.len() != ys.len()`, if the column counts differ, or if there are
/// more than [`MAX_MANY`] matrices.
pub fn matmul_many(
    k: &Kernels,
    pool: &ThreadPool,
    ws: &[WeightRef],
    x: &[f32],
    m: usize,
    ys: &mut [&mut [f32]],
    scratch: &mut MatmulScratch,
) {
    assert!(ws.len() <= MAX_MANY, "matmul_many: at most {MAX_MANY} matrices");
    matmul_many_biased(k, pool, ws, &[None; MAX_MANY][..ws.len()], x, m, ys, scratch);
}

/// [`matmul_many`] with a bias per product: `ys[i] = x W_i^T + b_i` where `biases[i]` is `Some(b_i)` (`W_i.rows`
/// values), each output `dot + b` as a separate pass adding the bias would compute it, without that pass.
///
/// # Panics
/// As [`matmul_many`]; also if `biases.len() != ws.len()` or a bias is not `W_i.rows` long.
#[allow(clippy::too_many_arguments)]
pub fn matmul_many_biased(
    k: &Kernels,
    pool: &ThreadPool,
    ws: &[WeightRef],
    biases: &[Option<&[f32]>],
    x: &[f32],
    m: usize,
    ys: &mut [&mut [f32]],
    scratch: &mut MatmulScratch,
) {
    assert_eq!(ws.len(), ys.len(), "matmul_many: {} weights but {} outputs", ws.len(), ys.len());
    assert_eq!(ws.len(), biases.len(), "matmul_many: {} weights but {} biases", ws.len(), biases.len());
    assert!(ws.len() <= MAX_MANY, "matmul_many: at most {MAX_MANY} matrices");
    let Some(first) = ws.first() else { return };
    let cols = first.cols;
    for ((w, y), b) in ws.iter().zip(ys.iter()).zip(biases) {
        assert_eq!(w.cols, cols, "matmul_many: all weights need {cols} columns, found {}", w.cols);
        if let Err(e) = check_shapes(w, x, m, y) {
            panic!("matmul: {e}");
        }
        if let Some(b) = b {
            assert_eq!(b.len(), w.rows, "matmul_many: a bias of {} values for {} rows", b.len(), w.rows);
        }
    }
    let vdt = first.dtype.vec_dot_type();
    if ws.iter().any(|w| w.dtype.vec_dot_type() != vdt) {
        // Different activation formats: one job per matrix.
        for ((w, y), b) in ws.iter().zip(ys.iter_mut()).zip(biases) {
            let (w, y, b) = (std::slice::from_ref(w), std::slice::from_mut(y), std::slice::from_ref(b));
            matmul_many_biased(k, pool, w, b, x, m, y, scratch);
        }
        return;
    }
    if m == 0 {
        return;
    }
    if cols == 0 {
        for ((w, y), b) in ws.iter().zip(ys.iter_mut()).zip(biases) {
            let y = &mut y[..m * w.rows];
            match b {
                Some(b) => y.chunks_exact_mut(w.rows.max(1)).for_each(|row| row.copy_from_slice(b)),
                None => y.fill(0.0),
            }
        }
        return;
    }
    let x = &x[..m * cols];
    // The sizes exist: `check_shapes` validated every weight row and `x`, whose length bounds the activation rows.
    let Some(arb) = vdt.row_bytes(cols) else { unreachable!("matmul: row sizes validated above") };
    let act_len = arb.checked_mul(m).unwrap_or_else(|| panic!("matmul: activation size overflows"));
    if scratch.act.len() < act_len {
        scratch.act.resize(act_len, 0);
    }
    let act = &mut scratch.act[..act_len];
    // Block sums and scales of the activations, for packed weights.
    let nb = cols / vdt.block_size();
    let any_packed = ws.iter().any(|w| w.packed().is_some());
    let meta_len = if any_packed { nb * m } else { 0 };
    if scratch.meta.len() < meta_len {
        scratch.meta.resize(meta_len, ActMeta::default());
    }
    let meta = &mut scratch.meta[..meta_len];
    // f32 activation rows for the float GEMM (the values of the F16/F32 activation format).
    let float = ws.iter().any(|w| w.takes_f32_acts(k));
    let actf_len = if float { m * cols } else { 0 };
    if scratch.actf.len() < actf_len {
        scratch.actf.resize(actf_len, 0.0);
    }
    let actf = &mut scratch.actf[..actf_len];
    let rows_out = RowsOut { meta, actf, dtype: first.dtype };
    quantize_rows(k, pool, vdt, x, cols, arb, act, rows_out);
    let (act, meta, actf): (&[u8], &[ActMeta], &[f32]) =
        (act, &scratch.meta[..meta_len], &scratch.actf[..actf_len]);
    // Whole panels of the activation rows for the wide packed kernel, when a SIMD one is installed and a packed
    // weight takes it (the products' weights share one activation type, so one layout serves them all).
    let wide = k.packed_wide();
    let wide_fmt = ws.iter().filter_map(|w| w.packed()).map(|p| p.format()).find(|&f| wide.takes(f));
    let n_panels = if wide.is_simd() { wide_fmt.map_or(0, |_| m / LANES) } else { 0 };
    let panels_len = n_panels * nb * PANEL_BLOCK;
    if scratch.panels.len() < panels_len {
        scratch.panels.resize(panels_len, 0);
    }
    let panels = &mut scratch.panels[..panels_len];
    if let Some(fmt) = wide_fmt.filter(|_| n_panels > 0) {
        wide::build_panels(fmt, (act, arb), meta, nb, n_panels, panels);
    }
    let panels: &[u8] = panels;

    let n_threads = pool.n_threads();
    let chunk = if n_panels > 0 {
        WIDE_ACT_CHUNK
    } else if ws.iter().any(|w| w.panels().is_some()) {
        PANEL_ACT_CHUNK
    } else {
        ACT_CHUNK
    };
    let (act_chunks, act_chunk) = if m > chunk { (m.div_ceil(chunk), chunk) } else { (1, m) };
    let mut prods: [Option<Product>; MAX_MANY] = Default::default();
    let mut total_row_tasks = 0;
    for (((w, y), &bias), slot) in ws.iter().zip(ys.iter_mut()).zip(biases).zip(prods.iter_mut()) {
        let wrb = w.row_bytes;
        let rows_per_task = rows_per_task(w.rows, m, wrb, n_threads);
        let row_tasks = w.rows.div_ceil(rows_per_task);
        total_row_tasks += row_tasks;
        *slot = Some(Product {
            w: *w,
            bias,
            out: SharedOut::new(&mut y[..m * w.rows]),
            wrb,
            row_tasks,
            rows_per_task,
        });
    }
    let n_tasks = total_row_tasks * act_chunks;
    let prods = &prods;
    let task = |t: usize| {
        let (mut rt, at) = (t % total_row_tasks, t / total_row_tasks);
        let Some(p) = prods.iter().flatten().find(|p| {
            let here = rt < p.row_tasks;
            if !here {
                rt -= p.row_tasks;
            }
            here
        }) else {
            return;
        };
        let a0 = at * act_chunk;
        let (r0, a1) = (rt * p.rows_per_task, (a0 + act_chunk).min(m));
        match p.w.data {
            WeightData::Packed(pw) => packed_tile(k, p, pw, (act, arb, meta, panels), r0, a0, a1),
            WeightData::Panels(fp) => panel_tile(k, p, fp, actf, r0, a0, a1),
            WeightData::Rows(data) if k.uses_float_gemm(p.w.dtype) => {
                float_tile(k, p, data, actf, r0, a0, a1)
            }
            WeightData::Rows(data) => tile(k, p, data, act, arb, r0, a0, a1),
        }
    };
    if n_tasks == 1 {
        task(0);
    } else if n_tasks > 1 {
        pool.run(n_tasks, &task);
    }
}

/// Computes outputs `(i, j)` of `p` (weights `data`) for activation rows `a0..a1` and weight rows
/// `r0..r0 + rows_per_task`.
#[allow(clippy::too_many_arguments)]
fn tile(k: &Kernels, p: &Product, data: &[u8], act: &[u8], arb: usize, r0: usize, a0: usize, a1: usize) {
    let (w, wrb) = (&p.w, p.wrb);
    let rows = w.rows;
    let r1 = (r0 + p.rows_per_task).min(rows);
    let kern = k.format(w.dtype);
    let mut buf = [0f32; ROW_TILE * ACT_GROUP];
    for g0 in (a0..a1).step_by(ACT_GROUP) {
        let g = (a1 - g0).min(ACT_GROUP);
        let acts = &act[g0 * arb..(g0 + g) * arb];
        for j0 in (r0..r1).step_by(ROW_TILE) {
            let j1 = (j0 + ROW_TILE).min(r1);
            // The slice runs to the task's last row so the kernel can prefetch past this tile.
            kern.dot(&data[j0 * wrb..r1 * wrb], wrb, acts, arb, g, &mut buf[..(j1 - j0) * g]);
            for i in 0..g {
                // SAFETY: the task owning activation rows a0..a1 and weight rows r0..r1 of this product is the only
                // writer of outputs (i, j) with i in a0..a1 and j in r0..r1.
                let dst = unsafe { p.out.slice((g0 + i) * rows + j0, j1 - j0) };
                for (jj, d) in dst.iter_mut().enumerate() {
                    *d = buf[jj * g + i];
                }
                p.add_bias(dst, j0);
            }
        }
    }
}

/// [`tile`] for packed weights: groups of [`GROUP`] rows times up to [`MAX_ACT`] activation rows per kernel call.
#[allow(clippy::too_many_arguments)]
fn packed_tile(
    k: &Kernels,
    p: &Product,
    pw: &PackedWeights,
    (act, arb, meta, panels): (&[u8], usize, &[ActMeta], &[u8]),
    r0: usize,
    a0: usize,
    a1: usize,
) {
    let rows = pw.rows();
    let r1 = (r0 + p.rows_per_task).min(rows);
    let nb = pw.blocks_per_row();
    // Whole panels of activation rows go to the wide kernel when the product has them laid out (`matmul_many`
    // does only for a SIMD wide kernel; `a0` is a multiple of the chunk, so of LANES); the rest to the row-lane
    // kernel.
    let laid_out = panels.len() / (nb * PANEL_BLOCK).max(1) * LANES;
    let wide = k.packed_wide();
    let end = if wide.takes(pw.format()) { a1.min(laid_out) } else { a0 };
    let whole = a0 + end.saturating_sub(a0) / LANES * LANES;
    if whole > a0 {
        wide_tile(wide, pw, (p, panels), (r0, r1), (a0, whole));
    }
    let kern = k.packed();
    let mut buf = [0f32; GROUP * MAX_ACT];
    // `r0` is a multiple of GROUP (`rows_per_task` is a multiple of ROW_TILE == GROUP).
    for g0 in (whole..a1).step_by(MAX_ACT) {
        let n = (a1 - g0).min(MAX_ACT);
        // One activation row (decode): up to MAX_GROUPS consecutive groups per call.
        let per_call = if n == 1 { MAX_GROUPS } else { 1 };
        let (first, end) = (r0 / GROUP, r1.div_ceil(GROUP));
        for g in (first..end).step_by(per_call) {
            let ng = (end - g).min(per_call);
            let (acts, meta) = (&act[g0 * arb..(g0 + n) * arb], &meta[g0 * nb..(g0 + n) * nb]);
            // Cannot fail: `matmul_many` sized the activations and metadata for `pw`, and the counts are in range.
            let t = PackedTile::new(pw, g, ng, acts, meta, n).unwrap_or_else(|e| panic!("matmul: {e}"));
            kern.dot(&t, &mut buf);
            // Output row-block b of the call: activation row b (one group) or group g + b (one row).
            for b in 0..n.max(ng) {
                let (i, gg) = if ng == 1 { (b, g) } else { (0, g + b) };
                let (j0, j1) = (gg * GROUP, ((gg + 1) * GROUP).min(r1));
                // SAFETY: as in `tile`: this task alone writes outputs (i, j) for i in a0..a1, j in r0..r1.
                let dst = unsafe { p.out.slice((g0 + i) * rows + j0, j1 - j0) };
                copy_out::<GROUP>(dst, &buf[b * GROUP..][..GROUP]);
                p.add_bias(dst, j0);
            }
        }
    }
}

/// [`packed_tile`]'s whole panels of [`LANES`] activation rows `a0..a1` and weight rows `r0..r1` on the wide kernel:
/// each row group of the task decoded once into the thread's buffer, then multiplied by every panel.
fn wide_tile(
    wide: WideKernel,
    pw: &PackedWeights,
    (p, panels): (&Product, &[u8]),
    (r0, r1): (usize, usize),
    (a0, a1): (usize, usize),
) {
    let (rows, nb) = (pw.rows(), pw.blocks_per_row());
    let pb = nb * PANEL_BLOCK;
    let mut buf = [0f32; GROUP * LANES];
    WIDE_DECODED.with_borrow_mut(|dec| {
        if dec.len() < nb * DEC_BLOCK {
            dec.resize(nb * DEC_BLOCK, 0);
        }
        for g in r0 / GROUP..r1.div_ceil(GROUP) {
            wide.decode(pw.format(), pw.groups_bytes(g, 1), nb, dec);
            let (j0, j1) = (g * GROUP, ((g + 1) * GROUP).min(r1));
            for pi in a0 / LANES..a1 / LANES {
                // Cannot fail: the format takes the wide kernel, and `matmul_many` laid out `pb` bytes a panel.
                let t = WideTile::new(pw.format(), dec, &panels[pi * pb..][..pb], nb)
                    .unwrap_or_else(|e| panic!("matmul: {e}"));
                wide.dot(&t, &mut buf);
                for (i, src) in buf.chunks_exact(GROUP).enumerate() {
                    // SAFETY: as in `tile`: this task alone writes outputs (i, j) for i in a0..a1, j in r0..r1.
                    let dst = unsafe { p.out.slice((pi * LANES + i) * rows + j0, j1 - j0) };
                    copy_out::<GROUP>(dst, src);
                    p.add_bias(dst, j0);
                }
            }
        }
    });
}

/// `dst = src[..dst.len()]` for a kernel's row of `N` outputs: a whole row (all but a matrix's last) as a copy of
/// constant length, inlined moves rather than a call to `memcpy` for a few dozen bytes.
#[inline(always)]
fn copy_out<const N: usize>(dst: &mut [f32], src: &[f32]) {
    if dst.len() == N {
        dst.copy_from_slice(&src[..N]);
    } else {
        dst.copy_from_slice(&src[..dst.len()]);
    }
}

/// [`tile`] for F16/F32 weights: [`ROWS`] weight rows x up to [`ACTS`] f32 activation rows per kernel call.
#[allow(clippy::too_many_arguments)]
fn float_tile(k: &Kernels, p: &Product, data: &[u8], actf: &[f32], r0: usize, a0: usize, a1: usize) {
    let (w, wrb, cols) = (&p.w, p.wrb, p.w.cols);
    let rows = w.rows;
    let r1 = (r0 + p.rows_per_task).min(rows);
    let kern = k.float_gemm();
    let mut buf = [0f32; ROWS * ACTS];
    for g0 in (a0..a1).step_by(ACTS) {
        let n = (a1 - g0).min(ACTS);
        for j0 in (r0..r1).step_by(ROWS) {
            let nr = (r1 - j0).min(ROWS);
            let (wt, x) = (&data[j0 * wrb..(j0 + nr) * wrb], &actf[g0 * cols..(g0 + n) * cols]);
            // Cannot fail: F16/F32 rows of `cols` values and counts in range, sized by `matmul_many`.
            let t =
                FloatTile::new(w.dtype, wt, wrb, nr, x, cols, n).unwrap_or_else(|e| panic!("matmul: {e}"));
            kern.dot(&t, &mut buf);
            for i in 0..n {
                // SAFETY: as in `tile`: this task alone writes outputs (i, j) for i in a0..a1, j in r0..r1.
                let dst = unsafe { p.out.slice((g0 + i) * rows + j0, nr) };
                copy_out::<ROWS>(dst, &buf[i * ROWS..][..ROWS]);
                p.add_bias(dst, j0);
            }
        }
    }
}

/// [`tile`] for float weights in panels: the task's panels widened to f32 once into the thread's buffer, then up to
/// [`PANELS`] panels x [`PANEL_ACTS`] f32 activation rows per kernel call.
fn panel_tile(k: &Kernels, p: &Product, fp: &FloatPanels, actf: &[f32], r0: usize, a0: usize, a1: usize) {
    let (rows, cols) = (fp.rows(), fp.cols());
    let r1 = (r0 + p.rows_per_task).min(rows);
    let kern = k.float_panels();
    let mut buf = [0f32; CALL_ROWS * PANEL_ACTS];
    // `r0` is a multiple of PANEL (`rows_per_task` is a multiple of ROW_TILE == PANEL).
    let (first, end) = (r0 / PANEL, r1.div_ceil(PANEL));
    WIDENED.with_borrow_mut(|widened| {
        let w = fp.to_f32(k, first, end - first, widened);
        for g0 in (a0..a1).step_by(PANEL_ACTS) {
            let n = (a1 - g0).min(PANEL_ACTS);
            let x = &actf[g0 * cols..(g0 + n) * cols];
            for pp in (0..w.panels()).step_by(PANELS) {
                let np = (w.panels() - pp).min(PANELS);
                // Cannot fail: `matmul_many` sized the activations for `fp`, and the counts are in range.
                let t = PanelTile::new(&w, pp, np, x, n).unwrap_or_else(|e| panic!("matmul: {e}"));
                kern.dot(&t, &mut buf);
                let (j0, j1) = ((first + pp) * PANEL, ((first + pp + np) * PANEL).min(r1));
                for i in 0..n {
                    // SAFETY: as in `tile`: this task alone writes outputs (i, j) for i in a0..a1, j in r0..r1.
                    let dst = unsafe { p.out.slice((g0 + i) * rows + j0, j1 - j0) };
                    copy_out::<CALL_ROWS>(dst, &buf[i * CALL_ROWS..][..CALL_ROWS]);
                    p.add_bias(dst, j0);
                }
            }
        }
    });
}

/// Weight rows per task.
///
/// Decode (`m <= ACT_GROUP`): about 4 row ranges per thread so a thread delayed by a busy machine is balanced by
/// the others. Prefill: also at most the rows whose weights fit in L2 (`L2_WEIGHT_BYTES`), since they are re-read
/// for every group of `ACT_GROUP` activation rows of a chunk of `ACT_CHUNK` rows.
fn rows_per_task(rows: usize, m: usize, wrb: usize, n_threads: usize) -> usize {
    let by_threads = rows.div_ceil(4 * n_threads).next_multiple_of(ROW_TILE);
    let rows_per_task = if m <= ACT_GROUP {
        by_threads
    } else {
        let by_cache = (L2_WEIGHT_BYTES / wrb.max(1)).max(ROW_TILE) / ROW_TILE * ROW_TILE;
        by_threads.min(by_cache)
    };
    rows_per_task.max(ROW_TILE)
}

/// Converts the `m` rows of `x` into activation blocks, in parallel when there are several rows.
#[allow(clippy::too_many_arguments)]
fn quantize_rows(
    k: &Kernels,
    pool: &ThreadPool,
    vdt: crate::dtype::VecDotType,
    x: &[f32],
    cols: usize,
    arb: usize,
    act: &mut [u8],
    extra: RowsOut,
) {
    let q = k.quantizer(vdt);
    let m = x.len() / cols.max(1);
    // `meta` is empty (no packed weights) or holds one entry per activation block of a row; `actf` is empty or `cols` per row.
    let nb = extra.meta.len() / m.max(1);
    let nf = extra.actf.len() / m.max(1);
    let dtype = extra.dtype;
    let row_extra = |ar: &[u8], meta: &mut [ActMeta], actf: &mut [f32]| {
        if !meta.is_empty() {
            act_meta(vdt, ar, meta);
        }
        if !actf.is_empty() {
            act_to_f32(dtype, ar, actf);
        }
    };
    if m < 4 || pool.n_threads() == 1 {
        for (i, (xr, ar)) in x.chunks_exact(cols).zip(act.chunks_exact_mut(arb)).enumerate() {
            q.quantize(xr, ar);
            row_extra(ar, &mut extra.meta[i * nb..(i + 1) * nb], &mut extra.actf[i * nf..(i + 1) * nf]);
        }
        return;
    }
    let out = SharedOut::new(act);
    let meta_out = SharedOut::new(extra.meta);
    let actf_out = SharedOut::new(extra.actf);
    pool.run(m, &|i| {
        // SAFETY: task i alone writes activation row i and its entries in `meta` and `actf`.
        let ar = unsafe { out.slice(i * arb, arb) };
        q.quantize(&x[i * cols..(i + 1) * cols], ar);
        // SAFETY: as above.
        let (meta, actf) = unsafe { (meta_out.slice(i * nb, nb), actf_out.slice(i * nf, nf)) };
        row_extra(ar, meta, actf);
    });
}

/// Per-row by-products of the activation conversion: block metadata for packed weights, f32 rows for the float
/// GEMM (each empty when not needed).
struct RowsOut<'a> {
    meta: &'a mut [ActMeta],
    actf: &'a mut [f32],
    /// The weight type whose `vec_dot_type` the activations are in.
    dtype: DType,
}
