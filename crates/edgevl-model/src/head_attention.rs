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
//! level and thread count.

use crate::compute::Compute;
use crate::parallel::DisjointSlice;
use edgevl_kernels::Sgemm;
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
    /// `g`'s `K^T` (`hd` rows of `n`) and `V` (`n` rows of `hd`), the heads spread over the pool.
    pub(crate) fn fill(&mut self, cx: Compute, (n_head_kv, n, hd): (usize, usize, usize), fill: &FillHead) {
        let len = n * hd;
        self.kt.resize(n_head_kv * len, 0.0);
        self.v.resize(n_head_kv * len, 0.0);
        (self.n, self.hd) = (n, hd);
        let (kt, v) = (DisjointSlice::new(&mut self.kt), DisjointSlice::new(&mut self.v));
        cx.pool.run(n_head_kv, &|g| {
            // SAFETY: task g alone takes head g's matrices.
            let (kt, v) = unsafe { (kt.range_mut(g * len, len), v.range_mut(g * len, len)) };
            fill(g, kt, v);
        });
    }

    /// Head `g`'s `K^T` and `V`.
    fn head(&self, g: usize) -> (&[f32], &[f32]) {
        let len = self.n * self.hd;
        (&self.kt[g * len..][..len], &self.v[g * len..][..len])
    }
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
    /// A task's scores (`[QUERY_BLOCK][visible keys]`) and outputs (`[QUERY_BLOCK][hd]`), kept by each pool thread.
    static TASK_BUFFERS: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// `out[i, head h] = softmax_{j < visible(i)}(q_i,h · k_j * scale) v_j` for the `m` queries of `q` and the keys and
/// values of `kv`; `q` and `out` are `[m, n_head * hd]`. `visible(i)` (in `1..=n`) must not decrease with `i`.
pub(crate) fn attend(
    cx: Compute,
    sh: HeadsShape,
    q: &[f32],
    kv: &HeadsKv,
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
        TASK_BUFFERS.with_borrow_mut(|(s, o)| {
            s.resize(rows * cols, 0.0);
            o.resize(rows * hd, 0.0);
            let qb = &q[i0 * qd + h * hd..];
            // Cannot fail: the query rows (`qd` apart), `K^T` (`n` apart) and the buffers were sized above.
            let mut g = Sgemm::new((rows, cols, hd), qb, qd, kt, n, s, cols).expect("head attention: scores");
            gemm.run(&mut g);
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
