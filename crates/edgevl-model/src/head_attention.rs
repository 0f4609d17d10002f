//! Attention of many queries at once on the kernels' small GEMM ([`edgevl_kernels::sgemm`]), shared by the ViT
//! (full attention within a tile) and the decoder's large prefill batches (causal attention over the KV cache).
//!
//! The keys and values of each KV head are first laid out as f32 matrices, `K^T` (`[head][n]`) and `V`
//! (`[n][head]`), in one pool job over the heads ([`HeadsKv`]). Then one pool job over (query head, block of
//! [`QUERY_BLOCK`] queries) computes, each task alone on its own thread's buffers, `S = Q_block K^T` (the queries
//! read in place), each row scaled and soft-maxed over its visible prefix (zero beyond it), and `O = P V`, written
//! into the output: no synchronisation between the two products and no head at a time.
//!
//! Numerics: scores and outputs are chains of fused multiply-adds in order (over the head's values, then over the
//! keys), the softmax is [`edgevl_kernels::softmax`] (relative error below 3e-7) divided by its sum; the same at every SIMD
//! level and thread count. Over a Q8_0 cache ([`Keys::Q8_0`]) the scores are llama.cpp's instead: each query rounded
//! to Q8_0 and dotted with the quantised keys in integers (its `vec_dot_q8_0_q8_0`), then scaled.

use crate::compute::Compute;
use crate::parallel::DisjointSlice;
use edgevl_kernels::{DType, Kernels, Sgemm, VecDotType};
use std::cell::RefCell;

/// Queries per task: 8 row blocks of the small GEMM, and scores of at most a few hundred KB per thread.
const QUERY_BLOCK: usize = 48;

/// Writes KV head `g`'s `K^T` (`hd` rows of `n`) and `V` (`n` rows of `hd`): see [`HeadsKv::fill`].
pub(crate) type FillHead<'a> = dyn Fn(usize, &mut [f32], &mut [f32]) + Sync + 'a;

/// Each KV head's keys transposed (`[hd][n]`) and values (`[n][hd]`) in f32, one after the other.
#[derive(Default)]
pub(crate) struct HeadsKv {
    /// `n_head_kv` matrices `[hd][n]`.
    kt: Vec<f32>,
    /// `n_head_kv` matrices `[n][hd]`.
    v: Vec<f32>,
    /// Keys per head.
    n: usize,
    /// Width of a head.
    hd: usize,
}

impl HeadsKv {
    /// Fills the matrices of `n_head_kv` heads of `n` keys and values `hd` wide: `fill(g, kt, v)` writes head
    /// `g`'s `K^T` (`hd` rows of `n`; an empty slice unless `keys`) and `V` (`n` rows of `hd`), the heads spread over
    /// the pool. Without `keys` only the values are laid out (the scores read the keys elsewhere: [`Keys::Q8_0`]).
    pub(crate) fn fill(
        &mut self,
        cx: Compute,
        (n_head_kv, n, hd): (usize, usize, usize),
        keys: bool,
        fill: &FillHead,
    ) {
        let len = n * hd;
        let klen = if keys { len } else { 0 };
        self.kt.resize(n_head_kv * klen, 0.0);
        self.v.resize(n_head_kv * len, 0.0);
        (self.n, self.hd) = (n, hd);
        let (kt, v) = (DisjointSlice::new(&mut self.kt), DisjointSlice::new(&mut self.v));
        cx.pool.run(n_head_kv, &|g| {
            // SAFETY: task g alone takes head g's matrices.
            let (kt, v) = unsafe { (kt.range_mut(g * klen, klen), v.range_mut(g * len, len)) };
            fill(g, kt, v);
        });
    }

    /// Head `g`'s `K^T` (empty when filled without keys) and `V`.
    fn head(&self, g: usize) -> (&[f32], &[f32]) {
        let len = self.n * self.hd;
        let klen = if self.kt.is_empty() { 0 } else { len };
        (&self.kt[g * klen..][..klen], &self.v[g * len..][..len])
    }
}

