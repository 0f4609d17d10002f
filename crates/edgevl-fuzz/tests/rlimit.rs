//! Every parser on hostile inputs crafted to ask for huge allocations, in a child process
//! limited to 2 GiB of address space (RLIMIT_AS): each must end with a clear error (or, for
//! inputs at the documented limits, succeed) instead of aborting on a failed allocation.
//!
//! Each `#[test]` here runs the ignored test `child_NAME` of this same binary in a child
//! process with the limit set in a `pre_exec` hook; the child prints `refused: ERROR` for each
//! input, and the parent checks its exit status and how many it refused.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::Arc;

use edgevl_gguf::{GgufFile, GgufWriter, Value};

/// The address-space limit of the children.
const LIMIT: u64 = 2 << 30;

/// Runs `child_{name}` under the limit and checks it refused at least `min_refused` inputs.
fn run_limited(name: &str, min_refused: usize) {
    let exe = std::env::current_exe().expect("test binary");
    let mut cmd = Command::new(exe);
    cmd.args([&format!("child_{name}"), "--exact", "--include-ignored", "--nocapture", "--test-threads=1"]);
    // SAFETY: the hook only calls setrlimit, which is async-signal-safe, between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit { rlim_cur: LIMIT, rlim_max: LIMIT };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("child runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child_{name} failed under a 2 GiB address space ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let refused = stdout.lines().chain(stderr.lines()).filter(|l| l.starts_with("refused: ")).count();
    assert!(
        refused >= min_refused,
        "child_{name} refused {refused} inputs, expected {min_refused}:\n{stdout}\n{stderr}"
    );
}

/// Logs a clean refusal (the parent counts them).
fn refused(what: &str, e: impl std::fmt::Display) {
    println!("\nrefused: {what}: {e}");
}

/// Expects an error from `r`.
fn refuse<T, E: std::fmt::Display>(what: &str, r: Result<T, E>) {
    match r {
        Ok(_) => panic!("{what}: accepted"),
        Err(e) => refused(what, e),
    }
}

/// The limit is real: the child cannot reserve 3 GiB (so the other tests can fail).
#[test]
fn limit_is_in_force() {
    run_limited("limit", 1);
}

#[test]
#[ignore = "runs in a child process under RLIMIT_AS (limit_is_in_force)"]
fn child_limit() {
    let mut v: Vec<u8> = Vec::new();
    refuse("3 GiB reservation", v.try_reserve_exact(3 << 30));
}

/// GGUF header fields read little-endian, for crafting files.
#[derive(Default)]
struct Craft(Vec<u8>);

impl Craft {
    fn header(n_tensors: u64, n_kv: u64) -> Self {
        let mut c = Craft(b"GGUF".to_vec());
        c.u32(3).u64(n_tensors).u64(n_kv);
        c
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend(v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend(v.to_le_bytes());
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64);
        self.0.extend(s.as_bytes());
        self
    }
    fn zeros(&mut self, n: usize) -> Vec<u8> {
        self.0.extend(std::iter::repeat_n(0, n));
        std::mem::take(&mut self.0)
    }
}

#[test]
fn gguf_reader_under_2gib() {
    run_limited("gguf_reader", 7);
}

#[test]
#[ignore = "runs in a child process under RLIMIT_AS (gguf_reader_under_2gib)"]
fn child_gguf_reader() {
    const STR: u32 = 8;
    const ARRAY: u32 = 9;
    let files = [
        ("n_kv 2^60", Craft::header(0, 1 << 60).zeros(64)),
        ("n_tensors 2^59", Craft::header(1 << 59, 0).zeros(64)),
        ("key of i32::MAX bytes", Craft::header(0, 1).u64(i32::MAX as u64).zeros(64)),
        ("string value of 2^31 bytes", Craft::header(0, 1).str("k").u32(STR).u64(1 << 31).zeros(64)),
        ("u8 array of 2^40", Craft::header(0, 1).str("k").u32(ARRAY).u32(0).u64(1 << 40).zeros(64)),
        ("string array of 2^40", Craft::header(0, 1).str("k").u32(ARRAY).u32(STR).u64(1 << 40).zeros(64)),
        (
            "tensor of 2^62 elements",
            Craft::header(1, 0).str("t").u32(2).u64(1 << 31).u64(1 << 31).u32(0).u64(0).zeros(64),
        ),
    ];
    for (what, bytes) in files {
        refuse(what, GgufFile::from_bytes(bytes));
    }
}

#[test]
fn safetensors_reader_under_2gib() {
    run_limited("safetensors_reader", 4);
}

