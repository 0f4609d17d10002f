//! Full (unmasked) multi-head self-attention of a batch of tiles, one tile at a time on
//! [`crate::head_attention`] (all heads and query blocks of a tile in one pool job, each head's keys laid out by
//! the task that attends with them).

use crate::compute::Compute;
use crate::head_attention::{self, HeadsShape, Keys};

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

/// `out = softmax(q k^T / sqrt(hd)) v` per tile and head. `q`, `k`, `v` and `out` are
/// `[tiles * tokens, heads * head_dim]`.
pub(crate) fn attention(cx: Compute, sh: AttnShape, q: &[f32], k: &[f32], v: &[f32], out: &mut [f32]) {
    let AttnShape { tiles, tokens: n, heads, head_dim: hd } = sh;
    let d = heads * hd;
    let shape = HeadsShape { m: n, n, hd, n_head: heads, n_head_kv: heads, scale: 1.0 / (hd as f32).sqrt() };
    for t in 0..tiles {
        let rows = t * n * d..(t + 1) * n * d;
        let (k, v) = (&k[rows.clone()], &v[rows.clone()]);
        let fill = |h: usize, kt: &mut [f32], vh: &mut [f32]| {
            cx.kernels.transpose(&k[h * hd..], d, (n, hd), kt);
            for (vr, out) in v.chunks_exact(d).zip(vh.chunks_exact_mut(hd)) {
                out.copy_from_slice(&vr[h * hd..][..hd]);
            }
        };
        head_attention::attend(
            cx,
            shape,
            &q[rows.clone()],
            (&Keys::Transposed, &fill),
            &|_| n,
            &mut out[rows],
        );
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
        attention(Compute { kernels: &kernels, pool: &pool }, sh, &q, &k, &v, &mut out);
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