/// Keys laid out as `K^T`: `kt[c * n + j] = rows[j * stride + c]` for the `n` keys of `hd` values at `rows`, each
/// `stride` after the one before (`kt` holds `hd` rows of `n`). Eight keys a step, so that each row of `kt` receives
/// eight consecutive values at once rather than one value per key (about 3x faster than a scatter per key).
pub(crate) fn transpose_keys(rows: &[f32], stride: usize, (n, hd): (usize, usize), kt: &mut [f32]) {
    const STEP: usize = 8;
    let whole = n - n % STEP;
    for j0 in (0..whole).step_by(STEP) {
        let keys: [&[f32]; STEP] = std::array::from_fn(|i| &rows[(j0 + i) * stride..][..hd]);
        for (c, out) in kt.chunks_exact_mut(n).take(hd).enumerate() {
            for (o, key) in out[j0..j0 + STEP].iter_mut().zip(&keys) {
                *o = key[c];
            }
        }
    }
    for j in whole..n {
        for (out, &x) in kt.chunks_exact_mut(n).zip(&rows[j * stride..][..hd]) {
            out[j] = x;
        }
    }
}

/// Where [`attend`] takes the keys of its scores from.
pub(crate) enum Keys<'a> {
    /// Each KV head's `K^T` in the [`HeadsKv`] (f32 products on the small GEMM).
    Transposed,
    /// Each KV head's Q8_0 key rows, `head_bytes` a position from position 0 (`rows(g)` for KV head `g`): the
    /// queries rounded to Q8_0 and dotted with them in integers, as llama.cpp scores a q8_0 cache.
    Q8_0 { rows: &'a (dyn Fn(usize) -> &'a [u8] + Sync), head_bytes: usize },
}

/// Shapes of one [`attend`] call: `m` queries, `n_head` query heads of `hd` values sharing the `n_head_kv` KV
/// heads of a [`HeadsKv`] (grouped-query attention), scores multiplied by `scale`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HeadsShape {
    pub m: usize,
    pub hd: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub scale: f32,
}

thread_local! {
    /// A task's scores (`[QUERY_BLOCK][visible keys]`), outputs (`[QUERY_BLOCK][hd]`) and Q8_0 queries, kept by each
    /// pool thread.
    static TASK_BUFFERS: RefCell<(Vec<f32>, Vec<f32>, Vec<u8>)> =
        const { RefCell::new((Vec::new(), Vec::new(), Vec::new())) };
}

/// `out[i, head h] = softmax_{j < visible(i)}(q_i,h · k_j * scale) v_j` for the `m` queries of `q` and the keys and
/// values of `kv` (the keys as `keys` says); `q` and `out` are `[m, n_head * hd]`. `visible(i)` (in `1..=n`) must
/// not decrease with `i`.
pub(crate) fn attend(
    cx: Compute,
    sh: HeadsShape,
    q: &[f32],
    (kv, keys): (&HeadsKv, &Keys),
    visible: &(dyn Fn(usize) -> usize + Sync),
    out: &mut [f32],
) {
    let HeadsShape { m, hd, n_head, n_head_kv, scale } = sh;
    let (qd, n, group) = (n_head * hd, kv.n, n_head / n_head_kv.max(1));
    assert!(kv.hd == hd && q.len() >= m * qd && out.len() >= m * qd, "head attention: shapes do not match");
    let gemm = cx.kernels.sgemm();
    let blocks = m.div_ceil(QUERY_BLOCK);
    let out = DisjointSlice::new(&mut out[..m * qd]);
    cx.pool.run(n_head * blocks, &|t| {
        let (h, i0) = (t / blocks, t % blocks * QUERY_BLOCK);
        let rows = (m - i0).min(QUERY_BLOCK);
        let (kt, v) = kv.head(h / group);
        // The keys any query of the block sees (`visible` does not decrease).
        let cols = visible(i0 + rows - 1).min(n);
        TASK_BUFFERS.with_borrow_mut(|(s, o, qq)| {
            s.resize(rows * cols, 0.0);
            o.resize(rows * hd, 0.0);
            let qb = &q[i0 * qd + h * hd..];
            match keys {
                Keys::Transposed => {
                    // Cannot fail: the query rows (`qd` apart), `K^T` (`n` apart) and the buffers were sized above.
                    let mut g =
                        Sgemm::new((rows, cols, hd), qb, qd, kt, n, s, cols).expect("head attention: scores");
                    gemm.run(&mut g);
                }
                Keys::Q8_0 { rows: key_rows, head_bytes } => q8_0_scores(
                    cx.kernels,
                    (qb, qd),
                    (key_rows(h / group), *head_bytes),
                    (rows, cols, hd),
                    qq,
                    s,
                ),
            }
            for (r, row) in s.chunks_exact_mut(cols).enumerate() {
                let vis = visible(i0 + r).min(cols);
                let (seen, hidden) = row.split_at_mut(vis);
                let (_, sum) = cx.kernels.exp_shifted(seen, scale);
                let inv = 1.0 / sum;
                seen.iter_mut().for_each(|p| *p *= inv);
                hidden.fill(0.0);
            }
            let mut g = Sgemm::new((rows, hd, cols), s, cols, v, hd, o, hd).expect("head attention: outputs");
            gemm.run(&mut g);
            for (r, o) in o.chunks_exact(hd).enumerate() {
                // SAFETY: task (h, block) alone writes head h's values of its rows.
                unsafe { out.range_mut((i0 + r) * qd + h * hd, hd) }.copy_from_slice(o);
            }
        });
    });
}

