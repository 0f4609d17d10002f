//! Causal attention of a few new queries (decode steps, and batches under
//! [`crate::decoder::FLASH_TILE_Q`] queries) over an f16 cache, flash-decoding style. Each query's
//! visible positions are cut into at most [`MAX_SPLITS`] splits of equal length; one pool task per
//! (KV head, query, split) computes, for every query head of the KV head's group in turn, the
//! split's scores, their maximum, the exponentials and their sum, and the weighted sum of the
//! split's value rows; then the splits of each (query, head) are merged, each rescaled by
//! `exp(max_split - max)`. A split depends only on how many positions its query sees, so the result
//! does not depend on the thread count, and a decode step computes a position exactly as a small
//! batch does. The group's query heads read the split's key and value rows back to back, so they
//! share them through the CPU's cache (grouped-query attention).
//!
//! Numerics: scores are f32 dot products with the 16 partial sums of [`edgevl_kernels::attention`]
//! (fused multiply-adds), times `1 / sqrt(head)`; the softmax is exact within a split (up to
//! [`edgevl_kernels::softmax`]'s relative error below 3e-7, summed in 8 partial sums) and merged in f32; value rows are summed in f32 with one fused multiply-add per element and row. This differs
//! from llama.cpp's one-query CPU path, which sums scores in f64 but keeps the value accumulator in
//! f16, rounded after every row: edgevl's outputs are the more accurate of the two (both are checked
//! against an f64 reference in the tests).

use crate::causal_attention::CausalShape;
use crate::compute::Compute;
use crate::kv_cache::LayerKv;
use crate::parallel::DisjointSlice;
use half::f16;

/// Most splits of one query's positions.
const MAX_SPLITS: usize = 4;
/// Fewest positions a split takes (shorter contexts take fewer splits).
const MIN_SPLIT: usize = 512;

/// The number of splits of a query that sees `n >= 1` positions and the positions of each (the last may
/// be shorter; none is empty, since `count < MIN_SPLIT` keeps `(count - 1) * len < n`).
fn splits(n: usize) -> (usize, usize) {
    let count = n.div_ceil(MIN_SPLIT).clamp(1, MAX_SPLITS);
    (count, n.div_ceil(count))
}

/// The partial results of the splits, reused across calls.
#[derive(Default)]
pub(crate) struct SplitScratch {
    /// Per (query, head, split): the split's maximum score, its sum of exponentials, then its weighted
    /// value sum (`head` values).
    partials: Vec<f32>,
}

