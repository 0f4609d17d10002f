//! Causal attention of a large batch of new queries (a prefill chunk of at least
//! [`crate::decoder::FLASH_TILE_Q`] positions) over the cached keys and values, on
//! [`crate::head_attention`]: each KV head's cached keys and values widened to f32 once per chunk
//! (keys transposed), then every (query head, block of queries) at once, the scores scaled, masked
//! above the diagonal and soft-maxed row by row (exactly, as llama.cpp's tiled kernel). A
//! query-by-query loop would widen every key and value row once per query.

use crate::compute::Compute;
use crate::head_attention::{self, HeadsKv, HeadsShape};
use crate::kv_cache::{KvElem, LayerKv};

/// Reusable buffers of [`attend`].
#[derive(Default)]
pub(crate) struct CausalScratch {
    /// The KV heads' keys and values of the chunk's context in f32.
    kv: HeadsKv,
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
pub(crate) fn attend<T: KvElem>(
    cx: Compute,
    sh: CausalShape,
    q: &[f32],
    kv: LayerKv<'_, T>,
    scr: &mut CausalScratch,
    out: &mut [f32],
) {
    let CausalShape { m, pos0, hd, n_head, n_head_kv } = sh;
    let n = pos0 + m;
    scr.kv.fill(cx, (n_head_kv, n, hd), &|g, kt, v| {
        let (keys, values) = kv.head(g, n);
        // The widened keys pass through `v` on their way to `K^T`.
        T::row_to_f32(keys, v);
        for (j, row) in v.chunks_exact(hd).enumerate() {
            for (c, &x) in row.iter().enumerate() {
                kt[c * n + j] = x;
            }
        }
        T::row_to_f32(values, v);
    });
    let shape = HeadsShape { m, hd, n_head, n_head_kv, scale: 1.0 / (hd as f32).sqrt() };
    head_attention::attend(cx, shape, q, &scr.kv, &|i| pos0 + i + 1, out);
}
