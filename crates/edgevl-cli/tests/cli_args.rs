//! What a command-line user types and pipes, on the tiny Qwen2 fixture: prompts that start with
//! '-', seeds (a new one each run unless given, -1 as llama-cli's "random"), a closed stdout,
//! special tokens in `tokenize`, a reply stopped by the context's end.

use std::io::Read;
use std::process::{Command, Output, Stdio};

fn tiny() -> String {
    edgevl_testdata::fixture("tiny-qwen2/model.gguf").to_string_lossy().into_owned()
}

fn edgevl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgevl")).args(args).output().expect("start edgevl")
}

fn stdout_of(args: &[&str]) -> String {
    let out = edgevl(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[test]
fn prompts_may_start_with_a_hyphen() {
    // clap took "-5 + 3 = ?" for an option (exit 2) where llama-cli takes the next argument as the value.
    let m = tiny();
    stdout_of(&["run", "-m", &m, "-t", "1", "-n", "2", "--temp", "0", "-p", "-5 + 3 = ?"]);
    stdout_of(&["chat", "-m", &m, "-t", "1", "-n", "2", "--temp", "0", "--system", "- be brief"]);
    let ids = stdout_of(&["tokenize", "-m", &m, "-p", "- item"]);
    assert!(ids.lines().next().is_some_and(|l| l.ends_with("-> '-'")), "{ids}");
    // A negative temperature (greedy) is a number, not an option.
    stdout_of(&["run", "-m", &m, "-t", "1", "-n", "2", "--temp", "-1", "-p", "Hi"]);
}

#[test]
fn each_run_draws_its_own_seed_unless_given_one() {
    let m = tiny();
    let sampled = |seed: &[&str]| {
        let mut args = vec!["run", "-m", &m, "-t", "1", "-n", "12", "--temp", "1.5", "--top-k", "0"];
        args.extend(["--top-p", "1", "--min-p", "0", "-p", "Hello"]);
        args.extend(seed);
        stdout_of(&args)
    };
    // Twelve tokens at temperature 1.5 over 512 random-weight logits: four unseeded runs are not
    // all the same (with one fixed default seed they were).
    let unseeded: std::collections::HashSet<String> =
        [&[][..], &[], &["--seed", "-1"], &["--seed", "-1"]].into_iter().map(sampled).collect();
    assert!(unseeded.len() > 1, "{unseeded:?}");
    assert_eq!(sampled(&["--seed", "9"]), sampled(&["--seed", "9"]));
    let bad = edgevl(&["run", "-m", &m, "-p", "Hi", "--seed", "-2"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("-1 (random)"));
}

#[test]
fn a_closed_stdout_ends_the_run_quietly() {
    // `edgevl run ... | head -c 5`: a write error at the pipe ends with 141, as SIGPIPE ends `cat`
    // (it was "edgevl: error: Broken pipe" and 1, which `set -o pipefail` scripts take for a failure).
    let m = tiny();
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgevl"))
        .args(["run", "-m", &m, "-t", "1", "-n", "500", "--temp", "0", "-p", "Hello"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start edgevl");
    let mut first = [0u8; 1];
    child.stdout.take().expect("stdout").read_exact(&mut first).expect("a first byte");
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
}

#[test]
fn tokenize_shows_special_tokens_by_their_text() {
    // As llama-tokenize: a special token's piece is its text (it printed '').
    let ids = stdout_of(&["tokenize", "-m", &tiny(), "-p", "<|im_start|>hi"]);
    assert!(ids.lines().next().is_some_and(|l| l.ends_with("-> '<|im_start|>'")), "{ids}");
}

#[test]
fn a_reply_stopped_by_the_context_says_so() {
    let out =
        edgevl(&["run", "-m", &tiny(), "-t", "1", "-n", "100", "--temp", "0", "-c", "40", "-p", "Hello"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("the answer stopped at the end of the 40-token context"), "{stderr}");
}

#[test]
fn a_bench_with_nothing_to_measure_says_so() {
    // It exited 0 printing nothing: the check came after an early return.
    let out = edgevl(&["bench", "-m", &tiny(), "-p", "0", "-n", "0", "--no-bandwidth"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to measure"));
}

#[test]
fn chat_image_without_a_path_says_what_it_needs() {
    // It said "unknown command /image" of a command the help lists.
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgevl"))
        .args(["chat", "-m", &tiny(), "-t", "1", "--temp", "0", "-n", "2"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start edgevl chat");
    use std::io::Write;
    child.stdin.take().expect("stdin").write_all(b"/image\n/exit\n").expect("script");
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("/image needs a file: /image PATH"), "{stderr}");
}

#[test]
fn a_reset_chat_answers_as_a_new_one() {
    // The chat's one sampler kept the first conversation's tokens in the repeat penalty's window
    // after /reset, so the same question got another greedy answer.
    let chat = |script: &[u8]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_edgevl"))
            .args(["chat", "-m", &tiny(), "-t", "1", "--temp", "0", "-n", "12", "--repeat-penalty", "3"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start edgevl chat");
        use std::io::Write;
        child.stdin.take().expect("stdin").write_all(script).expect("script");
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("UTF-8")
    };
    let once = chat(b"Say hello.\n/exit\n");
    let twice = chat(b"Say hello.\n/reset\nSay hello.\n/exit\n");
    assert!(!once.trim().is_empty());
    assert_eq!(twice, format!("{once}{once}"), "first answer:\n{once}");
}

#[test]
fn a_prompt_file_or_stdin_is_the_prompt() {
    let m = tiny();
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli_args_prompt_file");
    std::fs::create_dir_all(&dir).unwrap();
    let prompt = "- a prompt from a file,\nover two lines";
    let file = dir.join("prompt.txt");
    std::fs::write(&file, prompt).unwrap();
    let base = ["run", "-m", &m, "-t", "1", "-n", "4", "--temp", "0"];
    let from_p = stdout_of(&[&base[..], &["-p", prompt]].concat());
    assert_eq!(stdout_of(&[&base[..], &["-f", file.to_str().unwrap()]].concat()), from_p);
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgevl"))
        .args(base)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start edgevl");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), prompt.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), from_p);
    // Not UTF-8: the first bad byte is named; -p and -f together, or neither, are refused.
    std::fs::write(&file, b"ok \xff bad").unwrap();
    let out = edgevl(&[&base[..], &["-f", file.to_str().unwrap()]].concat());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("not UTF-8 text (byte 3"), "{err}");
    for args in [vec!["-p", "x", "-f", file.to_str().unwrap()], vec![]] {
        let out = edgevl(&[&base[..], &args[..]].concat());
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn ctrl_c_stops_the_answer_and_reports_it() {
    // It ended the process mid-word: no newline, no summary, no --stats-json.
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli_args_ctrl_c");
    std::fs::create_dir_all(&dir).unwrap();
    let stats = dir.join("stats.json");
    let _ = std::fs::remove_file(&stats);
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgevl"))
        .args(["run", "-t", "1", "-n", "4000", "-c", "4096", "--temp", "0", "--stats-json"])
        .arg(&stats)
        .args(["-p", "List 1000 English words, one per line."])
        .arg("-m")
        .arg(edgevl_testdata::smollm2_path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start edgevl");
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    stdout.read_exact(&mut first).expect("the answer starts");
    let killed = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill");
    assert!(killed.success());
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("answer stopped (Ctrl-C)") && err.contains("generated"), "{err}");
    assert!(rest.ends_with(b"\n"), "the answer ends its line");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&stats).expect("stats written")).unwrap();
    assert_eq!(json["finish"], "cancelled");
    assert!(json["generated_tokens"].as_u64().unwrap() < 4000, "{json}");
}

#[test]
fn ctrl_c_while_an_image_is_read_ends_before_the_answer() {
    // A turn's start cleared the cancel flag, so a Ctrl-C pressed while an image was decoded was
    // lost and the whole answer ran.
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli_args_ctrl_c_image");
    std::fs::create_dir_all(&dir).unwrap();
    let (small, big) = (dir.join("small.png"), dir.join("big.png"));
    image::RgbImage::from_pixel(32, 32, image::Rgb([200, 30, 30])).save(&small).unwrap();
    // Large enough that decoding and tiling it takes far longer than the signal takes to arrive.
    image::RgbImage::from_fn(9000, 9000, |x, y| image::Rgb([(x % 251) as u8, (y % 241) as u8, 7]))
        .save(&big)
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgevl"))
        .args(["run", "-t", "1", "-n", "50", "-c", "8192", "--temp", "0", "-p", "Describe the images."])
        .arg("--mmproj")
        .arg(edgevl_testdata::fixture("tiny-vlm/mmproj.gguf"))
        .arg("--image")
        .arg(&small)
        .arg("--image")
        .arg(&big)
        .arg("-m")
        .arg(edgevl_testdata::fixture("tiny-llama-spm/model.gguf"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start edgevl");
    // The first image's line: the handler is in, the big image is being read.
    let mut stderr = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !String::from_utf8_lossy(&seen).contains("\n") {
        stderr.read_exact(&mut byte).expect("the first image is described");
        seen.push(byte[0]);
    }
    let killed = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill");
    assert!(killed.success());
    stderr.read_to_end(&mut seen).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&seen);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("stopped (Ctrl-C) before the answer"), "{err}");
    assert!(out.stdout.is_empty(), "no answer: {:?}", String::from_utf8_lossy(&out.stdout));
}