#[test]
#[ignore = "runs in a child process under RLIMIT_AS (safetensors_reader_under_2gib)"]
fn child_safetensors_reader() {
    let file = |n: u64, header: &str| [&n.to_le_bytes()[..], header.as_bytes(), &[0u8; 64]].concat();
    let huge = r#"{"t":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,64]}}"#;
    let range = r#"{"t":{"dtype":"U8","shape":[1099511627776],"data_offsets":[0,1099511627776]}}"#;
    let files = [
        ("header length 2^62", file(1 << 62, "{}")),
        ("header length at the limit, past the end", file(100_000_000, "{}")),
        ("tensor of 2^64 elements", file(huge.len() as u64, huge)),
        ("range of 2^40 bytes", file(range.len() as u64, range)),
    ];
    for (what, bytes) in files {
        refuse(
            what,
            edgevl_convert::safetensors::parse_header(std::path::Path::new("x.safetensors"), &bytes),
        );
    }
}

/// A tiny LLM (edgevl-gen's shapes, 32 wide) with `overrides` applied to its metadata.
fn tiny_llm(overrides: Vec<(&str, Value)>) -> Vec<u8> {
    use edgevl_gen::llm::{build_llama, LlamaOptions, LlamaShape};
    let shape = LlamaShape {
        name: "rlimit",
        arch: edgevl_arch::llm::ARCH_LLAMA,
        family_tokens: None,
        n_embd: 32,
        n_layer: 1,
        n_head: 2,
        n_head_kv: 1,
        n_ff: 32,
        n_vocab: 300,
        n_ctx: 64,
        rope_base: 10_000.0,
        tied_output: true,
    };
    let mut w =
        build_llama(&shape, edgevl_kernels::DType::F32, 1, LlamaOptions::default(), |_, _| {}).expect("llm");
    for (k, v) in overrides {
        w.add_kv(k, v);
    }
    w.to_bytes().expect("bytes")
}

#[test]
fn llm_loader_under_2gib() {
    run_limited("llm_loader", 4);
}

#[test]
#[ignore = "runs in a child process under RLIMIT_AS (llm_loader_under_2gib)"]
fn child_llm_loader() {
    let big = Value::U32(1 << 20);
    let cases = [
        (
            "embedding_length 2^20, 2^20 blocks",
            vec![
                ("llama.embedding_length", big.clone()),
                ("llama.block_count", big.clone()),
                ("llama.attention.head_count", Value::U32(4096)),
            ],
        ),
        ("feed_forward_length 2^20", vec![("llama.feed_forward_length", big.clone())]),
        ("block_count 2^20", vec![("llama.block_count", big.clone())]),
        (
            "head_count_kv 2^20",
            vec![("llama.attention.head_count_kv", big.clone()), ("llama.attention.head_count", big)],
        ),
    ];
    for (what, overrides) in cases {
        let file = GgufFile::from_bytes(tiny_llm(overrides)).expect("parses");
        refuse(what, edgevl_model::Decoder::load(Arc::new(file), &edgevl_testdata::kernels()));
    }
    // The unmodified file loads and runs under the limit (the refusals above are not OOM).
    let d = edgevl_model::Decoder::load(
        Arc::new(GgufFile::from_bytes(tiny_llm(Vec::new())).expect("parses")),
        &edgevl_testdata::kernels(),
    )
    .expect("loads");
    assert_eq!(d.n_vocab(), 300);
}

#[test]
fn tokenizer_metadata_under_2gib() {
    run_limited("tokenizer_metadata", 2);
}

#[test]
#[ignore = "runs in a child process under RLIMIT_AS (tokenizer_metadata_under_2gib)"]
fn child_tokenizer_metadata() {
    use edgevl_gguf::Array;
    let tok = |overrides| {
        let f = GgufFile::from_bytes(tiny_llm(overrides)).expect("parses");
        edgevl_tokenizer::Tokenizer::from_gguf(f.metadata())
    };
    // 2^22 + 1 empty tokens: 33 MB in the file, each would become "[EMPTY_i]" and hash entries.
    let many = vec![String::new(); edgevl_tokenizer::MAX_VOCAB + 1];
    refuse("MAX_VOCAB + 1 tokens", tok(vec![("tokenizer.ggml.tokens", Value::Array(Array::Str(many)))]));
    // An id past the vocabulary keeps the default (llama.cpp's rule), allocating nothing by it.
    let t = tok(vec![("tokenizer.ggml.bos_token_id", Value::U32(u32::MAX))]).expect("BOS id u32::MAX loads");
    assert!(t.bos().is_none_or(|b| (b as usize) < t.n_vocab()));
    refuse(
        "token types of another length",
        tok(vec![("tokenizer.ggml.token_type", Value::Array(Array::I32(vec![1; 7])))]),
    );
}

