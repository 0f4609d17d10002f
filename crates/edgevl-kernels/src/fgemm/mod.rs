//! Float GEMM for F16 and F32 weights (the ViT's F16 `ffn_down`, F32/F16 matrices generally): tiles of
//! [`ROWS`] weight rows x up to [`ACTS`] activation rows, f32 FMA on the weights converted in registers.
//!
//! Numerics (identical in every kernel, so scalar, AVX2 and AVX-512 agree bit for bit): the activations are the f32
//! values of the `vec_dot_type` (F16 weights: `x` rounded to f16, as ggml does; F32: `x`). Each output keeps 16
//! partial sums, lane `j` accumulating `acc_j = fma(w[k], x[k], acc_j)` for `k = 16c + j`, `c = 0, 1, ...` (zero
//! padded past the row's end), then reduces them as `(j, j + 8)`, `(j, j + 4)`, `(j, j + 2)`, `(0, 1)` pairwise sums.

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;

use crate::dtype::DType;
use crate::formats::f16_to_f32;

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

/// One kernel call.
pub struct FloatTile<'a> {
    /// F16 or F32.
    pub dtype: DType,
    /// `n_rows` weight rows of `wrb` bytes each.
    pub w: &'a [u8],
    /// Bytes per weight row (`cols * 2` or `cols * 4`).
    pub wrb: usize,
    /// Weight rows (1..=[`ROWS`]).
    pub n_rows: usize,
    /// `n_act` activation rows of `cols` f32 values each.
    pub x: &'a [f32],
    /// Elements per row.
    pub cols: usize,
    /// Activation rows (1..=[`ACTS`]).
    pub n_act: usize,
}

/// Computes `out[i * ROWS + r] = dot(weight row r, activation row i)`.
pub type FloatDotFn = fn(t: &FloatTile, out: &mut [f32; ROWS * ACTS]);

/// Weight element `k` of a row.
#[inline(always)]
fn weight(dtype: DType, row: &[u8], k: usize) -> f32 {
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
pub fn dot_scalar(t: &FloatTile, out: &mut [f32; ROWS * ACTS]) {
    let n = t.cols;
    for i in 0..t.n_act.min(ACTS) {
        let x = &t.x[i * n..(i + 1) * n];
        for r in 0..t.n_rows.min(ROWS) {
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
        for (d, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
            *d = f16_to_f32([b[0], b[1]]);
        }
    } else {
        for (d, b) in dst.iter_mut().zip(src.chunks_exact(4)) {
            *d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
    }
}
