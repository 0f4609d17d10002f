//! The command line with InternVL files (tests/fixtures/tiny-internvl, llama.cpp's converter's
//! output of a tiny random transformers model): `encode-image` tiles with the family's rule and
//! `--dump-activations` writes the tower's layers, which equal transformers' hidden states;
//! `run` with the image as a PNG gives the model's logits at the prompt's last position.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    edgevl_testdata::fixture(&format!("tiny-internvl/{name}"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("families_cli").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn reference() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fixture("reference.json")).unwrap()).unwrap()
}

/// The fixture's 448x448 image (its LCG recipe) as a PNG in `dir`.
fn image_png(dir: &Path) -> PathBuf {
    let (w, h) = (448u32, 448u32);
    let mut state = w * 65536 + h;
    let bytes: Vec<u8> = (0..w * h * 3)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 24) as u8
        })
        .collect();
    let path = dir.join("lcg448.png");
    image::RgbImage::from_raw(w, h, bytes).unwrap().save(&path).unwrap();
    path
}

fn max_rel_err(ours: &[f32], reference: &[f32]) -> f32 {
    assert_eq!(ours.len(), reference.len());
    let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
    ours.iter().zip(reference).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale
}

#[test]
fn encode_image_dumps_the_towers_layers_as_transformers_computes_them() {
    let dir = scratch("encode");
    let png = image_png(&dir);
    let acts = dir.join("acts");
    let out = Command::new(env!("CARGO_BIN_EXE_edgevl"))
        .args(["encode-image", "-t", "2", "--dump", "layer_out", "--dump-activations"])
        .arg(&acts)
        .arg("--mmproj")
        .arg(fixture("mmproj.gguf"))
        .arg("--image")
        .arg(&png)
        .arg("--npy")
        .arg(dir.join("emb.npy"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // InternVL's rule keeps a 448x448 image as one view, no thumbnail.
    assert!(stderr.contains("internvl grid 1x1, 1 views (no global view)"), "{stderr}");
    let r = reference();
    let one = &r["embeddings"]["one_view"];
    let hs = edgevl_testdata::f32_le(
        &std::fs::read(fixture(one["vit_hidden_states"]["file"].as_str().unwrap())).unwrap(),
    );
    let per_layer = 1025 * 32;
    for layer in 0..4 {
        let ours = edgevl_testdata::npy_f32(&acts.join(format!("{layer:05}-layer_out-{layer}.npy")));
        let err = max_rel_err(&ours, &hs[(layer + 1) * per_layer..(layer + 2) * per_layer]);
        assert!(err < 1e-4, "layer {layer}: {err}");
    }
    let proj =
        edgevl_testdata::f32_le(&std::fs::read(fixture(one["projected"]["file"].as_str().unwrap())).unwrap());
    assert!(max_rel_err(&edgevl_testdata::npy_f32(&dir.join("emb.npy")), &proj) < 1e-3);
}

#[test]
fn run_with_an_internvl_image_gives_the_models_logits() {
    let dir = scratch("run");
    let png = image_png(&dir);
    let acts = dir.join("acts");
    let out = Command::new(env!("CARGO_BIN_EXE_edgevl"))
        .args([
            "run",
            "--temp",
            "0",
            "-n",
            "1",
            "-t",
            "2",
            "--cache-type",
            "f32",
            "-p",
            "What is in the image?",
        ])
        .args(["--dump", "result_output", "--dump-activations"])
        .arg(&acts)
        .arg("-m")
        .arg(fixture("model.gguf"))
        .arg("--mmproj")
        .arg(fixture("mmproj.gguf"))
        .arg("--image")
        .arg(&png)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let r = reference();
    let case = &r["whole_model"].as_array().unwrap().iter().find(|c| c["name"] == "one_tile").unwrap();
    assert_eq!(
        case["text"],
        "<|im_start|>user\n<IMG_CONTEXT>\nWhat is in the image?<|im_end|>\n<|im_start|>assistant\n"
    );
    let n_vocab = case["logits"]["shape"][1].as_u64().unwrap() as usize;
    let all =
        edgevl_testdata::f32_le(&std::fs::read(fixture(case["logits"]["file"].as_str().unwrap())).unwrap());
    let last = &all[all.len() - n_vocab..];
    // One prefill pass computes logits (its last position); -n 1 needs no decoding pass.
    let files: Vec<_> = std::fs::read_dir(&acts).unwrap().collect();
    assert_eq!(files.len(), 1);
    let ours = edgevl_testdata::npy_f32(&acts.join("00000-result_output.npy"));
    let err = max_rel_err(&ours, last);
    assert!(err < 1e-3, "last-position logits: {err}");
    assert!(stderr.contains("prompt 288 tok (256 image"), "{stderr}");
}

/// `tiles --mmproj` plans at the family's tile size with its limits: for every image of the
/// fixtures' prompt cases (processor defaults), the family's own rule gives the processor's grid
/// and image-token count.
#[test]
fn tiles_with_an_mmproj_gives_the_processors_grids() {
    for (family, rule) in [("internvl", "internvl"), ("smolvlm", "idefics3")] {
        let dir = edgevl_testdata::fixture(&format!("tiny-{family}"));
        let r: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("reference.json")).unwrap()).unwrap();
        let mut checked = 0;
        for case in r["prompt_cases"].as_array().unwrap() {
            if case["processor_kwargs"].as_object().is_some_and(|o| !o.is_empty()) {
                continue;
            }
            for (img, layout) in
                case["images"].as_array().unwrap().iter().zip(case["image_layout"].as_array().unwrap())
            {
                let size = format!("{}x{}", img["width"], img["height"]);
                let out = Command::new(env!("CARGO_BIN_EXE_edgevl"))
                    .args(["tiles", "--json", "--strategy", rule, "--size", &size, "--mmproj"])
                    .arg(dir.join("mmproj.gguf"))
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                let plans: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                let p = &plans[0];
                let grid = [p["grid"][0].as_u64().unwrap(), p["grid"][1].as_u64().unwrap()];
                let want = [layout["grid"][0].as_u64().unwrap(), layout["grid"][1].as_u64().unwrap()];
                // SmolVLM's processor reports an unsplit image as a 0x0 grid.
                assert!(
                    grid == want || (want == [0, 0] && grid == [1, 1]),
                    "{family} {size}: {grid:?} vs {want:?}"
                );
                assert_eq!(p["tokens"], layout["image_tokens"], "{family} {size}");
                checked += 1;
            }
        }
        assert!(checked >= 6, "{family}: only {checked} images");
    }
}
