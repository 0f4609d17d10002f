//! The decoder against Hugging Face transformers: tiny random `Qwen2ForCausalLM` (NeoX RoPE, GQA,
//! q/k/v biases, tied output) and `LlamaForCausalLM` (normal RoPE, untied output; and with Llama
//! 3.1's RoPE scaling), converted with
//! llama.cpp's convert_hf_to_gguf.py; transformers' logits at every position are committed
//! (scripts/make_tiny_hf_models.py).

use edgevl_gguf::GgufFile;
use edgevl_kernels::ThreadPool;
use edgevl_model::{Decoder, DecoderInput, KvType, LogitsWanted};
use std::sync::Arc;

struct Case {
    ids: Vec<u32>,
    logits: Vec<f32>,
    n_vocab: usize,
}

fn load_cases(name: &str) -> Vec<Case> {
    let dir = edgevl_testdata::fixture(name);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("logits.json")).expect("logits.json")).expect("json");
    index["prompts"]
        .as_array()
        .expect("prompts")
        .iter()
        .map(|p| {
            let ids: Vec<u32> =
                p["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
            let n_vocab = p["shape"][1].as_u64().unwrap() as usize;
            let bytes = std::fs::read(dir.join(p["file"].as_str().unwrap())).expect("logits file");
            let logits: Vec<f32> =
                bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            assert_eq!(logits.len(), ids.len() * n_vocab);
            Case { ids, logits, n_vocab }
        })
        .collect()
}

fn decoder(name: &str) -> Decoder {
    let file = GgufFile::open(edgevl_testdata::fixture(&format!("{name}/model.gguf"))).expect("open");
    Decoder::load(Arc::new(file), &edgevl_testdata::kernels()).expect("load")
}

fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).unwrap()
}

/// Run every prompt with `chunk`-token forward passes and compare with transformers.
fn check_against_transformers(name: &str, chunk: usize) {
    let dec = decoder(name);
    let pool = ThreadPool::new(2);
    for (ci, case) in load_cases(name).iter().enumerate() {
        assert_eq!(dec.n_vocab(), case.n_vocab);
        let mut kv = dec.new_cache(256, KvType::F32);
        let mut st = dec.new_state(chunk, 256);
        let mut ours = Vec::new();
        for part in case.ids.chunks(chunk) {
            let l =
                dec.forward(DecoderInput::Tokens(part), &mut kv, &mut st, &pool, LogitsWanted::All).unwrap();
            ours.extend_from_slice(l);
        }
        let mut max_err = 0f32;
        for (t, (a, b)) in ours.chunks(case.n_vocab).zip(case.logits.chunks(case.n_vocab)).enumerate() {
            assert_eq!(argmax(a), argmax(b), "{name} prompt {ci}: top-1 differs at position {t}");
            max_err = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(max_err, f32::max);
        }
        eprintln!("{name} prompt {ci} chunk {chunk}: max abs logit error {max_err:.2e}");
        assert!(max_err < 5e-5, "{name} prompt {ci}: max abs error {max_err}");
    }
}

#[test]
fn tiny_qwen2_matches_transformers() {
    check_against_transformers("tiny-qwen2", 512);
}

#[test]
fn tiny_llama_spm_matches_transformers() {
    check_against_transformers("tiny-llama-spm", 512);
}

/// Llama 3.1's RoPE scaling (`rope_type: llama3`), which llama.cpp's converter writes as the
/// frequency factors `rope_freqs.weight`: edgevl read the file and ignored the tensor (plain RoPE).
#[test]
fn tiny_llama3_rope_scaling_matches_transformers() {
    let file = GgufFile::open(edgevl_testdata::fixture("tiny-llama3-rope/model.gguf")).expect("open");
    assert!(file.tensor("rope_freqs.weight").is_some(), "the converter wrote the factors");
    check_against_transformers("tiny-llama3-rope", 64);
    check_against_transformers("tiny-llama3-rope", 5);
}

#[test]
fn chunked_prefill_matches_transformers() {
    for chunk in [1, 7] {
        check_against_transformers("tiny-qwen2", chunk);
        check_against_transformers("tiny-llama-spm", chunk);
    }
}

