//! The quick start's question about the committed sample image, answered by `edgevl run` with the
//! committed demo mmproj (models/edgevl-demo), must equal the PyTorch model's greedy answer that
//! `scripts/train/answer_torch.py` wrote into models/edgevl-demo/reference.json.

use serde_json::Value;
use std::process::Command;

#[test]
fn quick_start_answer_equals_the_pytorch_models() {
    let dir = edgevl_testdata::repo_root().join("models/edgevl-demo");
    let text =
        std::fs::read_to_string(dir.join("reference.json")).expect("read models/edgevl-demo/reference.json");
    let reference: Value = serde_json::from_str(&text).expect("reference.json is JSON");
    let field =
        |k: &str| reference[k].as_str().unwrap_or_else(|| panic!("reference.json: {k} missing")).to_string();
    let number =
        |k: &str| reference[k].as_u64().unwrap_or_else(|| panic!("reference.json: {k} missing")).to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_edgevl"))
        .arg("run")
        .arg("-m")
        .arg(edgevl_testdata::smollm2_path())
        .arg("--mmproj")
        .arg(dir.join(field("mmproj")))
        .arg("--image")
        .arg(dir.join(field("image")))
        .args(["-p", &field("question"), "--temp", "0", "-t", "2"])
        .args([
            "-n",
            &number("max_new"),
            "--strategy",
            &field("strategy"),
            "--max-tiles",
            &number("max_tiles"),
        ])
        .output()
        .expect("run edgevl");
    assert!(out.status.success(), "edgevl run failed: {}", String::from_utf8_lossy(&out.stderr));
    let answer = String::from_utf8_lossy(&out.stdout);
    assert_eq!(answer.trim(), field("answer").trim(), "edgevl's answer differs from the PyTorch model's");
}
