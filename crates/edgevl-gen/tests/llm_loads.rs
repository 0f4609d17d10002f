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

#[test]
fn tiny_model_loads_and_gives_finite_logits_in_every_type() {
    let pool = ThreadPool::new(2);
    for dtype in [DType::Q4_0, DType::Q4_1, DType::Q8_0, DType::F16] {
        let dec = Decoder::load(tiny(dtype), &edgevl_testdata::kernels()).unwrap();
        assert_eq!(dec.n_vocab(), 512);
        let mut kv = dec.new_cache(64, KvType::F16);
        let mut st = dec.new_state(8, 64);
        let prompt = [EOT_ID, 72, 101, 108, 108, 111];
        let logits =
            dec.forward(DecoderInput::Tokens(&prompt), &mut kv, &mut st, &pool, LogitsWanted::Last).unwrap();
        assert_eq!(logits.len(), 512);
        assert!(logits.iter().all(|v| v.is_finite()), "{dtype:?}");
        // Random weights still give a non-degenerate distribution.
        let (lo, hi) = logits.iter().fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        assert!(hi > lo, "{dtype:?}: constant logits");
        let next =
            dec.forward(DecoderInput::Tokens(&[7]), &mut kv, &mut st, &pool, LogitsWanted::Last).unwrap();
        assert!(next.iter().all(|v| v.is_finite()), "{dtype:?} decode step");
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
