//! The InternVL and SmolVLM towers and projectors against transformers, on the tiny random
//! models of tests/fixtures/tiny-internvl and tiny-smolvlm (scripts/make_family_fixtures.py:
//! `InternVLForConditionalGeneration` and `Idefics3ForConditionalGeneration` in float32, their
//! weights converted by llama.cpp's `convert_hf_to_gguf.py --mmproj`). One view, fed the
//! processor's exact pixel values: every layer of the tower, the tower's output and the projected
//! embeddings.

use edgevl_arch::family::VisionFamily;
use edgevl_kernels::ThreadPool;
use edgevl_model::vision::VisionEncoder;
use edgevl_model::{ActivationRecorder, Hook};
use std::sync::Arc;

fn fixture(family: &str, name: &str) -> std::path::PathBuf {
    edgevl_testdata::fixture(&format!("tiny-{family}/{name}"))
}

fn reference(family: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fixture(family, "reference.json")).expect("reference.json"))
        .expect("json")
}

/// `n` f32 values of `file` from byte `offset`.
fn read_f32(family: &str, file: &str, offset: usize, n: usize) -> Vec<f32> {
    let bytes = std::fs::read(fixture(family, file)).expect("reference output");
    bytes[offset..offset + 4 * n]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// The fixture's image recipe: W x H RGB bytes from the LCG seeded with `W * 65536 + H`.
fn lcg_image(w: usize, h: usize) -> Vec<u8> {
    let mut state = (w as u32).wrapping_mul(65536).wrapping_add(h as u32);
    (0..w * h * 3)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 24) as u8
        })
        .collect()
}

/// A `size x size` image as the processor's `pixel_values`: `f32(f64(byte) / 255)`, then
/// `(x - mean) / std` in f32, channels first.
fn pixel_values(rgb: &[u8], size: usize, mean: [f32; 3], std: [f32; 3]) -> Vec<f32> {
    let plane = size * size;
    let mut out = vec![0f32; 3 * plane];
    for (i, px) in rgb.chunks_exact(3).enumerate() {
        for c in 0..3 {
            let x = (f64::from(px[c]) * (1.0 / 255.0)) as f32;
            out[c * plane + i] = (x - mean[c]) / std[c];
        }
    }
    out
}

/// `max |ours - ref| / max |ref|`.
fn max_rel_err(ours: &[f32], reference: &[f32]) -> f32 {
    assert_eq!(ours.len(), reference.len());
    assert!(ours.iter().all(|v| v.is_finite()));
    let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
    ours.iter().zip(reference).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale
}

fn check_one_view(family: &str, want: VisionFamily) {
    let r = reference(family);
    let mut enc = VisionEncoder::open(fixture(family, "mmproj.gguf"), &edgevl_testdata::kernels())
        .expect("llama.cpp's mmproj loads");
    let hp = enc.hparams().clone();
    assert_eq!(hp.family, want);
    let one = &r["embeddings"]["one_view"];
    let size = hp.image_size;
    assert_eq!(one["image"]["width"].as_u64(), Some(size as u64));
    let tile = pixel_values(&lcg_image(size, size), size, hp.image_mean, hp.image_std);
    let sum: f64 = tile.iter().map(|&v| f64::from(v)).sum();
    let want_sum = one["pixel_values_sum"].as_f64().unwrap();
    assert!((sum - want_sum).abs() < 1e-2 * want_sum.abs().max(1.0), "pixel sum {sum} vs {want_sum}");

    let recorder = Arc::new(ActivationRecorder::new(["patch_embd", "layer_out"]));
    enc.set_hook(Hook::new(recorder.clone()));
    let pool = ThreadPool::new(2);
    let features = enc.vit_features(&tile, 1, 1, &pool).unwrap();
    let (nt, d) = (hp.n_tokens(), hp.n_embd);
    let layers = recorder.take();
    assert_eq!(layers.len(), hp.n_layer + 1);
    let hs = &one["vit_hidden_states"];
    for (i, act) in layers.iter().enumerate() {
        let want = read_f32(family, hs["file"].as_str().unwrap(), i * nt * d * 4, nt * d);
        let err = max_rel_err(&act.data, &want);
        eprintln!("{family} hidden state {i} ({} {:?}): max relative error {err:.2e}", act.name, act.layer);
        assert!(err < 1e-4, "{family} hidden state {i}: {err}");
    }
    let last = &one["vit_last_hidden_state"];
    let offset = last["offset"].as_u64().unwrap_or(0) as usize;
    let want = read_f32(family, last["file"].as_str().unwrap(), offset, nt * d);
    let err = max_rel_err(&features, &want);
    eprintln!("{family} tower output: max relative error {err:.2e}");
    assert!(err < 1e-4, "{family} tower output: {err}");

    enc.set_hook(Hook::default());
    let proj = enc.encode_tiles(&tile, 1, 1, &pool).unwrap();
    let p = &one["projected"];
    let shape: Vec<usize> =
        p["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    assert_eq!(shape, vec![enc.tokens_per_tile(), enc.n_embd_out()]);
    let want = read_f32(family, p["file"].as_str().unwrap(), 0, shape[0] * shape[1]);
    let err = max_rel_err(&proj, &want);
    eprintln!("{family} projected embeddings: max relative error {err:.2e}");
    assert!(err < 1e-3, "{family} projected: {err}");
}

#[test]
fn internvl_tower_and_mlp1_match_transformers() {
    check_one_view("internvl", VisionFamily::InternVl);
}

#[test]
fn smolvlm_tower_and_connector_match_transformers() {
    check_one_view("smolvlm", VisionFamily::Idefics3);
}
