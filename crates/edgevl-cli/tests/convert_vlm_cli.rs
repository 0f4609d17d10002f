//! This project's vision-language layout round-trips: the tiny random checkpoint of
//! tests/fixtures/hf/tiny-edgevl (transformers' `SiglipVisionModel`, the 2x2 merge, the projector's
//! LayerNorm and two Linears, a `LlamaForCausalLM`; docs/checkpoint-format.md) converted by
//! `edgevl convert --mmproj-out`, then `encode-image` and a prompt with the image, give what
//! transformers computes (tests/fixtures/edgevl-roundtrip, scripts/make_convert_vlm_fixtures.py)
//! within the vision tests' bounds: embeddings and logits to 1e-3 relative, the same greedy text.
//! The bluelm scheme's Q8_0 mmproj is measured against the F32 one.

use std::path::{Path, PathBuf};
use std::process::Command;

use edgevl_model::{DecoderInput, KvType, LogitsWanted};
use edgevl_runtime::{ImageConfig, Segment, Session, SessionConfig};
use serde_json::Value;

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("convert_vlm_cli").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn reference() -> Value {
    let path = edgevl_testdata::fixture("edgevl-roundtrip/reference.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn fixture_f32(file: &str) -> Vec<f32> {
    edgevl_testdata::f32_le(
        &std::fs::read(edgevl_testdata::fixture(&format!("edgevl-roundtrip/{file}"))).unwrap(),
    )
}

/// The reference's image (the fixtures' LCG recipe) as a PNG in `dir`.
fn image_png(dir: &Path, spec: &Value) -> PathBuf {
    let (w, h) = (spec["width"].as_u64().unwrap() as u32, spec["height"].as_u64().unwrap() as u32);
    let mut state = w.wrapping_mul(65536).wrapping_add(h);
    let bytes: Vec<u8> = (0..w * h * 3)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 24) as u8
        })
        .collect();
    let path = dir.join("lcg.png");
    image::RgbImage::from_raw(w, h, bytes).unwrap().save(&path).unwrap();
    path
}

/// `max |ours - ref| / max |ref|`.
fn max_rel_err(ours: &[f32], reference: &[f32]) -> f32 {
    assert_eq!(ours.len(), reference.len());
    assert!(ours.iter().all(|v| v.is_finite()));
    let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
    ours.iter().zip(reference).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale
}

fn argmax(row: &[f32]) -> u32 {
    row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i as u32)
}

fn edgevl(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_edgevl")).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "edgevl {args:?}: {stderr}");
    String::from_utf8(o.stdout).unwrap()
}

/// `edgevl convert` of the fixture checkpoint with `scheme` into `dir`: (model, mmproj).
fn convert(dir: &Path, scheme: &str) -> (PathBuf, PathBuf) {
    let src = edgevl_testdata::fixture("hf/tiny-edgevl");
    let (model, mmproj) =
        (dir.join(format!("model-{scheme}.gguf")), dir.join(format!("mmproj-{scheme}.gguf")));
    let pre = reference()["pre_tokenizer"].as_str().unwrap().to_string();
    edgevl(&[
        "convert",
        src.to_str().unwrap(),
        "-o",
        model.to_str().unwrap(),
        "--mmproj-out",
        mmproj.to_str().unwrap(),
        "--scheme",
        scheme,
        "--pre-tokenizer",
        &pre,
        "-t",
        "2",
    ]);
    (model, mmproj)
}

/// `encode-image` of `png` with `mmproj` and the reference's budget.
fn encode(dir: &Path, mmproj: &Path, png: &Path, r: &Value) -> Vec<f32> {
    let npy = dir.join(format!("{}.npy", mmproj.file_stem().unwrap().to_string_lossy()));
    let max_tiles = r["max_tiles"].to_string();
    edgevl(&[
        "encode-image",
        "--mmproj",
        mmproj.to_str().unwrap(),
        "--image",
        png.to_str().unwrap(),
        "--max-tiles",
        &max_tiles,
        "--npy",
        npy.to_str().unwrap(),
    ]);
    edgevl_testdata::npy_f32(&npy)
}

