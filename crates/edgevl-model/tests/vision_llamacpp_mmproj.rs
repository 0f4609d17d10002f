//! edgevl reads an mmproj it did not write: tests/fixtures/mmproj-llamacpp/mmproj.gguf was made by
//! llama.cpp's `convert_hf_to_gguf.py --mmproj` from a tiny random transformers LFM2-VL
//! (scripts/make_llamacpp_mmproj_fixture.py). The file has llama.cpp's keys only (no
//! `edgevl.vision.layout`), patch 16, the converter's placeholder `clip.vision.image_size = 256`
//! and 16x16 learned positions, which a 384x384 tile's 24x24 patch grid needs resized. As it
//! is, it is LFM2-VL's and refused; with this project's layout key added (the same tower, merge
//! and projector), the projected embeddings of two tiles must match transformers'
//! `get_image_features`.

use edgevl_arch::family::{VisionFamily, EDGEVL_TILE_SIZE as LFM2_TILE_SIZE, LAYOUT_GLOBAL_FIRST};
use edgevl_gguf::{GgufFile, GgufWriter, TensorEdit, Value};
use edgevl_kernels::ThreadPool;
use edgevl_model::vision::VisionEncoder;
use std::sync::Arc;

const DIR: &str = "mmproj-llamacpp";

fn fixture(name: &str) -> std::path::PathBuf {
    edgevl_testdata::fixture(&format!("{DIR}/{name}"))
}

/// One `[3, size, size]` tile as edgevl makes it from a `size x size` image (one tile, no
/// resize): 8-bit values from the fixture script's LCG, channel-major, then
/// `(v / 255 - mean) / std` with the mmproj's mean and std.
fn lcg_tile(seed: u32, size: usize, mean: [f32; 3], std: [f32; 3]) -> Vec<f32> {
    let plane = size * size;
    let mut state = seed;
    (0..3 * plane)
        .map(|i| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let c = i / plane;
            let v = f64::from(state >> 24) / 255.0;
            ((v - f64::from(mean[c])) / f64::from(std[c])) as f32
        })
        .collect()
}

fn reference() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fixture("reference.json")).expect("reference.json")).expect("json")
}

