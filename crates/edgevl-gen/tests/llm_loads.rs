//! A generated tiny LLaMA file is a model edgevl runs: the decoder loads it and produces finite
//! logits, and its synthetic vocabulary tokenises any text into byte tokens.

use std::sync::Arc;

use edgevl_gen::llm::{build_llama, preset, LlamaOptions, EOT_ID};
use edgevl_gguf::GgufFile;
use edgevl_kernels::{DType, ThreadPool};
use edgevl_model::{Decoder, DecoderInput, KvType, LogitsWanted};
use edgevl_tokenizer::Tokenizer;

fn tiny(dtype: DType) -> Arc<GgufFile> {
    let shape = preset("tiny").unwrap();
    let w = build_llama(&shape, dtype, 42, LlamaOptions::default(), |_, _| {}).unwrap();
    Arc::new(GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap())
}

/// The cosine of the angle between `a` and `b`.
fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| f64::from(*p) * f64::from(*q)).sum::<f64>();
    dot(a, b) / (dot(a, a) * dot(b, b)).sqrt()
}

/// `max |a - b| / max |b|`.
fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

#[test]
fn tiny_model_in_every_type_gives_the_f32_models_logits() {
    let pool = ThreadPool::new(2);
    let prompt = [EOT_ID, 72, 101, 108, 108, 111];
    // Every position's logits of `tokens` in one pass, and the last row after prefilling all but
    // the last token then decoding it.
    let run = |dtype| {
        let dec = Decoder::load(tiny(dtype), &edgevl_testdata::kernels()).unwrap();
        assert_eq!(dec.n_vocab(), 512);
        let (mut kv, mut st) = (dec.new_cache(64, KvType::F32), dec.new_state(8, 64));
        let all = dec
            .forward(DecoderInput::Tokens(&prompt), &mut kv, &mut st, &pool, LogitsWanted::All)
            .unwrap()
            .to_vec();
        let (mut kv, mut st) = (dec.new_cache(64, KvType::F32), dec.new_state(8, 64));
        let (head, last) = prompt.split_at(prompt.len() - 1);
        dec.forward(DecoderInput::Tokens(head), &mut kv, &mut st, &pool, LogitsWanted::None).unwrap();
        let step = dec
            .forward(DecoderInput::Tokens(last), &mut kv, &mut st, &pool, LogitsWanted::Last)
            .unwrap()
            .to_vec();
        (all, step)
    };
    let (reference, ref_step) = run(DType::F32);
    assert_eq!(reference.len(), prompt.len() * 512);
    assert!(reference.iter().all(|v| v.is_finite()));
    // Random weights still give a non-degenerate distribution.
    let (lo, hi) = reference.iter().fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    assert!(hi > lo, "constant logits");
    // A decode step through the KV cache equals the last row of the whole prompt in one pass.
    let last_row = &reference[(prompt.len() - 1) * 512..];
    assert!(rel_err(&ref_step, last_row) < 1e-5, "decode step vs prefill: {}", rel_err(&ref_step, last_row));
    // The same seed gives the same weights in every type: each type's logits are the F32 model's
    // up to its rounding.
    // Max error relative to the range, and the cosine to F32's logits (4-bit weights through two
    // random layers move single logits a lot, not the whole vector).
    for (dtype, tol, min_cos) in [
        (DType::F16, 5e-3, 0.99999),
        (DType::Q8_0, 4e-2, 0.999),
        (DType::Q4_1, 0.5, 0.97),
        (DType::Q4_0, 0.5, 0.97),
    ] {
        let (all, step) = run(dtype);
        let (err, cos) = (rel_err(&all, &reference), cosine(&all, &reference));
        eprintln!("{dtype:?}: logits within {err:.4} of F32's (relative to their range), cosine {cos:.6}");
        assert!(err < tol && cos > min_cos, "{dtype:?}: {err} from F32's logits, cosine {cos}");
        assert!(rel_err(&step, &all[(prompt.len() - 1) * 512..]) < 1e-4, "{dtype:?} decode step vs prefill");
    }
}

#[test]
fn same_seed_same_bytes() {
    let shape = preset("tiny").unwrap();
    let a =
        build_llama(&shape, DType::Q4_0, 5, LlamaOptions::default(), |_, _| {}).unwrap().to_bytes().unwrap();
    let b =
        build_llama(&shape, DType::Q4_0, 5, LlamaOptions::default(), |_, _| {}).unwrap().to_bytes().unwrap();
    let c =
        build_llama(&shape, DType::Q4_0, 6, LlamaOptions::default(), |_, _| {}).unwrap().to_bytes().unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn synthetic_vocabulary_tokenises_text_into_bytes() {
    let f = tiny(DType::Q8_0);
    let tok = Tokenizer::from_gguf(f.metadata()).unwrap();
    let ids = tok.encode("Hi\n é", false, false);
    // No merges: one token per UTF-8 byte, in byte order.
    assert_eq!(ids, vec![72, 105, 10, 32, 0xC3, 0xA9]);
    assert_eq!(tok.decode(&ids), "Hi\n é");
    assert_eq!(tok.eos(), Some(EOT_ID));
}

#[test]
fn image_tokens_tokenise_as_single_control_tokens() {
    let shape = preset("tiny").unwrap();
    let opts = LlamaOptions { image_tokens: true };
    let w = build_llama(&shape, DType::Q8_0, 42, opts, |_, _| {}).unwrap();
    let f = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
    let tok = Tokenizer::from_gguf(f.metadata()).unwrap();
    let text = "<|image_start|><|img_row_2_col_3|>A<|img_thumbnail|><|image_end|>";
    let ids = tok.encode(text, false, true);
    let want: Vec<u32> = ["<|image_start|>", "<|img_row_2_col_3|>"]
        .iter()
        .map(|t| tok.token_id(t).unwrap())
        .chain([65])
        .chain(["<|img_thumbnail|>", "<|image_end|>"].iter().map(|t| tok.token_id(t).unwrap()))
        .collect();
    assert_eq!(ids, want);
    // Without special parsing the same text is plain bytes.
    assert_eq!(tok.encode(text, false, false).len(), text.len());
    // The model still runs.
    let dec = Decoder::load(Arc::new(f), &edgevl_testdata::kernels()).unwrap();
    assert_eq!(dec.n_vocab(), 512);
}
