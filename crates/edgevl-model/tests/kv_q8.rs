//! The Q8_0 KV cache (llama.cpp's `-ctk q8_0 -ctv q8_0`) against the exact f32 cache on
//! SmolLM2-135M-Instruct (9 query heads sharing 3 KV heads of width 64) over real text: the
//! token ids of the llama.cpp greedy goldens (prompts and continuations) in one sequence. The
//! comparison with llama.cpp's own q8_0 cache is the perplexity test of edgevl-runtime
//! (tests/kv_q8_perplexity.rs).

use edgevl_gguf::GgufFile;
use edgevl_kernels::ThreadPool;
use edgevl_model::{Decoder, DecoderInput, KvType, LogitsWanted};
use std::sync::Arc;

fn decoder(path: &std::path::Path) -> Decoder {
    Decoder::load(Arc::new(GgufFile::open(path).expect("open model")), &edgevl_testdata::kernels())
        .expect("load model")
}

/// Prompt and continuation ids of every case of tests/fixtures/smollm2/greedy.json, concatenated.
fn text_ids() -> Vec<u32> {
    let g: serde_json::Value = serde_json::from_slice(
        &std::fs::read(edgevl_testdata::fixture("smollm2/greedy.json")).expect("greedy.json"),
    )
    .expect("json");
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array().expect("ids").iter().map(|x| x.as_u64().expect("id") as u32).collect()
    };
    g["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .flat_map(|c| [ids(&c["prompt_ids"]), ids(&c["ids"])].concat())
        .collect()
}

/// All positions' logits for `ids`, fed in passes of `chunk` tokens into a fresh cache.
fn logits(dec: &Decoder, ids: &[u32], kv_type: KvType, chunk: usize, pool: &ThreadPool) -> Vec<f32> {
    let mut kv = dec.try_new_cache(ids.len(), kv_type).expect("cache");
    let mut st = dec.new_state(chunk, ids.len());
    let mut out = Vec::with_capacity(ids.len() * dec.n_vocab());
    for part in ids.chunks(chunk) {
        let l = dec
            .forward(DecoderInput::Tokens(part), &mut kv, &mut st, pool, LogitsWanted::All)
            .expect("forward");
        out.extend_from_slice(l);
    }
    out
}

fn top2(row: &[f32]) -> (usize, f32) {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
    (idx[0], row[idx[0]] - row[idx[1]])
}

fn log_softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    let lse = row.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln() + max;
    row.iter().map(|&x| x as f64 - lse).collect()
}

/// How far one cache type's logits are from the exact cache's, over all positions.
#[derive(Debug)]
struct Divergence {
    /// Mean over positions of KL(exact || this), in nats.
    mean_kl: f64,
    /// Largest KL at one position.
    max_kl: f64,
    /// Mean over positions of the largest |logit difference|.
    mean_max_err: f64,
    /// Positions where the top-1 token is the exact cache's.
    same_top1: usize,
    /// Positions where the exact cache's top-1/top-2 margin exceeds 0.5, and how many of them
    /// keep the top-1.
    clear: usize,
    clear_same: usize,
}

fn divergence(ours: &[f32], exact: &[f32], n_vocab: usize) -> Divergence {
    let mut d =
        Divergence { mean_kl: 0.0, max_kl: 0.0, mean_max_err: 0.0, same_top1: 0, clear: 0, clear_same: 0 };
    let n = exact.len() / n_vocab;
    for (a, b) in ours.chunks(n_vocab).zip(exact.chunks(n_vocab)) {
        let (la, lb) = (log_softmax(a), log_softmax(b));
        let kl: f64 = la.iter().zip(&lb).map(|(&qa, &pb)| pb.exp() * (pb - qa)).sum();
        d.mean_kl += kl / n as f64;
        d.max_kl = d.max_kl.max(kl);
        d.mean_max_err += a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max) as f64 / n as f64;
        let ((ta, _), (tb, margin)) = (top2(a), top2(b));
        d.same_top1 += usize::from(ta == tb);
        if margin > 0.5 {
            d.clear += 1;
            d.clear_same += usize::from(ta == tb);
        }
    }
    d
}

