//! The public families' tiles against transformers' PIL-backend image processors
//! (tests/fixtures/vision/families.json, from scripts/family_pixel_reference.py): InternVL 2.5 / 3
//! (GotOcr2 processor, `Strategy::InternVl` at 448) and SmolVLM (Idefics3 processor,
//! `Strategy::Idefics3` at 512), on patterned images of many sizes and three photos. For every run
//! the number and order of the views and every 8-bit pixel of every view (sha256 of the bytes) must
//! equal the processor's; for a few runs the normalised f32 values must be bit-identical too.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use edgevl_vision::{
    load_image, make_tiles, render_views, LoadLimits, Preprocess, RgbImage, Strategy, TilingParams,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/vision")
}

fn manifest() -> Value {
    let path = root().join("families.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The first `n` bytes of the LCG `state = state * 1664525 + 1013904223 mod 2^32`, byte = state >> 24.
fn lcg_bytes(n: usize, seed: u32) -> Vec<u8> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 24) as u8
        })
        .collect()
}

/// The script's input pattern (see its docstring): LCG noise, or a gradient plus a quarter of it.
fn pattern(kind: &str, w: u32, h: u32, seed: u32) -> RgbImage {
    let mut px = lcg_bytes(w as usize * h as usize * 3, seed);
    if kind == "mixed" {
        let (w64, h64) = (u64::from(w), u64::from(h));
        for (i, p) in px.chunks_exact_mut(3).enumerate() {
            let (x, y) = (i as u64 % w64, i as u64 / w64);
            let grad = [x * 192 / w64, y * 192 / h64, (x + y) * 192 / (w64 + h64)];
            for (v, g) in p.iter_mut().zip(grad) {
                *v = (g + u64::from(*v / 4)) as u8;
            }
        }
    } else {
        assert_eq!(kind, "noise");
    }
    RgbImage::from_raw(w, h, px).unwrap()
}

fn input(src: &Value) -> RgbImage {
    if let Some(rel) = src["file"].as_str() {
        return load_image(&root().join(rel), &LoadLimits::default()).unwrap();
    }
    let n = |k: &str| src[k].as_u64().unwrap() as u32;
    pattern(src["kind"].as_str().unwrap(), n("w"), n("h"), n("seed"))
}

/// The strategy, parameters and preprocessing matching a run's processor configuration.
fn setup(family: &str, config: &Value) -> (Strategy, TilingParams, Preprocess) {
    let get = |k: &str| config.get(k).and_then(Value::as_u64).map(|v| v as u32);
    match family {
        "internvl" => {
            let params = TilingParams {
                min_tiles: get("min_patches").unwrap_or(1),
                max_tiles: get("max_patches"),
                ..TilingParams::INTERNVL
            };
            (Strategy::InternVl, params, Preprocess::INTERNVL)
        }
        "idefics3" => {
            let params =
                TilingParams { longest_edge: get("longest_edge").or(Some(2048)), ..TilingParams::SMOLVLM };
            (Strategy::Idefics3, params, Preprocess::SMOLVLM)
        }
        other => panic!("unknown family {other}"),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks every run of `family`; returns (distinct inputs, runs, views).
fn check_family(family: &str) -> (usize, usize, usize) {
    let m = manifest();
    let mut failures = Vec::new();
    let (mut inputs, mut runs, mut n_views) = (HashSet::new(), 0, 0);
    for run in m["runs"].as_array().unwrap().iter().filter(|r| r["family"] == family) {
        let image = input(&run["image"]);
        let (strategy, params, pre) = setup(family, &run["config"]);
        let label = format!("{family} {} {}", run["image"], run["config"]);
        let plan = strategy.plan(image.size(), &params).unwrap();
        let views = render_views(&image, &plan, &pre).unwrap();
        let want = run["views"].as_array().unwrap();
        if views.len() != want.len() || plan.views() as usize != want.len() {
            failures.push(format!(
                "{label}: {} views (plan {}), processor {}",
                views.len(),
                plan.views(),
                want.len()
            ));
            continue;
        }
        if let Some(cr) = run.get("cols_rows") {
            let split = if plan.global_view() { [plan.grid.cols, plan.grid.rows] } else { [0, 0] };
            assert_eq!(
                cr.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect::<Vec<_>>(),
                split,
                "{label}"
            );
        }
        for (k, (view, w)) in views.iter().zip(want).enumerate() {
            let sum: u64 = view.pixels().iter().map(|&v| u64::from(v)).sum();
            if sha256_hex(view.pixels()) != w["sha256"].as_str().unwrap() {
                failures.push(format!("{label} view {k}: sum {sum}, processor {}", w["sum"]));
            }
        }
        if let Some(hashes) = run.get("normalised_sha256") {
            let batch = make_tiles(&image, &plan, &pre).unwrap();
            for (k, h) in hashes.as_array().unwrap().iter().enumerate() {
                let bytes: Vec<u8> = batch.tile(k).unwrap().iter().flat_map(|v| v.to_le_bytes()).collect();
                if sha256_hex(&bytes) != h.as_str().unwrap() {
                    failures.push(format!("{label} view {k}: normalised f32 differ from pixel_values"));
                }
            }
        }
        inputs.insert(run["image"].to_string());
        runs += 1;
        n_views += views.len();
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    eprintln!("{family}: {} inputs, {runs} runs, {n_views} views, all pixels identical", inputs.len());
    (inputs.len(), runs, n_views)
}

#[test]
fn internvl_views_equal_the_got_ocr2_processor() {
    let (inputs, runs, views) = check_family("internvl");
    assert!(inputs >= 25 && runs >= 30 && views >= 200, "{inputs} inputs, {runs} runs, {views} views");
}

#[test]
fn idefics3_views_equal_the_idefics3_processor() {
    let (inputs, runs, views) = check_family("idefics3");
    assert!(inputs >= 25 && runs >= 30 && views >= 300, "{inputs} inputs, {runs} runs, {views} views");
}

#[test]
fn normalised_runs_are_present() {
    let m = manifest();
    for family in ["internvl", "idefics3"] {
        let n = m["runs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["family"] == family && r.get("normalised_sha256").is_some())
            .count();
        assert!(n >= 2, "{family}: only {n} runs with normalised pixel_values");
    }
}