#[test]
fn edgevl_layout_round_trips_through_convert() {
    let r = reference();
    let dir = scratch("f32");
    let (model, mmproj) = convert(&dir, "f32");
    let png = image_png(&dir, &r["image"]);

    // The image's views, through the converted tower and projector.
    let ours = encode(&dir, &mmproj, &png, &r);
    let want = fixture_f32(r["projected"]["file"].as_str().unwrap());
    let err = max_rel_err(&ours, &want);
    eprintln!("tiny-edgevl embeddings ({} views): max relative error {err:.2e}", r["views"]);
    assert!(err < 1e-3, "embeddings: {err}");

    // The prompt with the image: logits at the last positions, from the converted decoder.
    let max_tiles = r["max_tiles"].as_u64().unwrap() as u32;
    let cfg = SessionConfig {
        n_threads: 2,
        kv_type: KvType::F32,
        mmproj: Some(mmproj.clone()),
        image: ImageConfig { max_tiles: Some(max_tiles), ..ImageConfig::default() },
        ..SessionConfig::default()
    };
    let mut s = Session::load(&model, &cfg).expect("the converted files load");
    s.add_image(&png).unwrap();
    let prompt = r["prompt"].as_str().unwrap();
    let (segments, _) = s.raw_prompt_segments(prompt).unwrap();
    let dec = s.decoder();
    let (d, n_vocab) = (dec.hparams().n_embd, dec.n_vocab());
    let n: usize = segments.iter().map(|seg| seg.n_positions(d)).sum();
    assert_eq!(n as u64, r["n_positions"].as_u64().unwrap(), "prompt positions");
    let want_ids: Vec<u32> =
        r["generated_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    let mut kv = dec.new_cache(n + want_ids.len(), KvType::F32);
    let mut st = dec.new_state(n, n + want_ids.len());
    let mut logits = Vec::with_capacity(n * n_vocab);
    for seg in &segments {
        let input = match seg {
            Segment::Tokens(t) => DecoderInput::Tokens(t),
            Segment::Embeddings(b) => {
                let range = b.range.clone().unwrap_or(0..b.rows.len() / d);
                DecoderInput::Embeddings(&b.rows[range.start * d..range.end * d])
            }
        };
        logits.extend_from_slice(dec.forward(input, &mut kv, &mut st, s.pool(), LogitsWanted::All).unwrap());
    }
    let tail = fixture_f32(r["logits_tail"]["file"].as_str().unwrap());
    let err = max_rel_err(&logits[logits.len() - tail.len()..], &tail);
    eprintln!(
        "tiny-edgevl logits at the last {} positions: max relative error {err:.2e}",
        tail.len() / n_vocab
    );
    assert!(err < 1e-3, "logits: {err}");

    // Greedy continuation from there: transformers' tokens.
    let mut ids = vec![argmax(&logits[(n - 1) * n_vocab..])];
    while ids.len() < want_ids.len() {
        let last = [*ids.last().unwrap()];
        let l =
            dec.forward(DecoderInput::Tokens(&last), &mut kv, &mut st, s.pool(), LogitsWanted::Last).unwrap();
        ids.push(argmax(l));
    }
    assert_eq!(ids, want_ids, "greedy tokens");

    // `edgevl run` with the image prints those tokens.
    let n_gen = want_ids.len().to_string();
    let text = edgevl(&[
        "run",
        "-m",
        model.to_str().unwrap(),
        "--mmproj",
        mmproj.to_str().unwrap(),
        "--image",
        png.to_str().unwrap(),
        "--max-tiles",
        &r["max_tiles"].to_string(),
        "--raw",
        "-p",
        prompt,
        "-n",
        &n_gen,
        "--temp",
        "0",
        "-t",
        "2",
    ]);
    assert_eq!(text.trim_end_matches('\n'), s.tokenizer().decode(&want_ids), "edgevl run's greedy text");

    // The bluelm scheme: ViT and projector Q8_0; its embeddings against the F32 file's.
    let (_, mmproj_q8) = convert(&dir, "bluelm");
    let q8 = encode(&dir, &mmproj_q8, &png, &r);
    let err = max_rel_err(&q8, &ours);
    eprintln!("tiny-edgevl bluelm (Q8_0) mmproj vs F32: max relative error {err:.2e}");
    assert!(err < 5e-2, "bluelm embeddings: {err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A run refused for its outputs leaves an existing file as it was and no part file.
#[test]
fn bad_outputs_are_refused_before_anything_is_written() {
    let dir = scratch("bad-outputs");
    let src = edgevl_testdata::fixture("hf/tiny-edgevl");
    let model = dir.join("model.gguf");
    std::fs::write(&model, b"the user's old model").unwrap();
    let a_dir = dir.join("adir");
    std::fs::create_dir(&a_dir).unwrap();
    let pre = reference()["pre_tokenizer"].as_str().unwrap().to_string();
    for (mmproj, needle) in [(&a_dir, "is a directory"), (&model, "name the same file")] {
        let o = Command::new(env!("CARGO_BIN_EXE_edgevl"))
            .args(["convert", src.to_str().unwrap(), "-o", model.to_str().unwrap(), "--mmproj-out"])
            .arg(mmproj)
            .args(["--pre-tokenizer", &pre, "-t", "1"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(needle), "{stderr}");
        assert_eq!(std::fs::read(&model).unwrap(), b"the user's old model");
        let mut left: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, ["adir", "model.gguf"], "{needle}");
    }
}