/// A tiny mmproj of `family` (edgevl-gen) with `overrides` applied to its metadata.
fn tiny_mmproj(family: edgevl_arch::family::VisionFamily, overrides: Vec<(&str, Value)>) -> Vec<u8> {
    use edgevl_gen::vision::{build_mmproj, VisionDType, VisionShape};
    let shape = VisionShape {
        name: "rlimit",
        family,
        image_size: 28,
        patch_size: 14,
        n_embd: 32,
        n_ff: 32,
        n_layer: 1,
        n_head: 2,
        projection_dim: 32,
        scale_factor: 2,
        eps: 1e-6,
        post_norm: false,
        mean_std: ([0.5; 3], [0.5; 3]),
    };
    let mut w: GgufWriter = build_mmproj(&shape, VisionDType::F32, 1).expect("mmproj");
    for (k, v) in overrides {
        w.add_kv(k, v);
    }
    w.to_bytes().expect("bytes")
}

#[test]
fn mmproj_loader_under_2gib() {
    run_limited("mmproj_loader", 5);
}

#[test]
#[ignore = "runs in a child process under RLIMIT_AS (mmproj_loader_under_2gib)"]
fn child_mmproj_loader() {
    use edgevl_arch::family::VisionFamily;
    use edgevl_model::vision::VisionEncoder;
    let load = |family, overrides| {
        VisionEncoder::load(
            Arc::new(GgufFile::from_bytes(tiny_mmproj(family, overrides)).expect("parses")),
            &edgevl_testdata::kernels(),
        )
    };
    // This project's layout tiles at 384 px: patch 1 would be a 384x384 grid (147,456 patches a
    // tile, a 19 GB position table at width 32768).
    refuse(
        "patch size 1 at 384 px",
        load(VisionFamily::EdgeVl, vec![("clip.vision.patch_size", Value::U32(1))]),
    );
    refuse(
        "width 32768 without the tensors",
        load(
            VisionFamily::EdgeVl,
            vec![
                ("clip.vision.embedding_length", Value::U32(1 << 15)),
                ("clip.vision.attention.head_count", Value::U32(64)),
            ],
        ),
    );
    refuse(
        "MLP width 2^16",
        load(VisionFamily::EdgeVl, vec![("clip.vision.feed_forward_length", Value::U32(1 << 16))]),
    );
    refuse(
        "InternVL 4096-px tiles of 2-px patches",
        load(
            VisionFamily::InternVl,
            vec![("clip.vision.image_size", Value::U32(4096)), ("clip.vision.patch_size", Value::U32(2))],
        ),
    );
    refuse(
        "projection width 2^16",
        load(VisionFamily::Idefics3, vec![("clip.vision.projection_dim", Value::U32(1 << 16))]),
    );
    for family in [VisionFamily::EdgeVl, VisionFamily::InternVl, VisionFamily::Idefics3] {
        load(family, Vec::new()).unwrap_or_else(|e| panic!("{family:?} loads: {e}"));
    }
}

#[test]
fn chat_template_under_2gib() {
    run_limited("chat_template", 6);
}

#[test]
#[ignore = "runs in a child process under RLIMIT_AS (chat_template_under_2gib)"]
fn child_chat_template() {
    use edgevl_tokenizer::{ChatMessage, ChatTemplate};
    let msgs = [ChatMessage::new("user", "x".repeat(1 << 20))];
    for source in [
        "{% for i in range(100000) %}{% for j in range(100000) %}{{ messages[0].content }}{% endfor %}{% endfor %}",
        "{% for m in messages %}{% for i in range(100000) %}{{ m.content }}{% endfor %}{% endfor %}",
        "{{ messages[0].content | indent(100000000000) }}",
        "{{ '%100000000000s' | format(messages[0].content) }}",
        "{{ '{:>100000000000}'.format(messages[0].content) }}",
        "{{ messages[0].content * 100000000000 }}",
    ] {
        let t = ChatTemplate::new(source, "", "").expect("parses");
        refuse(source, t.render(&msgs, true));
    }
}

/// A PNG of `w x h` black pixels (compresses to a few hundred KB at 64 MP).
fn black_png(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let img = image::RgbImage::new(w, h);
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).expect("png");
    out
}

/// `bytes` with the little- or big-endian u16/u32 at `at` set to `v`.
fn patch(mut bytes: Vec<u8>, at: usize, v: &[u8]) -> Vec<u8> {
    bytes[at..at + v.len()].copy_from_slice(v);
    bytes
}

#[test]
fn image_decode_under_2gib() {
    run_limited("image_decode", 5);
}