/// `s[r * cols + j]` = the integer dot of query row `r` (of `rows`, `qd` apart in `q`, `hd` values), rounded to Q8_0,
/// with Q8_0 key row `j` (of `cols`, `head_bytes` each from the start of `keys`): four queries per pass over the keys.
fn q8_0_scores(
    k: &Kernels,
    (q, qd): (&[f32], usize),
    (keys, head_bytes): (&[u8], usize),
    (rows, cols, hd): (usize, usize, usize),
    qq: &mut Vec<u8>,
    s: &mut [f32],
) {
    const QUERIES: usize = 4; // the most activation rows the format's `dot` takes
    const KEYS: usize = 64; // keys a `dot` call
    qq.resize(rows * head_bytes, 0);
    let quantize = k.quantizer(VecDotType::Q8_0);
    for (r, qr) in qq.chunks_exact_mut(head_bytes).enumerate() {
        quantize.quantize(&q[r * qd..][..hd], qr);
    }
    let dot = k.format(DType::Q8_0);
    let mut pass = [0f32; QUERIES * KEYS];
    for (qs, sr) in qq.chunks(QUERIES * head_bytes).zip(s.chunks_mut(QUERIES * cols)) {
        let n_act = qs.len() / head_bytes;
        // `pass[j * n_act + i]` holds query i's score with key j0 + j.
        for j0 in (0..cols).step_by(KEYS) {
            let nj = (cols - j0).min(KEYS);
            let out = &mut pass[..nj * n_act];
            dot.dot(&keys[j0 * head_bytes..], head_bytes, qs, head_bytes, n_act, out);
            for (i, srow) in sr.chunks_exact_mut(cols).enumerate() {
                for (j, o) in srow[j0..j0 + nj].iter_mut().enumerate() {
                    *o = out[j * n_act + i];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_keys_matches_the_definition() {
        for (n, hd, stride) in
            [(1, 1, 1), (7, 3, 5), (8, 72, 1152), (9, 4, 4), (17, 5, 9), (729, 72, 1152), (130, 128, 128)]
        {
            let rows: Vec<f32> = (0..(n - 1) * stride + hd).map(|i| i as f32 * 0.5 - 3.0).collect();
            let mut kt = vec![f32::NAN; n * hd];
            transpose_keys(&rows, stride, (n, hd), &mut kt);
            for j in 0..n {
                for c in 0..hd {
                    assert_eq!(kt[c * n + j], rows[j * stride + c], "n={n} hd={hd} j={j} c={c}");
                }
            }
        }
    }
}