fn read_f32(name: &str) -> Vec<f32> {
    let bytes = std::fs::read(fixture(name)).expect("reference output");
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// `max |ours - ref| / max |ref|`.
fn max_rel_err(ours: &[f32], reference: &[f32]) -> f32 {
    assert_eq!(ours.len(), reference.len());
    assert!(ours.iter().all(|v| v.is_finite()));
    let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
    ours.iter().zip(reference).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale
}

#[test]
fn the_file_is_llamacpps_not_ours() {
    let f = GgufFile::open(fixture("mmproj.gguf")).expect("fixture");
    let md = f.metadata();
    assert!(md.get(edgevl_arch::clip::EDGEVL_LAYOUT).is_none());
    assert_eq!(md.get_u64(edgevl_arch::clip::IMAGE_SIZE).unwrap(), 256);
    assert_eq!(f.tensor("v.position_embd.weight").unwrap().dims, vec![64, 256]);
}

#[test]
fn as_written_the_file_is_lfm2_vl_and_refused() {
    let e = VisionEncoder::open(fixture("mmproj.gguf"), &edgevl_testdata::kernels())
        .err()
        .expect("LFM2-VL refused")
        .to_string();
    assert!(e.contains("LFM2-VL"), "{e}");
}

#[test]
fn llamacpp_converted_lfm2_matches_transformers() {
    let enc = edited(&|_| None).expect("llama.cpp's mmproj loads with the layout key");
    let hp = enc.hparams().clone();
    assert_eq!(hp.family, VisionFamily::EdgeVl);
    assert_eq!((hp.image_size, hp.patch_size, hp.grid()), (LFM2_TILE_SIZE, 16, 24));
    assert_eq!((hp.n_embd, hp.n_layer, hp.n_head, hp.projection_dim), (64, 3, 4, 64));
    assert!(enc.has_post_norm());

    let r = reference();
    assert_eq!(r["tile_size"].as_u64(), Some(LFM2_TILE_SIZE as u64));
    assert_eq!(r["tokens_per_tile"].as_u64(), Some(enc.tokens_per_tile() as u64));
    let seeds: Vec<u32> = r["seeds"].as_array().unwrap().iter().map(|s| s.as_u64().unwrap() as u32).collect();
    let mut tiles = Vec::new();
    for (seed, want) in seeds.iter().zip(r["tile_sums"].as_array().unwrap()) {
        let tile = lcg_tile(*seed, hp.image_size, hp.image_mean, hp.image_std);
        let sum: f64 = tile.iter().map(|&v| f64::from(v)).sum();
        let want = want.as_f64().unwrap();
        // The same recipe gives the same sum up to float rounding; another recipe is off by hundreds.
        assert!((sum - want).abs() < 0.05, "tile {seed}: sum {sum} vs the script's {want}");
        tiles.extend(tile);
    }
    let shape: Vec<usize> =
        r["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    let expected = read_f32(r["output"].as_str().unwrap());
    assert_eq!(shape, vec![seeds.len() * enc.tokens_per_tile(), enc.n_embd_out()]);
    assert_eq!(expected.len(), shape[0] * shape[1]);

    let pool = ThreadPool::new(2);
    let batched = enc.encode_tiles(&tiles, seeds.len(), 2, &pool).unwrap();
    let err = max_rel_err(&batched, &expected);
    eprintln!("llama.cpp-converted LFM2-VL mmproj vs transformers: max relative error {err:.2e}");
    assert!(err < 1e-3, "max relative error {err}");
    let one_at_a_time = enc.encode_tiles(&tiles, seeds.len(), 1, &pool).unwrap();
    assert_eq!(batched, one_at_a_time);
}

/// A tensor's new GGUF dims and bytes.
type Replacement = (Vec<u64>, Vec<u8>);

/// The fixture with this project's layout key added and each tensor `edit` returns replaced (GGUF
/// dims, f32 data).
fn edited(edit: &dyn Fn(&str) -> Option<Replacement>) -> Result<VisionEncoder, String> {
    let src = GgufFile::open(fixture("mmproj.gguf")).expect("fixture");
    let mut w = GgufWriter::copy_of(&src, |info, _| match edit(&info.name) {
        Some((dims, data)) => TensorEdit::Replace(info.ggml_type, dims, data),
        None => TensorEdit::Keep,
    })
    .expect("valid tensors");
    w.add_kv(edgevl_arch::clip::EDGEVL_LAYOUT, Value::Str(LAYOUT_GLOBAL_FIRST.into()));
    let file = GgufFile::from_bytes(w.to_bytes().expect("writes")).map_err(|e| e.to_string())?;
    VisionEncoder::load(Arc::new(file), &edgevl_testdata::kernels()).map_err(|e| e.to_string())
}

/// The fixture with its position table replaced by `rows` rows of `cols` values.
fn with_positions(cols: u64, rows: u64) -> Result<VisionEncoder, String> {
    edited(&|name| {
        (name == "v.position_embd.weight").then(|| (vec![cols, rows], vec![0u8; 4 * (cols * rows) as usize]))
    })
}

#[test]
fn position_tables_that_are_not_square_grids_of_the_width_are_refused() {
    let e = with_positions(64, 250).err().expect("250 positions accepted");
    assert!(
        e.contains("v.position_embd.weight") && e.contains("250 positions do not form a square grid"),
        "{e}"
    );
    let e = with_positions(32, 256).err().expect("width 32 accepted");
    assert!(e.contains("v.position_embd.weight") && e.contains("[32, 256]"), "{e}");
    // Any square grid is resized to the tile's 24x24: 20x20 and the tile's own 24x24 load.
    for side in [20, 24] {
        let enc = with_positions(64, side * side).expect("square grid loads");
        assert_eq!(enc.hparams().grid(), 24);
    }
}
