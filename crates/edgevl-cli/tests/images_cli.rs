//! Images through the command line on the tiny VLM fixture (tests/fixtures/tiny-vlm + the tiny
//! llama, both 64 wide): `run --mmproj --image` puts the image's tokens in the prompt,
//! `--stats-json` reports them; a scripted `chat` attaches the same image twice with `/image`
//! and `/stats` shows the second attach ran the ViT zero times; a projector of the wrong width
//! is refused with both widths named.

use serde_json::Value;
use std::io::Write;
use std::process::{Command, Output, Stdio};

fn fixture(rel: &str) -> String {
    edgevl_testdata::fixture(rel).display().to_string()
}

fn edgevl(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgevl"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start edgevl");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    child.wait_with_output().expect("wait for edgevl")
}

fn num(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} missing in {v}"))
}

#[test]
fn run_with_an_image_reports_its_tokens() {
    let dir = std::env::temp_dir().join(format!("edgevl-images-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let stats = dir.join("stats.json").display().to_string();
    let (llm, mmproj, image) = (
        fixture("tiny-llama-spm/model.gguf"),
        fixture("tiny-vlm/mmproj.gguf"),
        fixture("vision/pipeline/small.png"),
    );
    let args = [
        "run",
        "-m",
        &llm,
        "--mmproj",
        &mmproj,
        "--image",
        &image,
        "-p",
        "What is in the picture?",
        "-n",
        "4",
        "--temp",
        "0",
        "-t",
        "2",
        "--stats-json",
        &stats,
    ];
    let out = edgevl(&args, "");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "edgevl run failed: {stderr}");
    assert!(stderr.contains("small.png") && stderr.contains("relaxed grid"), "{stderr}");
    let v: Value = serde_json::from_slice(&std::fs::read(&stats).unwrap()).unwrap();
    // small.png (100x44) is one tile under relaxed matching: 196 image tokens, no global view.
    assert_eq!(num(&v, "image_tokens"), 196);
    assert!(num(&v, "prompt_tokens") > 196);
    std::fs::remove_dir_all(&dir).unwrap();

    // Images need an mmproj.
    let out = edgevl(&["run", "-m", &llm, "--image", &image, "-p", "hi", "-n", "1"], "");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--mmproj"));
}

#[test]
fn scripted_chat_reuses_the_cached_image() {
    let (llm, mmproj, image) = (
        fixture("tiny-llama-spm/model.gguf"),
        fixture("tiny-vlm/mmproj.gguf"),
        fixture("vision/pipeline/input.png"),
    );
    let script =
        format!("/image {image}\nWhat is this?\n/stats\n/reset\n/image {image}\nAnd now?\n/stats\n/exit\n");
    let args = ["chat", "-m", &llm, "--mmproj", &mmproj, "-c", "4096", "-n", "2", "--temp", "0", "-t", "2"];
    let out = edgevl(&args, &script);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "edgevl chat failed: {stderr}");
    let stats: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("vit_tiles_encoded").is_some())
        .collect();
    assert_eq!(stats.len(), 2, "two /stats lines expected:\n{stdout}\n{stderr}");
    let views = num(&stats[0], "vit_tiles_encoded");
    assert!(views > 1, "input.png should be tiled");
    assert_eq!(num(&stats[0]["last_turn"], "image_tokens"), views * 196);
    assert_eq!((num(&stats[0], "image_cache_hits"), num(&stats[1], "image_cache_hits")), (0, 1));
    assert_eq!(num(&stats[1], "vit_tiles_encoded"), views, "the second attach ran the ViT again");
    assert!(stderr.contains("(cached)"), "{stderr}");
}

#[test]
fn projector_width_mismatch_names_both_widths() {
    let dir = std::env::temp_dir().join(format!("edgevl-width-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wide = dir.join("mmproj-96.gguf");
    let shape = edgevl_gen::vision::VisionShape { projection_dim: 96, ..edgevl_gen::vision::TINY_VISION };
    edgevl_gen::vision::write_mmproj(&shape, edgevl_gen::vision::VisionDType::F32, 3, &wide).unwrap();
    let (llm, wide) = (fixture("tiny-llama-spm/model.gguf"), wide.display().to_string());
    let out = edgevl(&["run", "-m", &llm, "--mmproj", &wide, "-p", "hi", "-n", "1"], "");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("96-wide") && stderr.contains("64 wide"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bench_with_an_image_reports_every_stage() {
    let (llm, mmproj, image) = (
        fixture("tiny-llama-spm/model.gguf"),
        fixture("tiny-vlm/mmproj.gguf"),
        fixture("vision/pipeline/input.png"),
    );
    let args = [
        "bench",
        "-m",
        &llm,
        "--mmproj",
        &mmproj,
        "--image",
        &image,
        "-n",
        "4",
        "-c",
        "4096",
        "-t",
        "2",
        "--chunk",
        "64,512",
        "--typing-s",
        "0",
        "--json",
    ];
    let out = edgevl(&args, "");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "edgevl bench failed: {stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    assert_eq!((num(&v, "views"), num(&v, "image_tokens")), (7, 7 * 196));
    assert_eq!(num(&v["turn"], "image_tokens"), 7 * 196);
    let chunks: Vec<u64> = v["chunks"].as_array().unwrap().iter().map(|c| num(c, "chunk")).collect();
    assert_eq!(chunks, [64, 512]);
    assert_eq!(v["pipelining"].as_array().unwrap().len(), 2);
    let ttft = v["ttft"].as_array().unwrap();
    assert_eq!(ttft.len(), 2);
    assert!(ttft.iter().all(|t| t["ttft_ms"].as_f64().unwrap() > 0.0));

    // The ViT rows: one tile, then nine at each batch size.
    let args = [
        "bench",
        "-m",
        &llm,
        "--mmproj",
        &mmproj,
        "-p",
        "8",
        "-n",
        "2",
        "-r",
        "1",
        "--vit-batch",
        "1,3",
        "--no-bandwidth",
        "--json",
    ];
    let out = edgevl(&args, "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let rows: Vec<(u64, u64)> =
        v["vit"].as_array().unwrap().iter().map(|r| (num(r, "views"), num(r, "vit_batch"))).collect();
    assert_eq!(rows, [(1, 1), (9, 1), (9, 3)]);
}