/// `out[i, head h] = softmax_j<=pos0+i(q_i,h · k_j / sqrt(hd)) v_j` for the `m` queries of `q`
/// (`[m, n_head * hd]`) over the cached keys and values `kv` of positions `0..pos0 + m`.
pub(crate) fn attend(
    cx: Compute,
    sh: CausalShape,
    q: &[f32],
    kv: LayerKv<'_, f16>,
    scr: &mut SplitScratch,
    out: &mut [f32],
) {
    let CausalShape { m, pos0, hd, n_head, n_head_kv } = sh;
    let (qd, group) = (n_head * hd, n_head / n_head_kv);
    let scale = 1.0 / (hd as f32).sqrt();
    let slot = hd + 2;
    let need = m * n_head * MAX_SPLITS * slot;
    if scr.partials.len() < need {
        scr.partials.resize(need, 0.0);
    }
    let att = cx.kernels.attention();
    let (most, _) = splits(pos0 + m);
    {
        let parts = DisjointSlice::new(&mut scr.partials[..need]);
        cx.pool.run(n_head_kv * m * most, &|task| {
            let (g, i, c) = (task / (m * most), task / most % m, task % most);
            let n = pos0 + i + 1;
            let (count, len) = splits(n);
            if c >= count {
                return;
            }
            let (start, end) = (c * len, ((c + 1) * len).min(n));
            let (keys, values) = kv.head(g, end);
            let (k, v) = (&keys[start * hd..], &values[start * hd..]);
            let mut s = vec![0f32; end - start];
            for h in g * group..(g + 1) * group {
                att.dot_f16(&q[i * qd + h * hd..][..hd], k, hd, 0, &mut s);
                let (max, sum) = cx.kernels.exp_shifted(&mut s, scale);
                // SAFETY: the slot of (query i, head h, split c) is written by this task only.
                let part = unsafe { parts.range_mut(((i * n_head + h) * MAX_SPLITS + c) * slot, slot) };
                let (stats, acc) = part.split_at_mut(2);
                stats.copy_from_slice(&[max, sum]);
                acc.fill(0.0);
                att.mix_f16(acc, &s, v, hd, 0);
            }
        });
    }
    for i in 0..m {
        let (count, _) = splits(pos0 + i + 1);
        for h in 0..n_head {
            let base = (i * n_head + h) * MAX_SPLITS * slot;
            let parts = &scr.partials[base..base + count * slot];
            let max = parts.chunks_exact(slot).fold(f32::NEG_INFINITY, |a, p| a.max(p[0]));
            let o = &mut out[i * qd + h * hd..][..hd];
            o.fill(0.0);
            let mut sum = 0f32;
            for p in parts.chunks_exact(slot) {
                let w = (p[0] - max).exp();
                sum += w * p[1];
                for (a, &x) in o.iter_mut().zip(&p[2..]) {
                    *a += w * x;
                }
            }
            let inv = 1.0 / sum;
            o.iter_mut().for_each(|a| *a *= inv);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attention_reference::{causal_f64, values};
    use edgevl_kernels::{Kernels, ThreadPool};

    #[test]
    fn matches_an_f64_reference_at_every_thread_count_bit_for_bit() {
        // Grouped heads (6 query heads on 2 KV heads), contexts of 1 to 11 splits, decode steps and a small batch.
        let kernels = Kernels::detect();
        for (m, pos0, hd) in [(1, 0, 64), (1, 700, 64), (3, 1400, 32), (1, 200, 48)] {
            let sh = CausalShape { m, pos0, hd, n_head: 6, n_head_kv: 2 };
            let n = pos0 + m;
            let keys: Vec<f16> = values(1, 2 * n * hd, 2.0).into_iter().map(f16::from_f32).collect();
            let vals: Vec<f16> = values(2, 2 * n * hd, 1.0).into_iter().map(f16::from_f32).collect();
            let q = values(3, m * 6 * hd, 1.0);
            let wide = |x: &[f16]| x.iter().map(|v| v.to_f64()).collect::<Vec<_>>();
            let q64: Vec<f64> = q.iter().map(|&v| v as f64).collect();
            let want = causal_f64(sh, &q64, &wide(&keys), &wide(&vals));
            let mut runs = Vec::new();
            for threads in [1, 2, 3] {
                let pool = ThreadPool::new(threads);
                let cx = Compute { kernels: &kernels, pool: &pool };
                let mut out = vec![0f32; m * 6 * hd];
                let kv = LayerKv::new(&keys, &vals, 2, n, hd);
                attend(cx, sh, &q, kv, &mut SplitScratch::default(), &mut out);
                runs.push(out);
            }
            assert!(runs
                .iter()
                .all(|r| r.iter().map(|v| v.to_bits()).eq(runs[0].iter().map(|v| v.to_bits()))));
            let scale = want.iter().fold(0f64, |a, v| a.max(v.abs()));
            let err = runs[0].iter().zip(&want).fold(0f64, |a, (x, y)| a.max((*x as f64 - y).abs())) / scale;
            assert!(err < 1e-5, "m {m} pos0 {pos0} hd {hd}: relative error {err:e}");
        }
    }

    #[test]
    fn splits_cover_every_position_once_and_none_is_empty() {
        for n in 1..5000 {
            let (count, len) = splits(n);
            assert!((1..=MAX_SPLITS).contains(&count), "n {n}");
            assert!(count * len >= n && (count - 1) * len < n, "n {n}: {count} splits of {len}");
        }
    }
}
