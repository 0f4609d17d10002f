//! Test support: causal attention in f64, the yardstick of the decoder's attention paths, and the random data the
//! tests feed them.

use crate::causal_attention::CausalShape;

/// Uniform values in `[-scale, scale)` from a fixed linear congruential sequence.
pub(crate) fn values(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            ((x >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// `softmax_{j <= pos0 + i}(q_i,h · k_j / sqrt(hd)) v_j` in f64 for every query `i` and head `h`: `q` is
/// `[m][n_head * hd]`, `keys` and `vals` head-major (`[n_head_kv][pos0 + m][hd]`), query head `h` reading KV head
/// `h / (n_head / n_head_kv)`.
pub(crate) fn causal_f64(sh: CausalShape, q: &[f64], keys: &[f64], vals: &[f64]) -> Vec<f64> {
    let CausalShape { m, pos0, hd, n_head, n_head_kv } = sh;
    let n_ctx = pos0 + m;
    let mut out = vec![0f64; m * n_head * hd];
    for i in 0..m {
        for h in 0..n_head {
            let off = h / (n_head / n_head_kv) * n_ctx * hd;
            let qh = &q[(i * n_head + h) * hd..][..hd];
            let n = pos0 + i + 1;
            let s: Vec<f64> = (0..n)
                .map(|j| {
                    qh.iter().zip(&keys[off + j * hd..][..hd]).map(|(a, b)| a * b).sum::<f64>()
                        / (hd as f64).sqrt()
                })
                .collect();
            let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let p: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
            let sum: f64 = p.iter().sum();
            for d in 0..hd {
                out[(i * n_head + h) * hd + d] =
                    (0..n).map(|j| p[j] * vals[off + j * hd + d]).sum::<f64>() / sum;
            }
        }
    }
    out
}