#[test]
fn q8_0_cache_stays_close_to_the_f32_cache() {
    let dec = decoder(&edgevl_testdata::smollm2_path());
    assert_eq!(dec.hparams().head_dim, 64);
    let pool = ThreadPool::new(2);
    let ids = text_ids();
    let (n, n_vocab) = (ids.len(), dec.n_vocab());
    let exact = logits(&dec, &ids, KvType::F32, n, &pool);
    // llama.cpp's default f16 cache as the yardstick of an acceptable cache.
    let f16 = divergence(&logits(&dec, &ids, KvType::F16, n, &pool), &exact, n_vocab);
    eprintln!("f16 cache vs f32, {n} positions: {f16:?}");
    // One prefill pass, and passes of 7 (later tokens attend to keys stored by earlier passes).
    for chunk in [n, 7] {
        let q8 = divergence(&logits(&dec, &ids, KvType::Q8_0, chunk, &pool), &exact, n_vocab);
        eprintln!("q8_0 cache vs f32, passes of {chunk}: {q8:?}");
        assert!(q8.mean_kl < 0.01, "chunk {chunk}: mean KL {} nats", q8.mean_kl);
        assert!(
            q8.mean_kl < 2.0 * f16.mean_kl,
            "chunk {chunk}: mean KL {} vs the f16 cache's {}",
            q8.mean_kl,
            f16.mean_kl
        );
        assert!(q8.max_kl < 0.25, "chunk {chunk}: max KL {} nats", q8.max_kl);
        assert!(q8.mean_max_err < 1.5, "chunk {chunk}: mean max logit error {}", q8.mean_max_err);
        assert!(
            q8.same_top1 * 100 >= n * 95,
            "chunk {chunk}: top-1 equal at only {} of {n} positions",
            q8.same_top1
        );
        assert_eq!(
            q8.clear_same, q8.clear,
            "chunk {chunk}: top-1 differs where the f32 cache's margin exceeds 0.5"
        );
    }
}

#[test]
fn q8_0_cache_is_not_the_f32_cache() {
    // The comparison above would pass trivially if the q8_0 cache stored f32: it must not.
    let dec = decoder(&edgevl_testdata::smollm2_path());
    let pool = ThreadPool::new(2);
    let ids = &text_ids()[..40];
    let exact = logits(&dec, ids, KvType::F32, ids.len(), &pool);
    let q8 = logits(&dec, ids, KvType::Q8_0, ids.len(), &pool);
    assert_ne!(exact, q8);
    let f32_bytes = dec.try_new_cache(ids.len(), KvType::F32).unwrap().size_bytes();
    let q8_bytes = dec.try_new_cache(ids.len(), KvType::Q8_0).unwrap().size_bytes();
    assert_eq!(q8_bytes * 64, f32_bytes * 17, "34 bytes per 32 values vs 128");
}

#[test]
fn q8_0_cache_refuses_heads_that_are_not_whole_blocks() {
    // The tiny fixture models have heads 16 wide.
    let dec = decoder(&edgevl_testdata::fixture("tiny-qwen2/model.gguf"));
    assert_eq!(dec.hparams().head_dim, 16);
    let err = dec.try_new_cache(64, KvType::Q8_0).err().expect("q8_0 refused for 16-wide heads");
    let msg = err.to_string();
    assert!(msg.contains("q8_0") && msg.contains("16") && msg.contains("32"), "{msg}");
    // The infallible constructor hands back a cache whose first forward pass reports the same.
    let pool = ThreadPool::new(1);
    let (mut kv, mut st) = (dec.new_cache(64, KvType::Q8_0), dec.new_state(4, 64));
    let err =
        dec.forward(DecoderInput::Tokens(&[1, 2]), &mut kv, &mut st, &pool, LogitsWanted::Last).unwrap_err();
    assert_eq!(err.to_string(), msg);
    assert!(dec.try_new_cache(64, KvType::F16).is_ok());
}