#[test]
fn embeddings_input_equals_token_input() {
    // Feeding the token embeddings by hand must give the same logits as feeding the ids.
    let dec = decoder("tiny-qwen2");
    let pool = ThreadPool::new(1);
    let case = &load_cases("tiny-qwen2")[0];
    let d = dec.hparams().n_embd;
    let file = GgufFile::open(edgevl_testdata::fixture("tiny-qwen2/model.gguf")).unwrap();
    let (info, data) = file.require_tensor("token_embd.weight", &[d as u64, dec.n_vocab() as u64]).unwrap();
    assert_eq!(info.ggml_type, edgevl_gguf::GgmlType::F32);
    let table: Vec<f32> =
        data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    let embd: Vec<f32> =
        case.ids.iter().flat_map(|&t| table[t as usize * d..(t as usize + 1) * d].to_vec()).collect();
    let n = case.ids.len();
    let (mut kv1, mut st1) = (dec.new_cache(64, KvType::F32), dec.new_state(n, 64));
    let a = dec
        .forward(DecoderInput::Tokens(&case.ids), &mut kv1, &mut st1, &pool, LogitsWanted::All)
        .unwrap()
        .to_vec();
    let (mut kv2, mut st2) = (dec.new_cache(64, KvType::F32), dec.new_state(n, 64));
    let b =
        dec.forward(DecoderInput::Embeddings(&embd), &mut kv2, &mut st2, &pool, LogitsWanted::All).unwrap();
    assert_eq!(a, b);
}

#[test]
fn context_overflow_is_an_error() {
    let dec = decoder("tiny-qwen2");
    let pool = ThreadPool::new(1);
    let (mut kv, mut st) = (dec.new_cache(8, KvType::F16), dec.new_state(16, 8));
    let err =
        dec.forward(DecoderInput::Tokens(&[1; 9]), &mut kv, &mut st, &pool, LogitsWanted::Last).unwrap_err();
    assert!(err.to_string().contains("context overflow"), "{err}");
    let err = dec
        .forward(DecoderInput::Tokens(&[100_000]), &mut kv, &mut st, &pool, LogitsWanted::Last)
        .unwrap_err();
    assert!(err.to_string().contains("outside the vocabulary"), "{err}");
}

#[test]
fn f16_cache_stays_close_to_transformers() {
    // The default f16 cache rounds keys, values and queries, and (as llama.cpp's CPU flash
    // attention) accumulates values in f16: logits move by ~1e-2, so top-1 must agree wherever
    // transformers' own top-1/top-2 margin is clearly larger than that.
    let dec = decoder("tiny-qwen2");
    let pool = ThreadPool::new(2);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(edgevl_testdata::fixture("tiny-qwen2/logits.json")).unwrap())
            .unwrap();
    for (ci, case) in load_cases("tiny-qwen2").iter().enumerate() {
        let margins = index["prompts"][ci]["top1_top2_margin"].as_array().unwrap();
        let mut kv = dec.new_cache(256, KvType::F16);
        let mut st = dec.new_state(case.ids.len(), 256);
        let ours =
            dec.forward(DecoderInput::Tokens(&case.ids), &mut kv, &mut st, &pool, LogitsWanted::All).unwrap();
        let mut max_err = 0f32;
        for (t, (a, b)) in ours.chunks(case.n_vocab).zip(case.logits.chunks(case.n_vocab)).enumerate() {
            max_err = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(max_err, f32::max);
            if margins[t].as_f64().unwrap() > 0.05 {
                assert_eq!(argmax(a), argmax(b), "prompt {ci}: top-1 differs at position {t}");
            }
        }
        assert!(max_err < 2e-2, "prompt {ci}: max abs error {max_err} with an f16 cache");
    }
}

/// InternVL2.5-2B's decoder is InternLM2, which edgevl does not run: a file of that architecture
/// (the tiny Qwen2 relabelled) is refused with a message naming it and what is supported.
#[test]
fn an_internlm2_decoder_is_refused_by_name() {
    let src = GgufFile::open(edgevl_testdata::fixture("tiny-qwen2/model.gguf")).unwrap();
    let mut w = edgevl_gguf::GgufWriter::copy_of(&src, |_, _| edgevl_gguf::TensorEdit::Keep).unwrap();
    for (k, v) in src.metadata().iter().filter(|(k, _)| k.starts_with("qwen2.")) {
        w.remove_kv(k);
        w.add_kv(k.replacen("qwen2.", "internlm2.", 1), v.clone());
    }
    w.add_kv(edgevl_arch::general::ARCHITECTURE, edgevl_gguf::Value::Str("internlm2".into()));
    let file = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
    let e = Decoder::load(Arc::new(file), &edgevl_testdata::kernels())
        .err()
        .expect("internlm2 refused")
        .to_string();
    assert_eq!(e, "unsupported architecture 'internlm2' (supported: llama, qwen2)");
}
