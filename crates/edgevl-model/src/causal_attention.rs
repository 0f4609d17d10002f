//! Causal attention of a large batch of new queries (a prefill chunk of at least
//! [`crate::decoder::FLASH_TILE_Q`] positions) over the cached keys and values, on
//! [`crate::head_attention`]: each KV head's cached keys and values widened to f32 once per chunk
//! (keys transposed) by the task that attends with them, every (query head, block of queries) at once, the scores scaled, masked
//! above the diagonal and soft-maxed row by row (exactly, as llama.cpp's tiled kernel). A
//! query-by-query loop would widen every key and value row once per query.

use crate::compute::Compute;
use crate::head_attention::{self, HeadsShape, Keys};
use crate::kv_cache::{KvElem, LayerKv, Q8Planes};
use edgevl_kernels::DType;

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
    out: &mut [f32],
) {
    let CausalShape { m, pos0, hd, n_head, n_head_kv } = sh;
    let n = pos0 + m;
    let fill = |g: usize, kt: &mut [f32], v: &mut [f32]| {
        let (keys, values) = kv.head(g, n);
        // The widened keys pass through `v` on their way to `K^T`.
        T::row_to_f32(keys, v);
        cx.kernels.transpose(v, hd, (n, hd), kt);
        T::row_to_f32(values, v);
    };
    let shape = HeadsShape { m, n, hd, n_head, n_head_kv, scale: 1.0 / (hd as f32).sqrt() };
    head_attention::attend(cx, shape, q, (&Keys::Transposed, &fill), &|i| pos0 + i + 1, out);
}

