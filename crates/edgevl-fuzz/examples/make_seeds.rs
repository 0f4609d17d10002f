//! Writes the seed inputs of every fuzz target into `fuzz/corpus/TARGET/seed-*`: tiny LLM and
//! mmproj files of every architecture and vision family (edgevl-gen), the fixture images with
//! selectors, texts of the tokenizer fixtures, the conversations of the chat-template fixtures,
//! and server request bodies. `scripts/fuzz.sh` grows the corpora from them and minimises them.
//!
//! `cargo run -p edgevl-fuzz --example make_seeds`

use std::path::{Path, PathBuf};

use edgevl_arch::family::VisionFamily;
use edgevl_arch::llm::{ARCH_LLAMA, ARCH_QWEN2};
use edgevl_gen::llm::{build_llama, LlamaOptions, LlamaShape};
use edgevl_gen::vision::{build_mmproj, VisionDType, VisionShape};
use edgevl_gguf::Value;
use edgevl_kernels::DType;

const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = edgevl_testdata::repo_root().join("fuzz/corpus").join(target);
    std::fs::create_dir_all(&dir).expect("corpus dir");
    std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("write seed");
}

fn llm_seeds() {
    let base = LlamaShape {
        name: "fuzz",
        arch: ARCH_LLAMA,
        family_tokens: None,
        n_embd: 32,
        n_layer: 1,
        n_head: 2,
        n_head_kv: 1,
        n_ff: 32,
        n_vocab: 400,
        n_ctx: 64,
        rope_base: 10_000.0,
        tied_output: true,
    };
    let cases = [
        ("llama-q8", base, DType::Q8_0, false),
        ("qwen2-f32-untied", LlamaShape { arch: ARCH_QWEN2, tied_output: false, ..base }, DType::F32, false),
        ("llama-q4_0-lfm2-tokens", base, DType::Q4_0, true),
        (
            "qwen2-internvl-tokens",
            LlamaShape { arch: ARCH_QWEN2, family_tokens: Some(VisionFamily::InternVl), ..base },
            DType::F16,
            false,
        ),
        (
            "llama-idefics3-tokens",
            LlamaShape { family_tokens: Some(VisionFamily::Idefics3), ..base },
            DType::Q8_0,
            false,
        ),
    ];
    for (name, shape, dtype, image_tokens) in cases {
        let mut w = build_llama(&shape, dtype, 7, LlamaOptions { image_tokens }, |_, _| {}).expect("llm");
        w.add_kv(edgevl_arch::tokenizer::CHAT_TEMPLATE, Value::Str(CHATML.into()));
        let bytes = w.to_bytes().expect("bytes");
        write("gguf_llm", name, &bytes);
        write("gguf_parse", name, &bytes);
    }
}

fn mmproj_seeds() {
    let base = VisionShape {
        name: "fuzz",
        family: VisionFamily::EdgeVl,
        image_size: 28,
        patch_size: 14,
        n_embd: 32,
        n_ff: 32,
        n_layer: 1,
        n_head: 2,
        projection_dim: 32,
        scale_factor: 2,
        eps: 1e-6,
        post_norm: true,
        mean_std: ([0.5; 3], [0.5; 3]),
    };
    let cases = [
        ("edgevl-f32", base, VisionDType::F32),
        ("edgevl-q8", VisionShape { post_norm: false, ..base }, VisionDType::Q8_0),
        (
            "internvl-f16",
            VisionShape { family: VisionFamily::InternVl, post_norm: false, ..base },
            VisionDType::F16,
        ),
        (
            "idefics3-f32",
            VisionShape { family: VisionFamily::Idefics3, image_size: 32, patch_size: 8, ..base },
            VisionDType::F32,
        ),
    ];
    for (name, shape, dtype) in cases {
        let bytes = build_mmproj(&shape, dtype, 7).expect("mmproj").to_bytes().expect("bytes");
        write("gguf_mmproj", name, &bytes);
        write("gguf_parse", name, &bytes);
    }
}

fn image_seeds() {
    let dir = edgevl_testdata::fixture("vision/modes");
    let mut paths: Vec<PathBuf> =
        std::fs::read_dir(&dir).expect("modes").map(|e| e.expect("entry").path()).collect();
    paths.push(edgevl_testdata::fixture("vision/exif/orient6.jpg"));
    paths.sort();
    for (i, p) in paths.iter().filter(|p| !p.to_string_lossy().ends_with("_rgb.png")).enumerate() {
        let bytes = std::fs::read(p).expect("image");
        let sel = (i * 7 % 60) as u8;
        let stem = p.file_name().and_then(|n| n.to_str()).unwrap_or("image");
        write("image_decode", stem, &[&[sel][..], &bytes].concat());
    }
}

fn tiling_seeds() {
    // strategy, width, height (each a mode byte then u16/u32), alpha, budget, tile size, ...
    let le = |mut v: Vec<u8>, x: u16| {
        v.push(1);
        v.extend(x.to_le_bytes());
        v
    };
    for (s, w, h, tile) in
        [(0u8, 1000u16, 800u16, 384u16), (1, 336, 672, 336), (2, 3000, 100, 448), (3, 2048, 1536, 512)]
    {
        let mut v = le(le(vec![s], w), h);
        v.extend(1100u16.to_le_bytes());
        v.push(0);
        v = le(v, tile);
        v.extend(196u32.to_le_bytes());
        v = le(v, 1);
        v.extend([0, 0]);
        write("tiling_plan", &format!("strategy{s}"), &v);
    }
}

