//! `edgevl info` on llama.cpp-converted files: the family, shapes and tokenizer facts it prints
//! are the ones the fixture scripts recorded from transformers' configs; a file that is not GGUF
//! is a clear error.

use std::process::{Command, Output};

fn info(path: &std::path::Path, json: bool) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_edgevl"));
    c.arg("info").arg(path);
    if json {
        c.arg("--json");
    }
    c.output().expect("start edgevl")
}

fn reference(family: &str) -> serde_json::Value {
    let path = edgevl_testdata::fixture(&format!("tiny-{family}/reference.json"));
    serde_json::from_slice(&std::fs::read(path).expect("reference.json")).expect("json")
}

fn json_info(path: &std::path::Path) -> serde_json::Value {
    let out = info(path, true);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("info --json prints JSON")
}

#[test]
fn mmproj_files_show_their_family_and_tower() {
    for (family, tokens) in [("internvl", 256), ("smolvlm", 64)] {
        let r = reference(family);
        let v = json_info(&edgevl_testdata::fixture(&format!("tiny-{family}/mmproj.gguf")));
        let m = &v["vision"];
        assert_eq!(v["kind"], "mmproj");
        assert_eq!(m["tile_size"], r["config"]["tile_size"]);
        assert_eq!(m["tokens_per_view"], tokens);
        assert_eq!(m["tokens_per_view"], r["config"]["tokens_per_view"]);
        assert_eq!(m["width"], r["config"]["vision"]["hidden"]);
        assert_eq!(m["layers"], r["config"]["vision"]["layers"]);
        assert_eq!(m["class_token"], r["config"]["vision"]["class_token"]);
        assert_eq!(m["output_width"], r["config"]["projector"]["out"]);
        let text = String::from_utf8(
            info(&edgevl_testdata::fixture(&format!("tiny-{family}/mmproj.gguf")), false).stdout,
        )
        .unwrap();
        let name = if family == "smolvlm" { "idefics3" } else { family };
        assert!(
            text.contains(&format!("family {name}")) && text.contains(&format!("{tokens} tokens a view")),
            "{text}"
        );
    }
}

#[test]
fn llm_files_show_shapes_tokenizer_and_image_tokens() {
    for family in ["internvl", "smolvlm"] {
        let r = reference(family);
        let v = json_info(&edgevl_testdata::fixture(&format!("tiny-{family}/model.gguf")));
        let t = &r["config"]["text"];
        assert_eq!(v["kind"], "llm");
        assert_eq!(v["architecture"], t["arch"]);
        assert_eq!((&v["llm"]["width"], &v["llm"]["layers"]), (&t["hidden"], &t["layers"]));
        assert_eq!((&v["llm"]["heads"], &v["llm"]["kv_heads"]), (&t["heads"], &t["kv_heads"]));
        assert_eq!(v["tokenizer"]["vocab"], t["vocab"]);
        assert_eq!(v["tokenizer"]["image_tokens"][0], r["config"]["image_token"]);
        assert_eq!(v["tokenizer"]["chat_template_chars"], r["chat_template"].as_str().unwrap().len());
    }
}

#[test]
fn the_lfm2_image_tokens_gen_random_adds_are_listed() {
    // `gen-random --image-tokens` adds llama-mtmd-cli's lfm2 tokens; info said "none".
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("info_cli");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tiny-image-tokens.gguf");
    let gen = Command::new(env!("CARGO_BIN_EXE_edgevl"))
        .args(["gen-random", "--preset", "tiny", "--type", "q8_0", "--image-tokens", "-o"])
        .arg(&path)
        .output()
        .expect("gen-random");
    assert!(gen.status.success(), "{}", String::from_utf8_lossy(&gen.stderr));
    assert_eq!(json_info(&path)["tokenizer"]["image_tokens"], serde_json::json!(["<|image_start|>"]));
}

#[test]
fn a_file_that_is_not_gguf_is_a_clear_error() {
    let out = info(&edgevl_testdata::fixture("tiny-internvl/reference.json"), false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("edgevl: error:") && stderr.contains("not a GGUF file"), "{stderr}");
    assert!(!stderr.contains("panicked") && out.stdout.is_empty());
}
