//! Perplexity of SmolLM2 by `edgevl perplexity`: the Q4_K_M file `edgevl convert --scheme q4_k` writes (166 of its
//! matrices Q5_0, as llama-quantize chooses for 576-wide rows) against llama-perplexity on the same file
//! (`tests/fixtures/smollm2/perplexity_q4_k_m.json`, scripts/gen_llamacpp_goldens.sh), and the same figure at
//! every SIMD level this CPU has (every kernel computes the scalar twin's f32 sequence, so they are equal);
//! `--chunks 0` is refused.

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Q4_K_M file converted from SmolLM2's Hugging Face directory into a fresh directory.
fn q4_k_m(tag: &str) -> (PathBuf, PathBuf) {
    let d = std::env::temp_dir().join(format!("edgevl-ppl-levels-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let f = d.join("q4_k_m.gguf");
    let out = Command::new(env!("CARGO_BIN_EXE_edgevl"))
        .arg("convert")
        .arg(edgevl_testdata::smollm2_hf_dir())
        .arg("-o")
        .arg(&f)
        .args(["--scheme", "q4_k", "-t", "2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (d, f)
}

/// `edgevl perplexity --json` of `model` with `-c ctx --chunks chunks` and the environment `env`.
fn perplexity(model: &Path, ctx: usize, chunks: usize, env: &[(&str, &str)]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_edgevl"))
        .args([
            "perplexity",
            "--json",
            "-t",
            "2",
            "-c",
            &ctx.to_string(),
            "--chunks",
            &chunks.to_string(),
            "-f",
        ])
        .arg(edgevl_testdata::fixture("text/devils-dictionary.txt"))
        .arg("-m")
        .arg(model)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(out.status.success(), "{env:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn q4_k_m_with_q5_0_matrices_within_half_a_percent_of_llama_perplexity() {
    let golden: Value = serde_json::from_slice(
        &std::fs::read(edgevl_testdata::fixture("smollm2/perplexity_q4_k_m.json")).expect("golden"),
    )
    .unwrap();
    let (d, f) = q4_k_m("golden");
    // The golden was measured on this very file (the converter is deterministic).
    let sha = format!("{:x}", Sha256::digest(std::fs::read(&f).unwrap()));
    assert_eq!(sha, golden["model_sha256"].as_str().unwrap(), "the converted file changed");
    let chunks = golden["n_chunks"].as_u64().unwrap() as usize;
    let ours = perplexity(&f, 512, chunks, &[]);
    let (p, want) = (ours["ppl"].as_f64().unwrap(), golden["ppl"].as_f64().unwrap());
    eprintln!("Q4_K_M perplexity: edgevl {p:.4}, llama.cpp {want:.4} ({:+.3}%)", (p / want - 1.0) * 100.0);
    assert_eq!(ours["n_chunks"], golden["n_chunks"]);
    assert_eq!(ours["n_tokens"], golden["n_tokens"]);
    assert!((p / want - 1.0).abs() < 0.005, "ppl {p} vs llama.cpp {want}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn perplexity_is_identical_at_every_simd_level() {
    let (d, q4km) = q4_k_m("levels");
    // Q4_1 (packed at SIMD levels) and Q4_K_M (Q4_K, Q6_K, Q5_0, Q8_0): every weight format the two files hold.
    for model in [edgevl_testdata::smollm2_path(), q4km] {
        let best = perplexity(&model, 128, 2, &[]);
        // `avx-vnni` is a cap: a CPU without AVX-VNNI runs its AVX2 kernels there.
        for env in
            [[("EDGEVL_MAX_SIMD", "avx-vnni")], [("EDGEVL_MAX_SIMD", "avx2")], [("EDGEVL_FORCE_SCALAR", "1")]]
        {
            let other = perplexity(&model, 128, 2, &env);
            eprintln!("{}: best {} / {env:?} {}", model.display(), best["ppl"], other["ppl"]);
            assert_eq!(best["ppl"], other["ppl"], "{}: {env:?}", model.display());
        }
    }
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn zero_chunks_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_edgevl"))
        .args(["perplexity", "--chunks", "0", "-c", "128", "-f"])
        .arg(edgevl_testdata::fixture("text/devils-dictionary.txt"))
        .arg("-m")
        .arg(edgevl_testdata::smollm2_path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && out.stdout.is_empty(), "{stderr}");
    assert!(stderr.contains("at least one chunk"), "{stderr}");
}
