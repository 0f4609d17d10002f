//! `edgevl run` on bad input: a missing file, a GGUF truncated at every 1/64 of its length, a
//! tensor missing, a tensor of the wrong shape, a prompt longer than the context. Each must end
//! with a non-zero exit and a clear error on stderr, never a panic.

use edgevl_gguf::{GgufFile, GgufWriter};
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
    let mut w = GgufWriter::new();
    for (k, v) in file.metadata().iter() {
        w.add_kv(k, v.clone());
    }
    for t in file.tensors() {
        if let Some((dims, data)) = edit(&t.name, &t.dims, file.tensor_data(t)) {
            w.add_tensor(t.name.clone(), t.ggml_type, &dims, data).expect("add tensor");
        }
    }
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
