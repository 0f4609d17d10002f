//! The whole model with an image: the tiny llama (tests/fixtures/tiny-llama-spm, width 64) fed
//! [prefix tokens, the tiny vision tower's 196 projected embeddings of one tile, suffix tokens],
//! against transformers' `LlamaForCausalLM(inputs_embeds=...)` on the same GGUF with the PyTorch
//! image embeddings (scripts/make_tiny_vision_fixtures.py). Top-1 must agree at every position.

use edgevl_gguf::GgufFile;
use edgevl_kernels::ThreadPool;
use edgevl_model::vision::VisionEncoder;
use edgevl_model::{Decoder, DecoderInput, KvType, LogitsWanted};
use std::sync::Arc;

fn lcg_tile(seed: u32, size: usize) -> Vec<f32> {
    let mut state = seed;
    (0..3 * size * size)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            ((state >> 24) as f32 / 255.0 - 0.5) / 0.5
        })
        .collect()
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().expect("id list").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).unwrap_or(0)
}

#[test]
fn llm_with_image_matches_transformers_top1_everywhere() {
    let index: serde_json::Value = serde_json::from_slice(
        &std::fs::read(edgevl_testdata::fixture("tiny-vlm/reference.json")).expect("reference.json"),
    )
    .expect("json");
    let llm = &index["llm"];
    let single =
        index["cases"].as_array().unwrap().iter().find(|c| c["name"] == "single").expect("single case");
    let seed = single["seeds"][0].as_u64().unwrap() as u32;

    let enc =
        VisionEncoder::open(edgevl_testdata::fixture("tiny-vlm/mmproj.gguf"), &edgevl_testdata::kernels())
            .expect("mmproj");
    let pool = ThreadPool::new(2);
    let image = enc.encode_tiles(&lcg_tile(seed, enc.hparams().image_size), 1, 1, &pool).unwrap();

    let file = GgufFile::open(edgevl_testdata::fixture(llm["model"].as_str().unwrap())).expect("tiny llama");
    let dec = Decoder::load(Arc::new(file), &edgevl_testdata::kernels()).expect("decoder");
    assert_eq!(dec.hparams().n_embd, enc.n_embd_out());
    let (prefix, suffix) = (ids(&llm["prefix_ids"]), ids(&llm["suffix_ids"]));
    let n_vocab = dec.n_vocab();
    let n = prefix.len() + enc.tokens_per_tile() + suffix.len();
    let mut kv = dec.new_cache(256, KvType::F32);
    let mut st = dec.new_state(256, 256);
    let mut ours = Vec::with_capacity(n * n_vocab);
    for input in
        [DecoderInput::Tokens(&prefix), DecoderInput::Embeddings(&image), DecoderInput::Tokens(&suffix)]
    {
        ours.extend_from_slice(dec.forward(input, &mut kv, &mut st, &pool, LogitsWanted::All).unwrap());
    }
    let bytes =
        std::fs::read(edgevl_testdata::fixture(&format!("tiny-vlm/{}", llm["logits"].as_str().unwrap())))
            .expect("logits");
    let reference: Vec<f32> =
        bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    assert_eq!(ours.len(), reference.len());
    assert_eq!(
        [n, n_vocab],
        [llm["shape"][0].as_u64().unwrap() as usize, llm["shape"][1].as_u64().unwrap() as usize]
    );
    let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
    let err = ours.iter().zip(&reference).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
    eprintln!("logits with image: max rel err {err:.2e} over {n} positions");
    assert!(err < 1e-3, "logits max rel err {err}");
    let want = ids(&llm["argmax"]);
    for (pos, row) in ours.chunks_exact(n_vocab).enumerate() {
        assert_eq!(argmax(row), want[pos] as usize, "top-1 differs at position {pos}");
    }
}
