//! Full (unmasked) multi-head self-attention of a batch of tiles, one (tile, head) at a time on
//! [`crate::head_attention`] (two matrix products on the kernels' f32 GEMM, each split over the
//! pool).

use crate::compute::Compute;
use crate::head_attention::{self, put_f32, HeadScratch};
use edgevl_kernels::MatmulScratch;

/// Shapes of one attention call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AttnShape {
    /// Tiles in the batch.
    pub tiles: usize,
    /// Tokens per tile.
    pub tokens: usize,
    /// Heads.
    pub heads: usize,
    /// Width of a head.
    pub head_dim: usize,
}

/// Reusable buffers of [`attention`].
#[derive(Default)]
pub(crate) struct AttnScratch {
    /// One head's queries (pre-scaled by `1 / sqrt(hd)`), keys and transposed values.
    head: HeadScratch,
    mm: MatmulScratch,
}

/// `out = softmax(q k^T / sqrt(hd)) v` per tile and head. `q`, `k`, `v` and `out` are
/// `[tiles * tokens, heads * head_dim]`.
pub(crate) fn attention(
    cx: Compute,
    sh: AttnShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    scr: &mut AttnScratch,
    out: &mut [f32],
) {
    let AttnShape { tiles, tokens: n, heads, head_dim: hd } = sh;
    let d = heads * hd;
    let scale = 1.0 / (hd as f32).sqrt();
    let hs = &mut scr.head;
    for t in 0..tiles {
        let rows = t * n..(t + 1) * n;
        for h in 0..heads {
            let off = h * hd;
            hs.q.clear();
            for i in rows.clone() {
                hs.q.extend(q[i * d + off..][..hd].iter().map(|&x| x * scale));
            }
            put_f32(&mut hs.k, n * hd, rows.clone().flat_map(|j| k[j * d + off..][..hd].iter().copied()));
            put_f32(&mut hs.vt, n * hd, (0..hd).flat_map(|c| rows.clone().map(move |j| v[j * d + off + c])));
            // The queries carry the scale; multiplying the scores by 1.0 leaves them as they are.
            let o = head_attention::attend(cx, n, n, hd, 1.0, &|_| n, hs, &mut scr.mm);
            for (i, o) in rows.clone().zip(o.chunks_exact(hd)) {
                out[i * d + off..][..hd].copy_from_slice(o);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgevl_kernels::{Kernels, ThreadPool};

    #[test]
    fn uniform_keys_average_values() {
        // Equal keys give uniform weights: each output is the mean of the tile's values.
        let sh = AttnShape { tiles: 2, tokens: 3, heads: 2, head_dim: 2 };
        let q: Vec<f32> = (0..24).map(|i| i as f32 * 0.1).collect();
        let k = vec![0.5; 24];
        let v: Vec<f32> = (0..24).map(|i| i as f32).collect();
        let mut out = vec![0.0; 24];
        let (kernels, pool) = (Kernels::detect(), ThreadPool::new(2));
        attention(
            Compute { kernels: &kernels, pool: &pool },
            sh,
            &q,
            &k,
            &v,
            &mut AttnScratch::default(),
            &mut out,
        );
        for t in 0..2 {
            for c in 0..4 {
                let mean = (0..3).map(|i| v[(t * 3 + i) * 4 + c]).sum::<f32>() / 3.0;
                for i in 0..3 {
                    assert!((out[(t * 3 + i) * 4 + c] - mean).abs() < 1e-5);
                }
            }
        }
    }
}
