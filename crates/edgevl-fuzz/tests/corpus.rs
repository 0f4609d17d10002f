//! Replays every committed corpus file (`fuzz/corpus/TARGET`) and every crash found so far
//! (`fuzz/regressions/TARGET`) through its fuzz target, and the fixtures the corpora were
//! seeded from: on stable Rust, without libFuzzer, in every `cargo test`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use edgevl_fuzz::{target, Target};

fn fuzz_dir() -> PathBuf {
    edgevl_testdata::repo_root().join("fuzz")
}

/// The files of `dir`, sorted (none when it does not exist).
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    out.sort();
    out
}

/// Runs `inputs` through target `name`, naming every input that panics; returns how many ran.
fn run(name: &str, inputs: impl IntoIterator<Item = (String, Vec<u8>)>) -> usize {
    let t: Target = target(name).unwrap_or_else(|| panic!("no fuzz target {name}"));
    let mut failed = Vec::new();
    let mut n = 0;
    for (label, bytes) in inputs {
        n += 1;
        if catch_unwind(AssertUnwindSafe(|| t(&bytes))).is_err() {
            failed.push(label);
        }
    }
    assert!(failed.is_empty(), "{name} panicked on {failed:?}");
    n
}

/// The corpus and the regressions of `name`, which must not be empty.
fn replay(name: &str, extra: Vec<(String, Vec<u8>)>) {
    let dirs = [fuzz_dir().join("corpus").join(name), fuzz_dir().join("regressions").join(name)];
    let corpus: Vec<(String, Vec<u8>)> = dirs
        .iter()
        .flat_map(|d| files(d))
        .map(|p| {
            (p.display().to_string(), std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        })
        .collect();
    assert!(!corpus.is_empty(), "fuzz/corpus/{name} is empty: run scripts/fuzz.sh");
    let n = run(name, corpus.into_iter().chain(extra));
    eprintln!("{name}: {n} inputs replayed");
}

/// The fixture files under `rel`, each prefixed by each of `selectors` (empty: as they are).
fn fixtures(rels: &[&str], selectors: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for rel in rels {
        let path = edgevl_testdata::fixture(rel);
        let paths = if path.is_dir() { files(&path) } else { vec![path] };
        for p in paths {
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            if selectors.is_empty() {
                out.push((p.display().to_string(), bytes.clone()));
            }
            for &s in selectors {
                out.push((format!("{} (selector {s})", p.display()), [&[s][..], &bytes].concat()));
            }
        }
    }
    out
}

const MODELS: [&str; 4] = [
    "tiny-llama-spm/model.gguf",
    "tiny-qwen2/model.gguf",
    "tiny-smolvlm/model.gguf",
    "tiny-internvl/model.gguf",
];
const MMPROJS: [&str; 4] = [
    "tiny-vlm/mmproj.gguf",
    "tiny-internvl/mmproj.gguf",
    "tiny-smolvlm/mmproj.gguf",
    "mmproj-llamacpp/mmproj.gguf",
];

#[test]
fn gguf_parse_corpus() {
    replay("gguf_parse", fixtures(&[&MODELS[..], &MMPROJS[..]].concat(), &[]));
}

#[test]
fn gguf_llm_corpus() {
    replay("gguf_llm", fixtures(&MODELS, &[]));
}

#[test]
fn gguf_mmproj_corpus() {
    replay("gguf_mmproj", fixtures(&MMPROJS, &[]));
}

#[test]
fn image_decode_corpus() {
    // Every family with its own rule, and one other strategy each.
    replay("image_decode", fixtures(&["vision/modes", "vision/exif", "vision/bad"], &[0, 1, 2, 3, 7, 20]));
}

#[test]
fn tiling_plan_corpus() {
    replay("tiling_plan", Vec::new());
}

#[test]
fn tokenizer_corpus() {
    replay("tokenizer", Vec::new());
}

#[test]
fn chat_template_corpus() {
    replay("chat_template", Vec::new());
}

#[test]
fn server_chat_corpus() {
    replay("server_chat", Vec::new());
}

#[test]
fn server_upload_corpus() {
    replay("server_upload", Vec::new());
}

#[test]
fn safetensors_header_corpus() {
    // The committed Hugging Face checkpoints, and their headers with data cut short.
    let files = fixtures(&["hf/tiny-edgevl/model.safetensors", "hf/tiny-smolvlm/model.safetensors"], &[]);
    let cut =
        files.iter().map(|(label, bytes)| (format!("{label} (cut)"), bytes[..bytes.len() / 2].to_vec()));
    let cut: Vec<_> = cut.collect();
    replay("safetensors_header", files.into_iter().chain(cut).collect());
}

/// The seeds reach the deep paths: every seed model loads (so the fuzzer mutates files that get
/// past the header checks), and the fixture images decode.
#[test]
fn seeds_load() {
    use std::sync::Arc;
    let seeds = |t: &str| {
        files(&fuzz_dir().join("corpus").join(t))
            .into_iter()
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("seed-")))
    };
    let open = |p: &Path| {
        Arc::new(edgevl_gguf::GgufFile::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
    };
    let mut n = 0;
    for p in seeds("gguf_llm") {
        let file = open(&p);
        edgevl_tokenizer::Tokenizer::from_gguf(file.metadata())
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        edgevl_model::Decoder::load(file, &edgevl_testdata::kernels())
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        n += 1;
    }
    let mut families = Vec::new();
    for p in seeds("gguf_mmproj") {
        let enc = edgevl_model::vision::VisionEncoder::load(open(&p), &edgevl_testdata::kernels())
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        families.push(enc.hparams().family);
        n += 1;
    }
    families.dedup();
    assert_eq!(families.len(), 3, "a seed of every vision family: {families:?}");
    assert!(n >= 8, "{n} seed models");
}
