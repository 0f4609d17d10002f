//! Full (unmasked) multi-head self-attention of a batch of tiles, one pool task per (tile, head).

use crate::parallel::DisjointSlice;
use edgevl_kernels::ops::softmax;
use edgevl_kernels::ThreadPool;

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
/// `[tiles * tokens, heads * head_dim]`; `scratch` is resized to hold the head-major result.
pub(crate) fn attention(
    pool: &ThreadPool,
    sh: AttnShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    scratch: &mut Vec<f32>,
    out: &mut [f32],
) {
    let AttnShape { tiles, tokens: n, heads, head_dim: hd } = sh;
    let d = heads * hd;
    let scale = 1.0 / (hd as f32).sqrt();
    scratch.resize(tiles * heads * n * hd, 0.0);
    let heads_out = DisjointSlice::new(&mut scratch[..]);
    pool.run(tiles * heads, &|task| {
        let (t, h) = (task / heads, task % heads);
        // SAFETY: task (t, h) is the only one writing block `task` of the head-major buffer.
        let dst = unsafe { heads_out.range_mut(task * n * hd, n * hd) };
        let base = t * n * d + h * hd;
        let mut scores = vec![0f32; n];
        for i in 0..n {
            let qi = &q[base + i * d..][..hd];
            for (j, s) in scores.iter_mut().enumerate() {
                let kj = &k[base + j * d..][..hd];
                *s = dot(qi, kj) * scale;
            }
            softmax(&mut scores);
            let o = &mut dst[i * hd..][..hd];
            o.fill(0.0);
            for (j, &p) in scores.iter().enumerate() {
                let vj = &v[base + j * d..][..hd];
                for (acc, &val) in o.iter_mut().zip(vj) {
                    *acc += p * val;
                }
            }
        }
    });
    for t in 0..tiles {
        for h in 0..heads {
            let src = &scratch[(t * heads + h) * n * hd..][..n * hd];
            for i in 0..n {
                out[(t * n + i) * d + h * hd..][..hd].copy_from_slice(&src[i * hd..][..hd]);
            }
        }
    }
}

/// Dot product with eight independent partial sums (vectorisable).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_keys_average_values() {
        // Equal keys give uniform weights: each output is the mean of the tile's values.
        let sh = AttnShape { tiles: 2, tokens: 3, heads: 2, head_dim: 2 };
        let q: Vec<f32> = (0..24).map(|i| i as f32 * 0.1).collect();
        let k = vec![0.5; 24];
        let v: Vec<f32> = (0..24).map(|i| i as f32).collect();
        let mut out = vec![0.0; 24];
        attention(&ThreadPool::new(2), sh, &q, &k, &v, &mut Vec::new(), &mut out);
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
