//! `edgevl run` on bad input: a missing file, a GGUF truncated at every 1/64 of its length, a
//! tensor missing, a tensor of the wrong shape, a prompt longer than the context. Each must end
//! with a non-zero exit and a clear error on stderr, never a panic.

use edgevl_gguf::{GgufFile, GgufWriter, TensorEdit};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tiny() -> PathBuf {
    edgevl_testdata::fixture("tiny-qwen2/model.gguf")
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli_errors");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir.join(name)
}

fn run(model: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgevl"))
        .args(["run", "--temp", "0", "-t", "1", "-n", "4", "-p", "Hello"])
        .args(extra)
        .arg("-m")
        .arg(model)
        .output()
        .expect("start edgevl")
}

/// Non-zero exit, an `edgevl: error:` line naming `needle`, no panic; returns stderr.
fn assert_clean_failure(out: &Output, needle: &str, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{what}: exit status {:?}", out.status);
    assert_eq!(out.status.code(), Some(1), "{what}: killed or aborted? stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{what}: panic: {stderr}");
    assert!(stderr.contains("edgevl: error:"), "{what}: no error line: {stderr}");
    assert!(stderr.contains(needle), "{what}: error does not mention {needle:?}: {stderr}");
    assert!(out.stdout.is_empty(), "{what}: stdout not empty");
    stderr
}

#[test]
fn nonexistent_model() {
    let path = scratch("no-such-model.gguf");
    let out = run(&path, &[]);
    let stderr = assert_clean_failure(&out, "no-such-model.gguf", "nonexistent model");
    // The operating system's reason once: the library's message names its cause, and the
    // error line does not repeat it from the cause chain.
    assert_eq!(stderr.matches("No such file or directory").count(), 1, "{stderr}");
}

#[test]
fn closed_stdout_ends_quietly() {
    use std::process::Stdio;
    for args in [&["info"][..], &["tokenize", "-p", "Hello there", "-m"][..]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_edgevl"))
            .args(args)
            .arg(tiny())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start edgevl");
        // The reader goes away before the child has loaded the file: its first write finds the
        // pipe closed (as `edgevl info F | head -c1` does after one byte).
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("edgevl ends");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_ne!(out.status.code(), Some(101), "{args:?}: {stderr}");
    }
}

#[test]
fn the_model_and_the_mmproj_swapped_say_which_is_which() {
    // They said "missing metadata key 'clip.projector_type'" and "unsupported architecture 'clip'".
    let mmproj = edgevl_testdata::fixture("tiny-vlm/mmproj.gguf");
    let llm = tiny();
    let out = run(&llm, &["--mmproj", llm.to_str().expect("utf-8 path")]);
    assert_clean_failure(
        &out,
        "is a language model's file (architecture 'qwen2'), not an mmproj",
        "LLM as mmproj",
    );
    let out = run(&mmproj, &[]);
    assert_clean_failure(&out, "is an mmproj (vision encoder) file, not a language model", "mmproj as LLM");
}

#[test]
fn image_flags_without_an_mmproj_are_refused() {
    // They were taken and ignored (`--max-tiles 0` ran) where with --mmproj the same flag is checked.
    for flag in [&["--max-tiles", "0"][..], &["--vit-int8"], &["--strategy", "relaxed"]] {
        let out = run(&tiny(), flag);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag:?}: {stderr}");
        assert!(stderr.contains("--mmproj"), "{flag:?}: {stderr}");
    }
}

#[test]
fn truncated_gguf_at_every_64th() {
    let bytes = std::fs::read(tiny()).expect("fixture");
    let path = scratch("truncated.gguf");
    for k in 0..64 {
        let len = bytes.len() * k / 64;
        std::fs::write(&path, &bytes[..len]).expect("write truncated file");
        let out = run(&path, &[]);
        assert_clean_failure(&out, "truncated.gguf", &format!("truncated at {k}/64 ({len} bytes)"));
    }
}

/// The fixture rewritten with `edit` applied to its tensors (name, type, dims, data).
fn rewrite(name: &str, edit: impl Fn(&str, &[u64], &[u8]) -> Option<(Vec<u64>, Vec<u8>)>) -> PathBuf {
    let file = GgufFile::open(tiny()).expect("open fixture");
    let w = GgufWriter::copy_of(&file, |t, data| match edit(&t.name, &t.dims, data) {
        Some((dims, data)) => TensorEdit::Replace(t.ggml_type, dims, data),
        None => TensorEdit::Drop,
    })
    .expect("copy fixture");
    let path = scratch(name);
    w.write_to_path(&path).expect("write gguf");
    path
}

