//! The vision tower + 2x2 merge + lfm2 projector against PyTorch (transformers'
//! `SiglipVisionModel` and the spec 2b merge/projector), on the tiny random fixture written by
//! scripts/make_tiny_vision_fixtures.py; and batched encoding against one tile at a time.

use edgevl_kernels::ThreadPool;
use edgevl_model::vision::VisionEncoder;

/// One normalised `[3, size, size]` tile from the fixture script's LCG recipe.
fn lcg_tile(seed: u32, size: usize) -> Vec<f32> {
    let mut state = seed;
    (0..3 * size * size)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let byte = (state >> 24) as f32;
            (byte / 255.0 - 0.5) / 0.5
        })
        .collect()
}

fn read_f32(name: &str) -> Vec<f32> {
    let bytes = std::fs::read(edgevl_testdata::fixture(&format!("tiny-vlm/{name}"))).expect("reference file");
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn encoder() -> VisionEncoder {
    VisionEncoder::open(edgevl_testdata::fixture("tiny-vlm/mmproj.gguf"), &edgevl_testdata::kernels())
        .expect("tiny mmproj loads")
}

/// `max |ours - ref| / max |ref|`.
fn max_rel_err(ours: &[f32], reference: &[f32]) -> f32 {
    assert_eq!(ours.len(), reference.len());
    assert!(ours.iter().all(|v| v.is_finite()));
    let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
    ours.iter().zip(reference).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale
}

struct Case {
    seeds: Vec<u32>,
    tile_sum: f64,
    output: String,
    shape: [usize; 2],
    vit: Option<(String, [usize; 2])>,
}

fn cases() -> Vec<Case> {
    let path = edgevl_testdata::fixture("tiny-vlm/reference.json");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("reference.json")).expect("json");
    let dims = |v: &serde_json::Value| [v[0].as_u64().unwrap() as usize, v[1].as_u64().unwrap() as usize];
    index["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| Case {
            seeds: c["seeds"].as_array().unwrap().iter().map(|s| s.as_u64().unwrap() as u32).collect(),
            tile_sum: c["tile_sum"].as_f64().unwrap(),
            output: c["output"].as_str().unwrap().to_string(),
            shape: dims(&c["shape"]),
            vit: c.get("vit_output").map(|v| (v.as_str().unwrap().to_string(), dims(&c["vit_shape"]))),
        })
        .collect()
}

fn tiles(seeds: &[u32], size: usize) -> Vec<f32> {
    seeds.iter().flat_map(|&s| lcg_tile(s, size)).collect()
}

#[test]
fn matches_pytorch_single_tile_and_2x2_plus_global() {
    let enc = encoder();
    let hp = enc.hparams().clone();
    assert_eq!((hp.grid(), hp.tokens_per_tile(), hp.merged_width()), (27, 196, 256));
    assert!(enc.has_post_norm());
    let pool = ThreadPool::new(2);
    let all = cases();
    assert_eq!(all.iter().map(|c| c.seeds.len()).collect::<Vec<_>>(), vec![1, 5]);
    for case in &all {
        let input = tiles(&case.seeds, hp.image_size);
        let sum: f64 = input.iter().map(|&v| v as f64).sum();
        assert!(
            (sum - case.tile_sum).abs() < 1e-6 * input.len() as f64,
            "tile recipe differs: {sum} vs {}",
            case.tile_sum
        );
        let n = case.seeds.len();
        if let Some((file, shape)) = &case.vit {
            let ours = enc.vit_features(&input, n, 4, &pool).unwrap();
            assert_eq!(ours.len(), n * shape[0] * shape[1]);
            let err = max_rel_err(&ours, &read_f32(file));
            eprintln!("{}: ViT output max rel err {err:.2e}", case.output);
            assert!(err < 1e-3, "ViT output max rel err {err}");
        }
        let ours = enc.encode_tiles(&input, n, 4, &pool).unwrap();
        assert_eq!(ours.len(), case.shape[0] * case.shape[1]);
        assert_eq!(case.shape, [n * 196, enc.n_embd_out()]);
        let err = max_rel_err(&ours, &read_f32(&case.output));
        eprintln!("{}: projected output max rel err {err:.2e}", case.output);
        assert!(err < 1e-3, "{}: projected output max rel err {err}", case.output);
    }
}

#[test]
fn batched_equals_one_tile_at_a_time() {
    let enc = encoder();
    let pool = ThreadPool::new(2);
    let input = tiles(&[21, 22, 23], enc.hparams().image_size);
    let one = enc.encode_tiles(&input, 3, 1, &pool).unwrap();
    for batch in [2, 3, 8] {
        let b = enc.encode_tiles(&input, 3, batch, &pool).unwrap();
        let diff = one.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(diff == 0.0, "batch {batch}: max abs diff {diff} from one tile at a time");
    }
    // Tiles are independent: the second tile alone gives the second third of the batch.
    let tl = enc.hparams().tile_len();
    let second = enc.encode_tiles(&input[tl..2 * tl], 1, 1, &pool).unwrap();
    assert_eq!(second, one[second.len()..2 * second.len()]);
}

#[test]
fn bad_input_sizes_are_errors() {
    let enc = encoder();
    let pool = ThreadPool::new(1);
    let tl = enc.hparams().tile_len();
    let e = enc.encode_tiles(&vec![0.0; tl + 1], 1, 1, &pool).unwrap_err().to_string();
    assert!(e.contains("tile data") && e.contains(&(tl + 1).to_string()), "{e}");
    let e = enc.encode_tiles(&vec![0.0; tl], 1, 0, &pool).unwrap_err().to_string();
    assert!(e.contains("batch size"), "{e}");
    assert!(enc.encode_tiles(&[], 0, 1, &pool).unwrap().is_empty());
}
