//! `edgevl serve` as a process: it names its port on stderr, answers a chat over HTTP, and on
//! SIGTERM drains and exits 0; bad flags and a model that does not load end it with an error.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn edgevl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_edgevl"))
}

/// One HTTP/1.1 exchange with `Connection: close`; the whole response as text.
fn http(addr: &str, method: &str, path: &str, body: &str) -> String {
    http_as(addr, "", method, path, body)
}

/// [`http`] with `extra` header lines (each ending in CRLF).
fn http_as(addr: &str, extra: &str, method: &str, path: &str, body: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("send");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// A started `edgevl serve` and its stderr: each line sent to `log` as it comes, all of them
/// returned by `reader` at the end; `addr` is the address it named.
struct Served {
    child: std::process::Child,
    log: mpsc::Receiver<String>,
    reader: std::thread::JoinHandle<Vec<String>>,
    addr: String,
}

/// Starts `cmd` (an `edgevl serve` on port 0) and waits for the address it listens on.
fn spawn_serve(mut cmd: Command) -> Served {
    let mut child = cmd.stderr(Stdio::piped()).spawn().expect("start edgevl serve");
    let (tx, log) = mpsc::channel();
    let stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            all.push(line);
        }
        all
    });
    let addr = loop {
        let line = log.recv_timeout(Duration::from_secs(60)).expect("a log line");
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split_whitespace().next().expect("address").to_string();
        }
    };
    Served { child, log, reader, addr }
}

#[test]
fn serve_answers_a_chat_and_drains_on_sigterm() {
    let model = edgevl_testdata::fixture("tiny-qwen2/model.gguf");
    let mut cmd = edgevl();
    cmd.args(["serve", "--port", "0", "-t", "1", "-c", "256", "-m"])
        .arg(&model)
        // The API key from the environment (kept out of `ps`), as --api-key.
        .env("EDGEVL_API_KEY", "secret-key");
    let Served { mut child, reader, addr, .. } = spawn_serve(cmd);
    let mut health = String::new();
    for _ in 0..600 {
        health = http(&addr, "GET", "/health", "");
        if health.starts_with("HTTP/1.1 200") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let refused = http(&addr, "GET", "/v1/models", "");
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    let chat = http_as(
        &addr,
        "Authorization: Bearer secret-key\r\n",
        "POST",
        "/v1/chat/completions",
        r#"{"messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 4, "temperature": 0}"#,
    );
    assert!(chat.starts_with("HTTP/1.1 200") && chat.contains("\"chat.completion\""), "{chat}");
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(killed.success());
    let status = child.wait().expect("wait");
    let log = reader.join().expect("stderr reader").join("\n");
    assert!(status.success(), "exit {status:?}\n{log}");
    assert!(log.contains("draining") && log.contains("stopped") && !log.contains("panicked"), "{log}");
}

#[test]
fn a_second_signal_ends_the_drain_at_once() {
    // The drain waited for every reply in flight (up to 30 s) whatever came after the first signal.
    let mut cmd = edgevl();
    cmd.args(["serve", "--port", "0", "-t", "1", "-c", "2048", "-m"]).arg(edgevl_testdata::smollm2_path());
    let Served { mut child, log: rx, reader, addr } = spawn_serve(cmd);
    let next_line_with = |what: &str| loop {
        let line = rx.recv_timeout(Duration::from_secs(120)).expect("a log line");
        if line.contains(what) {
            break line;
        }
    };
    next_line_with("loaded");
    // A reply that would run to the end of the context (2,000 tokens: tens of seconds on one thread).
    let body = r#"{"messages": [{"role": "user", "content": "Write a long story."}], "max_tokens": 100000,
                   "ignore_eos": true, "stream": true}"#;
    let stream = {
        let addr = addr.clone();
        std::thread::spawn(move || http(&addr, "POST", "/v1/chat/completions", body))
    };
    std::thread::sleep(Duration::from_millis(500));
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    next_line_with("draining");
    assert!(Command::new("kill").args(["-INT", &pid]).status().expect("kill").success());
    let status = child.wait().expect("wait");
    let reply = stream.join().expect("stream thread");
    let log = reader.join().expect("stderr reader").join("\n");
    assert!(status.success(), "exit {status:?}\n{log}");
    assert!(log.contains("a second signal"), "{log}");
    // Cut short: an error event, then [DONE].
    assert!(
        reply.contains("\"error\"") && reply.contains("[DONE]"),
        "{}",
        &reply[reply.len().saturating_sub(600)..]
    );
}

#[test]
fn serve_refuses_bad_flags_and_a_model_that_does_not_load() {
    let out = edgevl().args(["serve", "-m", "x.gguf", "--parallel", "0"]).output().expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--parallel"));
    let out = edgevl().args(["serve", "--port", "0", "-m", "/nonexistent/model.gguf"]).output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("cannot load the model") && err.contains("nonexistent") && !err.contains("panicked"),
        "{err}"
    );
}
