//! Causal attention of a large batch of new queries (a prefill chunk of at least
//! [`crate::decoder::FLASH_TILE_Q`] positions) over the cached keys and values, as two f32 matrix
//! products per head on the kernels' tiled GEMM: `S = Q K^T` (the head's cached keys widened to
//! f32 as the weight matrix), scaled, masked above the diagonal and soft-maxed row by row (exactly,
//! as llama.cpp's tiled kernel), then `O = P V` (`V^T` as the weight matrix). Each product is split
//! over the pool. A query-by-query loop would widen every key and value row once per query; here
//! each is widened once per chunk and head.

use crate::kv_cache::KvElem;
use crate::parallel::DisjointSlice;
use crate::vision::put_f32;
use edgevl_kernels::ops::softmax;
use edgevl_kernels::{matmul, DType, MatmulScratch, ThreadPool, WeightRef};

/// Reusable buffers of [`attend`].
#[derive(Default)]
pub(crate) struct CausalScratch {
    /// One head's queries `[m, hd]`.
    q: Vec<f32>,
    /// One KV head's cached keys `[n, hd]` as f32 bytes.
    k: Vec<u8>,
    /// One KV head's cached values `[n, hd]` in f32, then transposed, `[hd, n]`, as f32 bytes.
    v: Vec<f32>,
    vt: Vec<u8>,
    /// Scores, then probabilities, `[m, n]`.
    s: Vec<f32>,
    /// One head's output `[m, hd]`.
    o: Vec<f32>,
}

/// Shapes of one call: `m` new queries at positions `pos0..pos0 + m`, heads of `hd` values,
/// `n_head` query heads sharing `n_head_kv` key/value heads, cache rows `kvd` values wide.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CausalShape {
    pub m: usize,
    pub pos0: usize,
    pub hd: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub kvd: usize,
}

/// `out[i, head h] = softmax_j<=pos0+i(q_i,h · k_j * scale) v_j` for the `m` queries of `q`
/// (`[m, n_head * hd]`) over the cached `keys` / `values` of positions `0..pos0 + m`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attend<T: KvElem>(
    pool: &ThreadPool,
    sh: CausalShape,
    q: &[f32],
    keys: &[T],
    values: &[T],
    scr: &mut CausalScratch,
    mm: &mut MatmulScratch,
    out: &mut [f32],
) {
    let CausalShape { m, pos0, hd, n_head, n_head_kv, kvd } = sh;
    let (n, qd) = (pos0 + m, n_head * hd);
    let group = n_head / n_head_kv;
    let scale = 1.0 / (hd as f32).sqrt();
    scr.s.resize(m * n, 0.0);
    scr.o.resize(m * hd, 0.0);
    scr.v.resize(n * hd, 0.0);
    for g in 0..n_head_kv {
        let off = g * hd;
        for (j, dst) in scr.v.chunks_exact_mut(hd).enumerate() {
            T::row_to_f32(&keys[j * kvd + off..][..hd], dst);
        }
        put_f32(&mut scr.k, n * hd, scr.v.iter().copied());
        for (j, dst) in scr.v.chunks_exact_mut(hd).enumerate() {
            T::row_to_f32(&values[j * kvd + off..][..hd], dst);
        }
        let v = &scr.v;
        put_f32(&mut scr.vt, n * hd, (0..hd).flat_map(|c| v.iter().skip(c).step_by(hd).copied()));
        for h in g * group..(g + 1) * group {
            scr.q.clear();
            for i in 0..m {
                scr.q.extend_from_slice(&q[i * qd + h * hd..][..hd]);
            }
            let kw = WeightRef { dtype: DType::F32, data: &scr.k, rows: n, cols: hd, packed: None };
            matmul(pool, kw, &scr.q, m, &mut scr.s, mm);
            let s = DisjointSlice::new(&mut scr.s[..m * n]);
            pool.run(m, &|i| {
                // SAFETY: task i alone takes score row i.
                let r = unsafe { s.range_mut(i * n, n) };
                let visible = pos0 + i + 1;
                r[..visible].iter_mut().for_each(|x| *x *= scale);
                softmax(&mut r[..visible]);
                r[visible..].fill(0.0);
            });
            let vw = WeightRef { dtype: DType::F32, data: &scr.vt, rows: hd, cols: n, packed: None };
            matmul(pool, vw, &scr.s, m, &mut scr.o, mm);
            for (i, o) in scr.o.chunks_exact(hd).enumerate() {
                out[i * qd + h * hd..][..hd].copy_from_slice(o);
            }
        }
    }
}
