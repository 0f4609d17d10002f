//! Test support: tiny checkpoints written by formula, and the comparison with the goldens of
//! scripts/convert_goldens.py (tests/fixtures/convert/).
#![allow(dead_code)] // each test file uses a part

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use edgevl_gguf::{Array, GgufFile, Value};
use serde_json::{json, Value as Json};
use sha2::{Digest, Sha256};

/// (name, dtype, shape, bytes) of one tensor.
pub type T = (String, &'static str, Vec<u64>, Vec<u8>);

/// BF16 bits of element i: ((((i * 2654435761) mod 2^32) ^ seed) >> 9) & 0x807f | 0x3c00 (the formula
/// of scripts/gen_qwen2_convert_goldens.py).
pub fn bf16(shape: &[u64], seed: u32) -> Vec<u8> {
    let n: u64 = shape.iter().product();
    (0..n as u32)
        .flat_map(|i| ((((i.wrapping_mul(2654435761) ^ seed) >> 9) & 0x807f) as u16 | 0x3c00).to_le_bytes())
        .collect()
}

/// Writes a safetensors file; `header_fix` may edit the header JSON text before it is written.
pub fn write_st(path: &Path, tensors: &[T], header_fix: impl Fn(String) -> String) {
    let mut header = String::from("{\"__metadata__\":{\"format\":\"pt\"}");
    let mut off = 0usize;
    for (name, dtype, shape, bytes) in tensors {
        header += &format!(
            ",\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":{shape:?},\"data_offsets\":[{off},{}]}}",
            off + bytes.len()
        );
        off += bytes.len();
    }
    header.push('}');
    let header = header_fix(header);
    let mut f = fs::File::create(path).unwrap();
    f.write_all(&(header.len() as u64).to_le_bytes()).unwrap();
    f.write_all(header.as_bytes()).unwrap();
    for (_, _, _, b) in tensors {
        f.write_all(b).unwrap();
    }
}

/// Copies SmolLM2's tokenizer files into `dir`.
pub fn smollm2_tokenizer(dir: &Path) {
    let hf = edgevl_testdata::smollm2_hf_dir();
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        fs::copy(hf.join(f), dir.join(f)).unwrap();
    }
}

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

/// Compares the GGUF at `out` with golden `tests/fixtures/convert/{golden}.json`: every metadata key
/// (order, type, value), every tensor (type, dims, bytes), and the tensor order when `order` is set.
pub fn check_golden(out: &Path, golden: &str, order: bool) {
    let want: Json = serde_json::from_slice(
        &fs::read(edgevl_testdata::fixture(&format!("convert/{golden}.json"))).unwrap(),
    )
    .unwrap();
    let f = GgufFile::open(out).unwrap();
    let keys: Vec<&str> = f.metadata().iter().map(|(k, _)| k).collect();
    let want_keys: Vec<&str> =
        want["key_order"].as_array().unwrap().iter().map(|k| k.as_str().unwrap()).collect();
    assert_eq!(keys, want_keys, "{golden}: metadata keys and their order");
    for (k, v) in f.metadata().iter() {
        assert_eq!(golden_value(v), want["metadata"][k], "{golden}: metadata '{k}'");
    }
    let names: Vec<&str> = f.tensors().iter().map(|t| t.name.as_str()).collect();
    let wt = want["tensors"].as_object().unwrap();
    assert_eq!(names.len(), wt.len(), "{golden}: tensor count");
    if order {
        let o: Vec<&str> =
            want["tensor_order"].as_array().unwrap().iter().map(|k| k.as_str().unwrap()).collect();
        assert_eq!(names, o, "{golden}: tensor order");
    }
    for t in f.tensors() {
        let w = &wt[&t.name];
        assert_eq!(t.ggml_type.name(), w["type"], "{golden}: type of {}", t.name);
        assert_eq!(json!(t.dims), w["dims"], "{golden}: dims of {}", t.name);
        assert_eq!(hex(f.tensor_data(t)), w["sha256"], "{golden}: bytes of {} ({})", t.name, t.ggml_type);
    }
}

/// A sink that fails after `left` bytes, like a full disk.
pub struct FailingWriter {
    /// Bytes it still takes.
    pub left: usize,
}

impl Write for FailingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() > self.left {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "no space left on device (test)"));
        }
        self.left -= buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