fn tokenizer_seeds() {
    let mut texts: Vec<String> = Vec::new();
    for name in ["tiny-qwen2.json", "tiny-llama-spm.json"] {
        let path = edgevl_testdata::fixture(&format!("tokenizer/{name}"));
        let cases: Vec<serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json");
        texts.extend(
            cases.iter().filter_map(|c| c["text"].as_str()).filter(|t| t.len() < 200).map(str::to_owned),
        );
    }
    texts.truncate(24);
    for (i, text) in texts.iter().enumerate() {
        let sel = (i as u8 % 4) | if i % 3 == 0 { 0x30 } else { 0 };
        write("tokenizer", &format!("text{i}"), &[&[sel][..], text.as_bytes()].concat());
    }
    write("tokenizer", "special", &[0x61, b'a', 0xF0, 0, b'b', 0xF1, 3, b' ', 0xF2, 255]);
    write("tokenizer", "ids", &[0x82, 0, 1, 2, 1, 255, 255, 0x41, 0x01, 0xE2, 0x82]);
}

fn chat_seeds() {
    let path = edgevl_testdata::fixture("chat/templates.json");
    let cases: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json");
    for (i, c) in cases.iter().enumerate().step_by(2) {
        let msgs = c["messages"].as_array().cloned().unwrap_or_default();
        let text: Vec<String> = msgs
            .iter()
            .map(|m| {
                let role = m["role"].as_str().unwrap_or("user");
                let content = m["content"].as_str().unwrap_or("");
                format!("{}{content}", role.chars().next().unwrap_or('u'))
            })
            .collect();
        let sel = (i as u8) | if i % 4 == 0 { 0xC0 } else { 0x80 };
        write("chat_template", &format!("case{i}"), &[&[sel][..], text.join("\0").as_bytes()].concat());
    }
    write("chat_template", "parts", b"\x41uHello <__media__> there\0aSure<__media__>\0s");
}

fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = u32::from(c[0]) << 16
            | u32::from(*c.get(1).unwrap_or(&0)) << 8
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn server_seeds(png: &Path) {
    let img = b64(&std::fs::read(png).expect("png"));
    let chats = [
        ("text", r#"{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}],"max_tokens":8,"temperature":0,"stop":["\n"],"seed":1}"#.to_string()),
        ("parts", format!(r#"{{"messages":[{{"role":"user","content":[{{"type":"text","text":"What is this?"}},{{"type":"image_url","image_url":{{"url":"data:image/png;base64,{img}","detail":"low"}}}}]}}],"stream":true,"stream_options":{{"include_usage":true}}}}"#)),
        ("raw-b64", format!(r#"{{"messages":[{{"role":"developer","content":null}},{{"role":"user","content":[{{"type":"image_url","image_url":"{img}"}},{{"type":"image_url","image_url":{{"url":"edgevl-image://img-1","max_tiles":4}}}}]}}],"logit_bias":{{"5":-100,"7":2.5}},"top_k":3,"min_p":0.1,"top_p":0.9,"n":1,"ignore_eos":true}}"#)),
        ("refused", r#"{"messages":[{"role":"tool","content":"x"}],"tools":[],"logprobs":false,"max_completion_tokens":3}"#.to_string()),
    ];
    for (name, body) in chats {
        write("server_chat", name, body.as_bytes());
    }
    write(
        "server_upload",
        "png",
        format!(r#"{{"image":"data:image/png;base64,{img}","detail":"high"}}"#).as_bytes(),
    );
    write("server_upload", "budget", format!(r#"{{"image":"{img}","max_tiles":2}}"#).as_bytes());
}

/// Small safetensors files: every dtype, a scalar, an empty tensor, shards' metadata, and the
/// header of the tiny vision-language fixture with its data left out.
fn safetensors_seeds() {
    let file = |header: &str, data_len: usize| {
        let mut v = (header.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(header.as_bytes());
        v.resize(v.len() + data_len, 0x3c);
        v
    };
    write(
        "safetensors_header",
        "dtypes",
        &file(
            r#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"b":{"dtype":"BF16","shape":[4],"data_offsets":[24,32]},"c":{"dtype":"F16","shape":[1,2],"data_offsets":[32,36]},"d":{"dtype":"I64","shape":[],"data_offsets":[36,44]},"e":{"dtype":"U8","shape":[0],"data_offsets":[44,44]},"f":{"dtype":"BOOL","shape":[3],"data_offsets":[44,47]}}"#,
            47,
        ),
    );
    write("safetensors_header", "empty", &file("{}", 0));
    write(
        "safetensors_header",
        "vision",
        &file(
            r#"{"vision_tower.vision_model.embeddings.patch_embedding.weight":{"dtype":"F32","shape":[4,3,2,2],"data_offsets":[0,192]},"multi_modal_projector.linear_1.bias":{"dtype":"F16","shape":[8],"data_offsets":[192,208]}}"#,
            208,
        ),
    );
    let st = std::fs::read(edgevl_testdata::fixture("hf/tiny-edgevl/model.safetensors")).expect("fixture");
    let n = u64::from_le_bytes(st[..8].try_into().expect("8 bytes")) as usize;
    write("safetensors_header", "tiny-edgevl-header", &st[..8 + n]);
}

fn main() {
    safetensors_seeds();
    llm_seeds();
    mmproj_seeds();
    image_seeds();
    tiling_seeds();
    tokenizer_seeds();
    chat_seeds();
    server_seeds(&edgevl_testdata::fixture("vision/modes/rgba.png"));
    eprintln!("seeds written under fuzz/corpus/");
}
