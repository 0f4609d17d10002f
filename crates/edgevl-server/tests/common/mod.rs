//! Test support: start the real server on a loopback port (port 0) and speak HTTP to it with
//! ureq (or a raw socket where a test must misbehave), plus images made on the fly.
#![allow(dead_code)]

use base64::Engine;
use edgevl_model::KvType;
use edgevl_runtime::SessionConfig;
use edgevl_server::{Server, ServerConfig};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// SmolLM2-135M-Instruct Q4_1 (scripts/fetch-smollm2.sh), 2 threads, a 1024-token context.
pub fn smollm2() -> ServerConfig {
    let mut cfg = ServerConfig::new(edgevl_testdata::smollm2_path());
    cfg.session = SessionConfig {
        n_threads: 2,
        n_ctx: Some(1024),
        chunk: 128,
        kernels: edgevl_testdata::kernel_config(),
        ..SessionConfig::default()
    };
    cfg
}

/// The tiny llama (width 64) with the tiny random SigLIP-shaped mmproj of tests/fixtures.
pub fn tiny_vlm() -> ServerConfig {
    let mut cfg = ServerConfig::new(edgevl_testdata::fixture("tiny-llama-spm/model.gguf"));
    cfg.session = SessionConfig {
        n_threads: 2,
        n_ctx: Some(4096),
        chunk: 64,
        kv_type: KvType::F32,
        mmproj: Some(edgevl_testdata::fixture("tiny-vlm/mmproj.gguf")),
        kernels: edgevl_testdata::kernel_config(),
        ..SessionConfig::default()
    };
    cfg
}

/// A running server and a client for it.
pub struct TestServer {
    pub server: Option<Server>,
    pub base: String,
    pub agent: ureq::Agent,
    pub key: Option<String>,
}

/// Starts `cfg` on 127.0.0.1, port 0, and waits until `/health` says the model is loaded.
pub fn start(mut cfg: ServerConfig) -> TestServer {
    cfg.host = "127.0.0.1".into();
    cfg.port = 0;
    let key = cfg.api_key.clone();
    let server = Server::start(cfg).expect("server starts");
    let base = format!("http://{}", server.addr());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(300)))
        .build()
        .into();
    let t = TestServer { server: Some(server), base, agent, key };
    let t0 = Instant::now();
    loop {
        let (status, _) = t.get("/health");
        if status == 200 {
            return t;
        }
        assert_eq!(status, 503, "/health while loading");
        assert!(t0.elapsed() < Duration::from_secs(120), "the model did not load");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl TestServer {
    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.as_ref().expect("running").addr()
    }

    fn auth<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.key {
            Some(k) => req.header("Authorization", &format!("Bearer {k}")),
            None => req,
        }
    }

    /// GET: status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        let mut r = self.auth(self.agent.get(&format!("{}{path}", self.base))).call().expect("GET");
        (r.status().as_u16(), r.body_mut().read_to_string().expect("body"))
    }

    /// POST raw bytes: status, Retry-After header and body.
    pub fn post_bytes(&self, path: &str, body: &[u8]) -> (u16, Option<String>, String) {
        let req = self
            .auth(self.agent.post(&format!("{}{path}", self.base)))
            .header("Content-Type", "application/json");
        let mut r = req.send(body).expect("POST");
        let retry = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
        let mut text = String::new();
        r.body_mut().as_reader().read_to_string(&mut text).expect("body");
        (r.status().as_u16(), retry, text)
    }

    /// POST JSON: status and parsed body.
    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let (status, _, text) = self.post_bytes(path, body.to_string().as_bytes());
        (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")))
    }

    /// A chat completion that must succeed.
    pub fn chat_ok(&self, body: &Value) -> Value {
        let (status, v) = self.post("/v1/chat/completions", body);
        assert_eq!(status, 200, "{v}");
        v
    }

    /// A streamed chat: the `data:` payloads in order (the last is `[DONE]`).
    pub fn chat_stream(&self, body: &Value) -> Vec<String> {
        let lines = self.chat_stream_lines(body);
        lines.iter().filter_map(|l| l.strip_prefix("data: ").map(str::to_string)).collect()
    }

    /// A streamed chat: every non-empty line of the event stream (`data:` lines and comments), in order.
    pub fn chat_stream_lines(&self, body: &Value) -> Vec<String> {
        let req = self.auth(self.agent.post(&format!("{}/v1/chat/completions", self.base)));
        let r = req.header("Content-Type", "application/json").send(body.to_string()).expect("POST");
        assert_eq!(r.status().as_u16(), 200);
        let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        let reader = BufReader::new(r.into_body().into_reader());
        reader.lines().map(|l| l.expect("line")).filter(|l| !l.is_empty()).collect()
    }

    /// The value of an unlabelled metric.
    pub fn metric(&self, name: &str) -> f64 {
        let (status, text) = self.get("/metrics");
        assert_eq!(status, 200);
        metric_in(&text, name).unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
    }

    /// Polls `cond` (every 20 ms, up to `secs`) until it holds.
    pub fn wait_until(&self, secs: u64, what: &str, mut cond: impl FnMut(&Self) -> bool) {
        let t0 = Instant::now();
        while !cond(self) {
            assert!(t0.elapsed() < Duration::from_secs(secs), "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Opens a raw connection and sends `head` (request line and headers) and `body`.
    pub fn raw(&self, head: &str, body: &[u8]) -> TcpStream {
        let mut s = TcpStream::connect(self.addr()).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(120))).expect("timeout");
        s.write_all(head.as_bytes()).expect("write head");
        let _ = s.write_all(body);
        s
    }

    /// A chat request sent on a connection of its own, whose response the caller reads (or
    /// abandons by closing the stream).
    pub fn raw_chat(&self, body: &Value) -> TcpStream {
        let body = body.to_string();
        let head = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        self.raw(&head, body.as_bytes())
    }

    /// A chat request made on a thread of its own: joins with the status and body.
    pub fn chat_in_thread(&self, body: Value) -> std::thread::JoinHandle<(u16, String)> {
        let (base, agent) = (self.base.clone(), self.agent.clone());
        std::thread::spawn(move || {
            let mut r =
                agent.post(&format!("{base}/v1/chat/completions")).send(body.to_string()).expect("POST");
            (r.status().as_u16(), r.body_mut().read_to_string().unwrap_or_default())
        })
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            let _ = s.shutdown();
        }
    }
}