#[test]
fn rewritten_fixture_still_runs() {
    // The rewriting itself must not break the file, or the two tests below prove nothing.
    let path = rewrite("identity.gguf", |_, dims, data| Some((dims.to_vec(), data.to_vec())));
    let out = run(&path, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn missing_tensor() {
    let path = rewrite("missing-tensor.gguf", |name, dims, data| {
        (name != "blk.1.attn_k.weight").then(|| (dims.to_vec(), data.to_vec()))
    });
    let out = run(&path, &[]);
    assert_clean_failure(&out, "blk.1.attn_k.weight", "missing tensor");
}

#[test]
fn wrong_tensor_shape() {
    // ffn_up is [64, 128] (f32); store it as [128, 64]: same bytes, wrong shape.
    let path = rewrite("wrong-shape.gguf", |name, dims, data| {
        let dims = if name == "blk.0.ffn_up.weight" { vec![dims[1], dims[0]] } else { dims.to_vec() };
        Some((dims, data.to_vec()))
    });
    let out = run(&path, &[]);
    assert_clean_failure(&out, "blk.0.ffn_up.weight", "wrong shape");
}

#[test]
fn prompt_longer_than_context() {
    let prompt = "one two three four five six seven eight nine ten ".repeat(8);
    let out = Command::new(env!("CARGO_BIN_EXE_edgevl"))
        .args(["run", "--temp", "0", "-t", "1", "-n", "4", "-c", "32", "-p", &prompt])
        .arg("-m")
        .arg(tiny())
        .output()
        .expect("start edgevl");
    assert_clean_failure(&out, "only 32 of the 32-token context are left", "prompt longer than the context");
}

#[test]
fn a_fifo_or_a_directory_as_the_model_fails_at_once() {
    let fifo = scratch("model-fifo.gguf");
    let _ = std::fs::remove_file(&fifo);
    assert!(Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());
    // Opening a FIFO for reading blocks until a writer comes; the model is refused before that.
    let t0 = std::time::Instant::now();
    assert_clean_failure(&run(&fifo, &[]), "not a regular file", "a FIFO");
    assert!(t0.elapsed() < std::time::Duration::from_secs(10), "took {:?}", t0.elapsed());
    let dir = scratch("model-dir.gguf");
    std::fs::create_dir_all(&dir).expect("dir");
    assert_clean_failure(&run(&dir, &[]), "is a directory", "a directory");
}

#[test]
fn sampling_settings_the_chain_cannot_use_are_refused() {
    for (flag, value, needle) in [
        ("--temp", "NaN", "temperature"),
        ("--top-p", "2", "top-p"),
        ("--min-p", "-0.5", "min-p"),
        ("--repeat-penalty", "0", "repeat penalty"),
    ] {
        // Refused before the model loads (the model named here does not exist).
        let out = Command::new(env!("CARGO_BIN_EXE_edgevl"))
            .args(["run", "-t", "1", "-n", "4", "-p", "Hello", &format!("{flag}={value}"), "-m"])
            .arg("/nonexistent/model.gguf")
            .output()
            .expect("start edgevl");
        let err = assert_clean_failure(&out, needle, flag);
        assert!(!err.contains("nonexistent"), "{flag}: the model was loaded first: {err}");
    }
}

#[test]
fn counts_out_of_range_are_refused_before_loading() {
    for args in [
        &["run", "-m", "x.gguf", "-t", "0"][..],
        &["run", "-m", "x.gguf", "-t", "5000"],
        &["run", "-m", "x.gguf", "-c", "0"],
        &["perplexity", "-m", "x.gguf", "-f", "x.txt", "-c", "0"],
        &["bench", "-m", "x.gguf", "-p", "18446744073709551615"],
        &["bench", "-m", "x.gguf", "-d", "2000000"],
        &["encode-image", "--mmproj", "m", "--image", "i", "--npy", "o", "-t", "0"],
        &["convert", "src", "-o", "out", "-t", "100000"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_edgevl")).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("invalid value") && !stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn output_paths_are_checked_before_the_run() {
    // A statistics file into a directory, or into a folder that does not exist, failed after the
    // answer was generated (and printed); an activations folder where a file stands, likewise.
    let dir = scratch("outputs");
    std::fs::create_dir_all(&dir).expect("dir");
    let out = run(&tiny(), &["--stats-json", dir.to_str().unwrap()]);
    assert_clean_failure(&out, "is a directory", "--stats-json DIR");
    let missing = dir.join("no-such-folder").join("stats.json");
    let out = run(&tiny(), &["--stats-json", missing.to_str().unwrap()]);
    assert_clean_failure(&out, "does not exist", "--stats-json in a missing folder");
    let file = dir.join("a-file");
    std::fs::write(&file, b"x").expect("file");
    let out = run(&tiny(), &["--dump-activations", file.to_str().unwrap()]);
    assert_clean_failure(&out, "it is a file", "--dump-activations FILE");
    // An activation name no pass emits wrote nothing and exited 0: clap refuses it, listing the names.
    let out = run(&tiny(), &["--dump-activations", dir.to_str().unwrap(), "--dump", "layer_outt"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("layer_outt") && stderr.contains("result_output"), "{stderr}");
    // A valid name still writes its files.
    let out = run(&tiny(), &["--dump-activations", dir.to_str().unwrap(), "--dump", "result_norm"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().ends_with("result_norm.npy")));
}

#[test]
fn a_file_without_a_pre_tokenizer_is_run_with_a_warning() {
    // llama.cpp warns loudly that quality will be degraded; edgevl fell back to the default rules silently.
    let src = GgufFile::open(tiny()).expect("open");
    let mut w = GgufWriter::copy_of(&src, |_, _| TensorEdit::Keep).expect("copy");
    w.remove_kv("tokenizer.ggml.pre").expect("the fixture names its pre-tokenizer");
    let path = scratch("no-pre.gguf");
    std::fs::write(&path, w.to_bytes().expect("bytes")).expect("write");
    let out = run(&path, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("no tokenizer.ggml.pre") && stderr.contains("degraded"), "{stderr}");
    let named = run(&tiny(), &[]);
    assert!(!String::from_utf8_lossy(&named.stderr).contains("tokenizer.ggml.pre"));
}
