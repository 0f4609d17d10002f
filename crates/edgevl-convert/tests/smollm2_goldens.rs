//! Byte identity with llama.cpp: SmolLM2-135M-Instruct's Hugging Face directory converted by
//! `edgevl convert` for every scheme llama.cpp also writes, compared tensor by tensor (type, dims,
//! sha256 of the bytes) and key by key with the goldens `scripts/gen_convert_goldens.sh` made from
//! `convert_hf_to_gguf.py` (f32, f16, bf16) and `llama-quantize` (q8_0, q4_0, q4_1, Q4_K_M).

use std::path::Path;

use edgevl_convert::{convert, ConvertOptions, LlmType, PlanOptions, Scheme, Silent};
use edgevl_gguf::{Array, GgufFile, Value};
use serde_json::{json, Value as Json};
use sha2::{Digest, Sha256};

fn hex(b: &[u8]) -> String {
    Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

fn enc_str(s: &str) -> Vec<u8> {
    let mut v = (s.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(s.as_bytes());
    v
}

/// A metadata value as scripts/convert_goldens.py writes it.
fn golden_value(v: &Value) -> Json {
    let (ty, value) = match v {
        Value::U8(x) => ("u8", json!(x)),
        Value::I8(x) => ("i8", json!(x)),
        Value::U16(x) => ("u16", json!(x)),
        Value::I16(x) => ("i16", json!(x)),
        Value::U32(x) => ("u32", json!(x)),
        Value::I32(x) => ("i32", json!(x)),
        Value::U64(x) => ("u64", json!(x)),
        Value::I64(x) => ("i64", json!(x)),
        Value::F32(x) => ("f32", json!(x.to_bits())),
        Value::F64(x) => ("f64", json!(x.to_bits())),
        Value::Bool(x) => ("bool", json!(x)),
        Value::Str(s) if s.len() <= 256 => ("str", json!(s)),
        Value::Str(s) => ("str", json!({"len": s.len(), "sha256": hex(&enc_str(s))})),
        Value::Array(a) => {
            let (ty, n, bytes): (&str, usize, Vec<u8>) = match a {
                Array::Str(v) => ("array<str>", v.len(), v.iter().flat_map(|s| enc_str(s)).collect()),
                Array::I32(v) => ("array<i32>", v.len(), v.iter().flat_map(|x| x.to_le_bytes()).collect()),
                Array::U32(v) => ("array<u32>", v.len(), v.iter().flat_map(|x| x.to_le_bytes()).collect()),
                Array::F32(v) => ("array<f32>", v.len(), v.iter().flat_map(|x| x.to_le_bytes()).collect()),
                other => panic!("array type {} not in the goldens", other.type_name()),
            };
            return json!({"type": ty, "value": {"len": n, "sha256": hex(&bytes)}});
        }
    };
    json!({"type": ty, "value": value})
}

fn check(scheme: Scheme, golden: &str) {
    let src = edgevl_testdata::smollm2_hf_dir();
    let dir = std::env::temp_dir().join(format!("edgevl-goldens-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(format!("{golden}.gguf"));
    let opts = ConvertOptions {
        plan: PlanOptions { scheme, llm_type: LlmType::Q4_0, pure: false },
        threads: 2,
        cancel: None,
    };
    convert(&src, &out, &opts, &mut Silent).unwrap();
    let want: Json =
        serde_json::from_slice(&std::fs::read(edgevl_testdata::fixture(&format!("convert/smollm2-{golden}.json"))).unwrap())
            .unwrap();
    let f = GgufFile::open(&out).unwrap();
    let keys: Vec<&str> = f.metadata().iter().map(|(k, _)| k).collect();
    let want_keys: Vec<&str> = want["key_order"].as_array().unwrap().iter().map(|k| k.as_str().unwrap()).collect();
    assert_eq!(keys, want_keys, "{golden}: metadata keys and their order");
    for (k, v) in f.metadata().iter() {
        assert_eq!(golden_value(v), want["metadata"][k], "{golden}: metadata '{k}'");
    }
    let names: Vec<&str> = f.tensors().iter().map(|t| t.name.as_str()).collect();
    let wt = want["tensors"].as_object().unwrap();
    assert_eq!(names.len(), wt.len(), "{golden}: tensor count");
    if matches!(scheme, Scheme::F32 | Scheme::F16 | Scheme::BF16) {
        let order: Vec<&str> = want["tensor_order"].as_array().unwrap().iter().map(|k| k.as_str().unwrap()).collect();
        assert_eq!(names, order, "{golden}: tensor order (llama-quantize reorders, the converter does not)");
    }
    for t in f.tensors() {
        let w = &wt[&t.name];
        assert_eq!(t.ggml_type.name(), w["type"], "{golden}: type of {}", t.name);
        assert_eq!(json!(t.dims), w["dims"], "{golden}: dims of {}", t.name);
        assert_eq!(hex(f.tensor_data(t)), w["sha256"], "{golden}: bytes of {} ({})", t.name, t.ggml_type);
    }
    drop(f);
    std::fs::remove_file(&out).unwrap();
    let _ = std::fs::remove_dir(Path::new(&dir));
}

#[test]
fn f32_f16_bf16_equal_convert_hf_to_gguf() {
    check(Scheme::F32, "f32");
    check(Scheme::F16, "f16");
    check(Scheme::BF16, "bf16");
}

#[test]
fn q8_0_and_q4_0_equal_llama_quantize() {
    check(Scheme::Q8_0, "q8_0");
    check(Scheme::Q4_0, "q4_0");
}

#[test]
fn q4_1_and_q4_k_m_equal_llama_quantize() {
    check(Scheme::Q4_1, "q4_1");
    check(Scheme::Q4K, "q4_k");
}
