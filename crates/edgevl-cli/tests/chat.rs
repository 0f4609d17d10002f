//! `edgevl chat` scripted through stdin on SmolLM2-135M-Instruct: two turns, `/stats` after
//! each, `/reset`, `/stats`; the second turn must reuse the whole first turn from the KV cache
//! and prefill only its new tokens. Also the context-overflow error of a scripted chat.

use serde_json::Value;
use std::io::Write;
use std::process::{Command, Output, Stdio};

fn chat(args: &[&str], script: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgevl"))
        .args(["chat", "--temp", "0", "-t", "2"])
        .args(args)
        .arg("-m")
        .arg(edgevl_testdata::smollm2_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start edgevl chat");
    child.stdin.take().expect("stdin").write_all(script.as_bytes()).expect("write script");
    child.wait_with_output().expect("wait for edgevl chat")
}

/// The stdout lines that are `/stats` objects.
fn stats_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("turns").is_some())
        .collect()
}

fn num(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} missing in {v}"))
}

#[test]
fn scripted_chat_second_turn_prefills_only_new_tokens() {
    let script = "What is the capital of France?\n/stats\nAnd what is the capital of Italy?\n/stats\n/reset\n/stats\n/exit\nnever read\n";
    let out = chat(&["-n", "16"], script);
    let stdout = String::from_utf8(out.stdout).expect("utf-8 stdout");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "edgevl chat failed: {stderr}");
    let stats = stats_lines(&stdout);
    assert_eq!(stats.len(), 3, "three /stats lines expected in stdout:\n{stdout}\nstderr:\n{stderr}");
    let (s1, s2, s3) = (&stats[0], &stats[1], &stats[2]);
    let (t1, t2) = (&s1["last_turn"], &s2["last_turn"]);
    assert_eq!((num(s1, "turns"), num(s2, "turns")), (1, 2));
    assert_eq!(num(t1, "reused_tokens"), 0);
    assert_eq!(num(t1, "prefilled_tokens"), num(t1, "prompt_tokens"));
    assert!(num(t1, "generated_tokens") > 0);
    // Everything the first turn left in the cache is reused; only the rest is prefilled.
    assert_eq!(num(t2, "reused_tokens"), num(s1, "n_past"), "turn 2 did not reuse turn 1's cache");
    assert_eq!(num(t2, "prefilled_tokens"), num(t2, "prompt_tokens") - num(s1, "n_past"));
    assert!(num(t2, "prefilled_tokens") < 40, "turn 2 prefilled {}", num(t2, "prefilled_tokens"));
    assert_eq!(num(s2, "prefilled_tokens_total"), num(t1, "prefilled_tokens") + num(t2, "prefilled_tokens"));
    assert_eq!(num(s2, "n_past") + num(s2, "tokens_left"), num(s2, "n_ctx"));
    // After /reset: an empty session.
    assert_eq!((num(s3, "turns"), num(s3, "n_past")), (0, 0));
    assert!(s3["last_turn"].is_null());
    // stdout holds the two answers and the three JSON lines, nothing else.
    let answers: Vec<&str> = stdout.lines().filter(|l| serde_json::from_str::<Value>(l).is_err()).collect();
    assert!(!answers.is_empty() && answers.len() <= 2 + 2 * 16, "unexpected stdout:\n{stdout}");
    assert!(!stdout.contains("edgevl:"), "log lines leaked to stdout:\n{stdout}");
}

#[test]
fn scripted_chat_context_overflow_fails_naming_tokens_left() {
    let long = "Please tell me everything you know about the history of the Roman Empire. ".repeat(6);
    let out = chat(&["-n", "8", "-c", "64"], &format!("{long}\n"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "overflow must fail the scripted chat");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("only 64 of the 64-token context are left"), "{stderr}");
    assert!(stderr.contains("shorten the input or use a larger context"), "{stderr}");
    // The failing line is named (a script's third line here).
    let out = chat(&["-n", "2", "-c", "64"], &format!("/help\n\n{long}\n"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 3 of stdin"), "{stderr}");
}
