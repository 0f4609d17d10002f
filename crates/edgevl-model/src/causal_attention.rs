//! Causal attention of a large batch of new queries (a prefill chunk of at least
//! [`crate::decoder::FLASH_TILE_Q`] positions) over the cached keys and values, one head at a time
//! on [`crate::head_attention`]: the head's cached keys and values widened to f32, the scores
//! scaled, masked above the diagonal and soft-maxed row by row (exactly, as llama.cpp's tiled
//! kernel). A query-by-query loop would widen every key and value row once per query; here
//! each is widened once per chunk and head.

use crate::compute::Compute;
use crate::head_attention::{self, put_f32, HeadScratch};
use crate::kv_cache::{KvElem, LayerKv};
use edgevl_kernels::MatmulScratch;

/// Reusable buffers of [`attend`].
#[derive(Default)]
pub(crate) struct CausalScratch {
    /// One KV head's cached keys, then its values, `[n, hd]` in f32.
    rows: Vec<f32>,
    head: HeadScratch,
}

/// Shapes of one call: `m` new queries at positions `pos0..pos0 + m`, heads of `hd` values,
/// `n_head` query heads sharing `n_head_kv` key/value heads.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CausalShape {
    pub m: usize,
    pub pos0: usize,
    pub hd: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
}

/// `out[i, head h] = softmax_j<=pos0+i(q_i,h · k_j * scale) v_j` for the `m` queries of `q`
/// (`[m, n_head * hd]`) over the cached keys and values `kv` of positions `0..pos0 + m`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attend<T: KvElem>(
    cx: Compute,
    sh: CausalShape,
    q: &[f32],
    kv: LayerKv<'_, T>,
    scr: &mut CausalScratch,
    mm: &mut MatmulScratch,
    out: &mut [f32],
) {
    let CausalShape { m, pos0, hd, n_head, n_head_kv } = sh;
    let (n, qd) = (pos0 + m, n_head * hd);
    let group = n_head / n_head_kv;
    let scale = 1.0 / (hd as f32).sqrt();
    let visible = |i: usize| pos0 + i + 1;
    scr.rows.resize(n * hd, 0.0);
    for g in 0..n_head_kv {
        let (keys, values) = kv.head(g, n);
        T::row_to_f32(keys, &mut scr.rows);
        put_f32(&mut scr.head.k, n * hd, scr.rows.iter().copied());
        T::row_to_f32(values, &mut scr.rows);
        let v = &scr.rows;
        put_f32(&mut scr.head.vt, n * hd, (0..hd).flat_map(|c| v.iter().skip(c).step_by(hd).copied()));
        for h in g * group..(g + 1) * group {
            scr.head.q.clear();
            for i in 0..m {
                scr.head.q.extend_from_slice(&q[i * qd + h * hd..][..hd]);
            }
            let o = head_attention::attend(cx, m, n, hd, scale, &visible, &mut scr.head, mm);
            for (i, o) in o.chunks_exact(hd).enumerate() {
                out[i * qd + h * hd..][..hd].copy_from_slice(o);
            }
        }
    }
}