/// As [`attend`] over a Q8_0 cache: the scores as llama.cpp computes them over a q8_0 cache (each query rounded to
/// Q8_0 and dotted with the quantised keys in integers, then scaled), the values dequantised to f32 once per call;
/// the softmax and the weighted sum as [`attend`]'s.
pub(crate) fn attend_q8_0(cx: Compute, sh: CausalShape, q: &[f32], kv: &Q8Planes, l: usize, out: &mut [f32]) {
    let CausalShape { m, pos0, hd, n_head, n_head_kv } = sh;
    let n = pos0 + m;
    let dequantize = cx.kernels.format(DType::Q8_0);
    let fill =
        |g: usize, _: &mut [f32], v: &mut [f32]| dequantize.dequantize(&kv.v[l][kv.head_rows(g, n)], v);
    let shape = HeadsShape { m, n, hd, n_head, n_head_kv, scale: 1.0 / (hd as f32).sqrt() };
    let rows = |g: usize| &kv.k[l][kv.head_rows(g, n)];
    let keys = Keys::Q8_0 { rows: &rows, head_bytes: kv.head_bytes };
    head_attention::attend(cx, shape, q, (&keys, &fill), &|i| pos0 + i + 1, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attention_reference::{causal_f64, values};
    use crate::kv_cache::{KvCache, KvPlanes, KvType};
    use edgevl_kernels::formats::dequantize_act;
    use edgevl_kernels::{Kernels, ThreadPool, VecDotType};
    use half::f16;

    /// [`attend`]'s outputs over head-major keys and values of type `T` on 1, 2 and 3 threads (which must agree bit
    /// for bit), and their largest error relative to [`causal_f64`] of the same (rounded) keys and values.
    fn f32_or_f16_run<T: KvElem>(k: &Kernels, sh: CausalShape, q: &[f32], (keys, vals): (&[T], &[T])) -> f64 {
        let n = sh.pos0 + sh.m;
        let wide = |x: &[T]| {
            let mut w = vec![0f32; x.len()];
            T::row_to_f32(x, &mut w);
            w.into_iter().map(f64::from).collect::<Vec<_>>()
        };
        let q64: Vec<f64> = q.iter().map(|&v| f64::from(v)).collect();
        let want = causal_f64(sh, &q64, &wide(keys), &wide(vals));
        let mut runs = Vec::new();
        for threads in [1, 2, 3] {
            let pool = ThreadPool::new(threads);
            let mut out = vec![0f32; sh.m * sh.n_head * sh.hd];
            let kv = LayerKv::new(keys, vals, sh.n_head_kv, n, sh.hd);
            attend(Compute { kernels: k, pool: &pool }, sh, q, kv, &mut out);
            runs.push(out);
        }
        assert!(runs.iter().all(|r| r.iter().map(|v| v.to_bits()).eq(runs[0].iter().map(|v| v.to_bits()))));
        let scale = want.iter().fold(0f64, |a, v| a.max(v.abs()));
        runs[0].iter().zip(&want).fold(0f64, |a, (x, y)| a.max((*x as f64 - y).abs())) / scale
    }

    #[test]
    fn f32_and_f16_caches_match_attention_in_f64_at_every_level_and_thread_count() {
        // Odd batch sizes, depths and head widths; grouped and ungrouped heads, with fewer KV heads than two tasks a
        // thread (a KV head's work then split over tasks); blocks of queries cut at QUERY_BLOCK.
        let cases = [
            (64, 0, 16, 6, 2),
            (65, 37, 24, 3, 3),
            (131, 201, 20, 4, 1),
            (49, 3, 72, 9, 3),
            (50, 17, 80, 8, 8),
        ];
        for (k, (m, pos0, hd, n_head, n_head_kv)) in
            Kernels::all_levels().into_iter().flat_map(|k| cases.map(|c| (k.clone(), c)))
        {
            let sh = CausalShape { m, pos0, hd, n_head, n_head_kv };
            let len = n_head_kv * (pos0 + m) * hd;
            let (keys, vals) = (values(1, len, 2.0), values(2, len, 1.0));
            let q = values(3, m * n_head * hd, 1.5);
            let err = f32_or_f16_run(&k, sh, &q, (&keys, &vals));
            assert!(err < 1e-5, "{:?} f32 {sh:?}: relative error {err:e}", k.level());
            let half = |x: &[f32]| x.iter().map(|&v| f16::from_f32(v)).collect::<Vec<_>>();
            let err = f32_or_f16_run(&k, sh, &q, (&half(&keys), &half(&vals)));
            assert!(err < 1e-5, "{:?} f16 {sh:?}: relative error {err:e}", k.level());
        }
    }

    /// llama.cpp's attention over a q8_0 cache in f64: each query head's row rounded to Q8_0 (by `k`'s quantiser),
    /// keys and values dequantised, then [`causal_f64`].
    fn reference(k: &Kernels, sh: CausalShape, q: &[f32], p: &Q8Planes) -> Vec<f64> {
        let CausalShape { m, pos0, hd, n_head_kv, .. } = sh;
        let n_ctx = pos0 + m;
        let widen = |plane: &[u8]| {
            let mut out = vec![0f32; n_head_kv * n_ctx * hd];
            for (g, o) in out.chunks_exact_mut(n_ctx * hd).enumerate() {
                k.format(DType::Q8_0).dequantize(&plane[p.head_rows(g, n_ctx)], o);
            }
            out.into_iter().map(f64::from).collect::<Vec<_>>()
        };
        let (mut qq, mut qr) = (vec![0u8; p.head_bytes], vec![0f32; hd]);
        let mut rounded = Vec::with_capacity(q.len());
        for row in q.chunks_exact(hd) {
            k.quantizer(VecDotType::Q8_0).quantize(row, &mut qq);
            dequantize_act(VecDotType::Q8_0, &qq, &mut qr);
            rounded.extend(qr.iter().map(|&v| f64::from(v)));
        }
        causal_f64(sh, &rounded, &widen(&p.k[0]), &widen(&p.v[0]))
    }

    #[test]
    fn q8_0_cache_matches_llama_cpp_scores_in_f64_at_every_level_and_thread_count() {
        // Odd batch sizes and depths, grouped and ungrouped heads, blocks of queries cut at QUERY_BLOCK.
        let cases = [(64, 0, 32, 6, 2), (65, 37, 64, 3, 3), (131, 201, 32, 4, 1)];
        for (k, (m, pos0, hd, n_head, n_head_kv)) in
            Kernels::all_levels().into_iter().flat_map(|k| cases.map(|c| (k.clone(), c)))
        {
            let (n, kv_dim) = (pos0 + m, n_head_kv * hd);
            let mut cache = KvCache::new(1, n, kv_dim, hd, KvType::Q8_0).expect("cache");
            cache.store(&k, 0, 0, &values(1, n * kv_dim, 2.0), &values(2, n * kv_dim, 1.0));
            let KvPlanes::Q8_0(p) = cache.planes() else { unreachable!("a q8_0 cache") };
            let sh = CausalShape { m, pos0, hd, n_head, n_head_kv };
            let q = values(3, m * n_head * hd, 1.5);
            let want = reference(&k, sh, &q, p);
            let mut runs = Vec::new();
            for threads in [1, 2, 3] {
                let pool = ThreadPool::new(threads);
                let mut out = vec![0f32; m * n_head * hd];
                let cx = Compute { kernels: &k, pool: &pool };
                attend_q8_0(cx, sh, &q, p, 0, &mut out);
                runs.push(out);
            }
            assert!(runs
                .iter()
                .all(|r| r.iter().map(|v| v.to_bits()).eq(runs[0].iter().map(|v| v.to_bits()))));
            let scale = want.iter().fold(0f64, |a, v| a.max(v.abs()));
            let err = runs[0].iter().zip(&want).fold(0f64, |a, (x, y)| a.max((*x as f64 - y).abs())) / scale;
            assert!(err < 1e-5, "{:?} m {m} pos0 {pos0} hd {hd}: relative error {err:e}", k.level());
        }
    }
}
