//! One attention head on the kernels' f32 GEMM, shared by the ViT (full attention within a tile)
//! and the decoder's large prefill batches (causal attention over the KV cache): `S = Q K^T` (the
//! keys as the weight matrix), each row scaled and soft-maxed over its visible prefix (zero beyond
//! it), then `O = P V` (`V^T` as the weight matrix). Each product and the softmax are split over
//! the pool.

use crate::compute::Compute;
use crate::parallel::DisjointSlice;
use edgevl_kernels::ops::softmax;
use edgevl_kernels::{matmul, DType, MatmulScratch, WeightRef};

/// The inputs and buffers of [`attend`], reused from head to head.
#[derive(Default)]
pub(crate) struct HeadScratch {
    /// The head's queries `[m, hd]`.
    pub q: Vec<f32>,
    /// The head's keys `[n, hd]` as f32 bytes ([`put_f32`]).
    pub k: Vec<u8>,
    /// The head's values transposed, `[hd, n]`, as f32 bytes ([`put_f32`]).
    pub vt: Vec<u8>,
    /// Scores, then probabilities, `[m, n]`.
    s: Vec<f32>,
    /// The head's output `[m, hd]`.
    o: Vec<f32>,
}

/// Writes the `len` values of `src` as consecutive little-endian f32 bytes into `dst`.
pub(crate) fn put_f32(dst: &mut Vec<u8>, len: usize, src: impl Iterator<Item = f32>) {
    dst.resize(4 * len, 0);
    for (d, v) in dst.chunks_exact_mut(4).zip(src) {
        d.copy_from_slice(&v.to_le_bytes());
    }
}

/// The head's output `[m, hd]` from `scr.q`, `scr.k` and `scr.vt` (`m` queries, `n` keys):
/// query `i` attends to the first `visible(i)` keys (`1..=n`), its scores multiplied by `scale`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attend<'s>(
    cx: Compute,
    m: usize,
    n: usize,
    hd: usize,
    scale: f32,
    visible: &(dyn Fn(usize) -> usize + Sync),
    scr: &'s mut HeadScratch,
    mm: &mut MatmulScratch,
) -> &'s [f32] {
    scr.s.resize(m * n, 0.0);
    scr.o.resize(m * hd, 0.0);
    let Compute { kernels, pool } = cx;
    let kw = f32_rows(&scr.k, n, hd);
    matmul(kernels, pool, kw, &scr.q, m, &mut scr.s[..m * n], mm);
    let s = DisjointSlice::new(&mut scr.s[..m * n]);
    pool.run(m, &|i| {
        // SAFETY: task i alone takes score row i.
        let r = unsafe { s.range_mut(i * n, n) };
        let vis = visible(i).min(n);
        r[..vis].iter_mut().for_each(|x| *x *= scale);
        softmax(&mut r[..vis]);
        r[vis..].fill(0.0);
    });
    let vw = f32_rows(&scr.vt, hd, n);
    matmul(kernels, pool, vw, &scr.s[..m * n], m, &mut scr.o[..m * hd], mm);
    &scr.o[..m * hd]
}

/// `rows` rows of `cols` f32 values written by [`put_f32`] as a weight matrix.
///
/// # Panics
/// If `data` is not `rows * cols` values (the callers fill it with exactly that many).
fn f32_rows(data: &[u8], rows: usize, cols: usize) -> WeightRef<'_> {
    WeightRef::new(DType::F32, data, rows, cols).unwrap_or_else(|e| panic!("head attention: {e}"))
}
