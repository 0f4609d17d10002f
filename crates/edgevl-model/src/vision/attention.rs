//! Full (unmasked) multi-head self-attention of a batch of tiles, as two matrix products per
//! (tile, head) on the kernels' f32 GEMM: `S = Q K^T` (keys as the weight matrix), a row
//! softmax, then `O = P V` (`V^T` as the weight matrix). Each product is split over the pool.

use crate::parallel::par_chunks_mut;
use edgevl_kernels::ops::softmax;
use edgevl_kernels::{matmul, DType, MatmulScratch, ThreadPool, WeightRef};

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
    /// One head's queries, pre-scaled by `1 / sqrt(hd)`, `[n, hd]`.
    q: Vec<f32>,
    /// One head's keys `[n, hd]` as f32 bytes (the weight matrix of `S = Q K^T`).
    k: Vec<u8>,
    /// One head's values transposed, `[hd, n]`, as f32 bytes (the weight matrix of `O = P V`).
    vt: Vec<u8>,
    /// Scores, then probabilities, `[n, n]`.
    s: Vec<f32>,
    /// One head's output `[n, hd]`.
    o: Vec<f32>,
    mm: MatmulScratch,
}

/// Writes the `len` values of `src` as consecutive little-endian f32 bytes into `dst`.
pub(crate) fn put_f32(dst: &mut Vec<u8>, len: usize, src: impl Iterator<Item = f32>) {
    dst.resize(4 * len, 0);
    for (d, v) in dst.chunks_exact_mut(4).zip(src) {
        d.copy_from_slice(&v.to_le_bytes());
    }
}

/// `out = softmax(q k^T / sqrt(hd)) v` per tile and head. `q`, `k`, `v` and `out` are
/// `[tiles * tokens, heads * head_dim]`.
pub(crate) fn attention(
    pool: &ThreadPool,
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
    scr.s.resize(n * n, 0.0);
    scr.o.resize(n * hd, 0.0);
    for t in 0..tiles {
        let rows = t * n..(t + 1) * n;
        for h in 0..heads {
            let off = h * hd;
            scr.q.clear();
            for i in rows.clone() {
                scr.q.extend(q[i * d + off..][..hd].iter().map(|&x| x * scale));
            }
            put_f32(&mut scr.k, n * hd, rows.clone().flat_map(|j| k[j * d + off..][..hd].iter().copied()));
            put_f32(&mut scr.vt, n * hd, (0..hd).flat_map(|c| rows.clone().map(move |j| v[j * d + off + c])));
            let kw = WeightRef { dtype: DType::F32, data: &scr.k, rows: n, cols: hd, packed: None };
            matmul(pool, kw, &scr.q, n, &mut scr.s, &mut scr.mm);
            par_chunks_mut(pool, &mut scr.s, n, &softmax);
            let vw = WeightRef { dtype: DType::F32, data: &scr.vt, rows: hd, cols: n, packed: None };
            matmul(pool, vw, &scr.s, n, &mut scr.o, &mut scr.mm);
            for (i, o) in rows.clone().zip(scr.o.chunks_exact(hd)) {
                out[i * d + off..][..hd].copy_from_slice(o);
            }
        }
    }
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
        attention(&ThreadPool::new(2), sh, &q, &k, &v, &mut AttnScratch::default(), &mut out);
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