/// An unlabelled metric's value in a Prometheus text exposition.
pub fn metric_in(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Reads from a raw connection until the status line and headers are in; returns them.
pub fn read_head(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Asserts an OpenAI-shaped error with `status` whose code is `code` (when given) and whose
/// message contains `needle`.
pub fn assert_error(got: (u16, Value), status: u16, code: Option<&str>, needle: &str) {
    let (s, v) = got;
    assert_eq!(s, status, "{v}");
    let e = &v["error"];
    let msg = e["message"].as_str().unwrap_or_else(|| panic!("no error.message in {v}"));
    assert!(e["type"].is_string(), "{v}");
    if let Some(c) = code {
        assert_eq!(e["code"].as_str(), Some(c), "{v}");
    }
    assert!(msg.contains(needle), "{msg:?} does not mention {needle:?}");
}

/// A PNG of `w` x `h` whose pixels depend on `seed`.
pub fn png(w: u32, h: u32, seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x as u8).wrapping_mul(seed), (y as u8).wrapping_add(seed), seed ^ ((x + y) as u8)])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).expect("encode PNG");
    out.into_inner()
}

/// `bytes` as a `data:image/png;base64,` URI.
pub fn data_uri(bytes: &[u8]) -> String {
    format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// A one-message chat with image parts (url, detail) before the text.
pub fn image_chat(images: &[(&str, Option<&str>)], text: &str, max_tokens: u32) -> Value {
    let mut parts: Vec<Value> = images
        .iter()
        .map(|(url, detail)| {
            let mut iu = serde_json::json!({"url": url});
            if let Some(d) = detail {
                iu["detail"] = Value::from(*d);
            }
            serde_json::json!({"type": "image_url", "image_url": iu})
        })
        .collect();
    parts.push(serde_json::json!({"type": "text", "text": text}));
    serde_json::json!({"messages": [{"role": "user", "content": parts}], "max_tokens": max_tokens, "temperature": 0})
}