#[test]
#[ignore = "runs in a child process under RLIMIT_AS (image_decode_under_2gib)"]
fn child_image_decode() {
    use edgevl_vision::{decode_image, LoadLimits};
    let limits = LoadLimits::default();
    let decode = |b: &[u8]| decode_image(b, "hostile".as_ref(), &limits);
    refuse(
        "PNG declaring 100000x100000",
        decode(&std::fs::read(edgevl_testdata::fixture("vision/bad/bomb.png")).expect("fixture")),
    );
    let small = |f| {
        let mut out = Vec::new();
        image::RgbImage::new(4, 4).write_to(&mut std::io::Cursor::new(&mut out), f).expect("encode");
        out
    };
    // BMP: width and height at 18 and 22 (i32 LE).
    refuse(
        "BMP declaring 65535x65535",
        decode(&patch(
            patch(small(image::ImageFormat::Bmp), 18, &65535i32.to_le_bytes()),
            22,
            &65535i32.to_le_bytes(),
        )),
    );
    // GIF: the logical screen at 6, the image descriptor's size at 13 + 8 + 4 (no colour table)... patch both screens.
    let gif = small(image::ImageFormat::Gif);
    let desc = gif.iter().position(|&b| b == 0x2C).expect("image descriptor");
    let gif = patch(patch(gif, 6, &[0xFF, 0xFF, 0xFF, 0xFF]), desc + 5, &[0xFF, 0xFF, 0xFF, 0xFF]);
    refuse("GIF declaring 65535x65535", decode(&gif));
    // JPEG: the SOF0 segment's height and width (u16 BE) after its length and precision.
    let jpg = small(image::ImageFormat::Jpeg);
    let sof = jpg.windows(2).position(|w| w == [0xFF, 0xC0]).expect("SOF0");
    refuse(
        "JPEG declaring 65500x65500",
        decode(&patch(patch(jpg, sof + 5, &65500u16.to_be_bytes()), sof + 7, &65500u16.to_be_bytes())),
    );
    // Pillow's limit, 178,956,970 pixels: 13378 x 13377 is over it, 13377 x 13377 within.
    refuse("PNG over the default (Pillow's) limit", decode(&black_png(13378, 13377)));
    // At the limit: 179 MP decode within 2 GiB.
    let image = decode(&black_png(13377, 13377)).expect("179 MP decodes");
    assert_eq!(image.size().area(), 13377 * 13377);
}

#[test]
fn server_request_under_2gib() {
    run_limited("server_request", 3);
}

#[test]
#[ignore = "runs in a child process under RLIMIT_AS (server_request_under_2gib)"]
fn child_server_request() {
    use edgevl_server::api::{parse_json, ChatRequest};
    use edgevl_server::images::{decode_counted, ImageSource};
    use edgevl_server::ImageLimits;
    // JSON nested 100,000 deep, and a 32 MiB string: refused or parsed within the body's size.
    refuse("JSON nested 100000 deep", parse_json::<ChatRequest>(&[b'['; 100_000]));
    let long = format!(
        r#"{{"messages":[{{"role":"user","content":"{}"}}],"logit_bias":{{"1":1}}}}"#,
        "x".repeat(32 << 20)
    );
    parse_json::<ChatRequest>(long.as_bytes()).expect("a 32 MiB message parses");
    // Eight images of 64 MP each (each within the per-image limit; 1.5 GiB of RGB together):
    // the request's pixel limit refuses the third before decoding it.
    let png = black_png(8192, 8192);
    let b64 = base64_encode(&png);
    let parts: Vec<String> = (0..8)
        .map(|_| format!(r#"{{"type":"image_url","image_url":{{"url":"data:image/png;base64,{b64}"}}}}"#))
        .collect();
    let body = format!(r#"{{"messages":[{{"role":"user","content":[{}]}}]}}"#, parts.join(","));
    let req: ChatRequest = parse_json(body.as_bytes()).expect("parses");
    let input = req.into_input(300, true, &ImageLimits::default()).expect("8 images are allowed");
    let mut total = 0;
    let mut decoded = Vec::new();
    let mut refusals = 0;
    for image in &input.images {
        let ImageSource::Inline(bytes) = image.source().expect("base64") else { panic!("inline") };
        match decode_counted(&bytes, &image.part, &ImageLimits::default(), &mut total) {
            Ok(img) => decoded.push(img),
            Err(e) => {
                refusals += 1;
                refused(&image.part, e);
                break;
            }
        }
    }
    assert_eq!((decoded.len(), refusals), (2, 1), "two 64 MP images fit in 128 MP");
    refuse(
        "an upload body of 10 MiB of '['",
        parse_json::<edgevl_server::api::UploadRequest>(&vec![b'['; 10 << 20]),
    );
}

/// Standard base64 with padding.
fn base64_encode(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = u32::from(c[0]) << 16
            | u32::from(*c.get(1).unwrap_or(&0)) << 8
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            out.push(if i <= c.len() { A[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
        }
    }
    out
}
