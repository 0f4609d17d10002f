//! The `edgevl` binary on SmolLM2-135M-Instruct Q4_1 against llama.cpp's goldens
//! (scripts/gen_llamacpp_goldens.sh): greedy continuations of llama-completion and the perplexity
//! of llama-perplexity.

use serde_json::Value;
use std::process::Command;

fn edgevl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_edgevl"))
}

fn golden(name: &str) -> Value {
    let path = edgevl_testdata::fixture(&format!("smollm2/{name}"));
    serde_json::from_slice(&std::fs::read(&path).expect("golden file")).expect("golden json")
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array().expect("id array").iter().map(|x| x.as_u64().expect("id")).collect()
}

#[test]
fn greedy_continuations_match_llama_completion() {
    let model = edgevl_testdata::smollm2_path();
    let g = golden("greedy.json");
    let cases = g["cases"].as_array().expect("cases");
    let mut identical = 0;
    for case in cases {
        let prompt = case["prompt"].as_str().unwrap();
        let n = case["ids"].as_array().unwrap().len();
        let out = edgevl()
            .args(["run", "--raw", "--temp", "0", "-t", "2", "-n", &n.to_string(), "-p", prompt])
            .arg("-m")
            .arg(&model)
            .output()
            .unwrap();
        assert!(out.status.success(), "edgevl run failed: {}", String::from_utf8_lossy(&out.stderr));
        let ours = String::from_utf8(out.stdout).unwrap();
        let ours = ours.strip_suffix('\n').unwrap_or(&ours);
        let want = case["text"].as_str().unwrap();
        if ours == want {
            identical += 1;
        } else {
            let pos = ours.chars().zip(want.chars()).take_while(|(a, b)| a == b).count();
            eprintln!("prompt {prompt:?}: first difference at character {pos}\n  ours:      {ours:?}\n  llama.cpp: {want:?}");
        }
    }
    eprintln!("{identical}/{} greedy continuations identical to llama.cpp", cases.len());
    assert!(identical >= 4, "only {identical} of {} continuations identical", cases.len());
}

#[test]
fn prompt_tokens_match_llama_completion() {
    let model = edgevl_testdata::smollm2_path();
    for case in golden("greedy.json")["cases"].as_array().unwrap() {
        let out = edgevl()
            .args(["tokenize", "--json", "-p", case["prompt"].as_str().unwrap()])
            .arg("-m")
            .arg(&model)
            .output()
            .unwrap();
        assert!(out.status.success());
        let ours: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(ids(&ours), ids(&case["prompt_ids"]));
    }
}

#[test]
fn perplexity_within_one_percent_of_llama_perplexity() {
    let model = edgevl_testdata::smollm2_path();
    let g = golden("perplexity.json");
    let text = edgevl_testdata::fixture("text/devils-dictionary.txt");
    let out = edgevl()
        .args(["perplexity", "--json", "-c", "512", "-t", "2", "-f"])
        .arg(&text)
        .arg("-m")
        .arg(&model)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ours: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (p, want) = (ours["ppl"].as_f64().unwrap(), g["ppl"].as_f64().unwrap());
    eprintln!("perplexity: edgevl {p:.4}, llama.cpp {want:.4} ({:+.3}%)", (p / want - 1.0) * 100.0);
    assert_eq!(ours["n_chunks"], g["n_chunks"]);
    assert_eq!(ours["n_tokens"], g["n_tokens"]);
    assert!((p / want - 1.0).abs() < 0.01, "ppl {p} vs llama.cpp {want}");
}
