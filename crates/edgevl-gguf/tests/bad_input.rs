//! Bad input gives a clear error naming the problem: never a panic, never a huge allocation.

mod common;

use std::io::Read;

use common::alloc::{assert_no_allocation_over, Tracking};
use common::craft::{vt, Craft};
use common::refuse;
use edgevl_gguf::{Array, GgmlType, GgufError, GgufFile, GgufWriter, Value};

#[global_allocator]
static ALLOC: Tracking = Tracking;

/// No test here needs more than a few MB at once (the SmolLM2 header prefix is 2 MB).
const ALLOC_LIMIT: usize = 16 << 20;

/// A small writer-made file with a few kvs (including arrays) and tensors.
fn small_file() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.add_kv("general.architecture", Value::Str("llama".into()))
        .add_kv("llama.block_count", Value::U32(2))
        .add_kv(
            "tokenizer.ggml.tokens",
            Value::Array(Array::Str((0..40).map(|i| format!("tok{i}")).collect())),
        )
        .add_kv("tokenizer.ggml.scores", Value::Array(Array::F32(vec![0.5; 40])));
    let tensors: [(&str, GgmlType, &[u64]); 3] = [
        ("token_embd.weight", GgmlType::Q8_0, &[64, 4]),
        ("output_norm.weight", GgmlType::F32, &[64]),
        ("blk.0.ffn_down.weight", GgmlType::Q4_1, &[32, 8]),
    ];
    for (name, t, dims) in tensors {
        let n = edgevl_gguf::tensor_n_bytes(name, t, dims).expect("size");
        w.add_tensor(name, t, dims, vec![0x11; n as usize]).expect("tensor");
    }
    w.to_bytes().expect("write")
}

/// Every truncation error names what was cut short.
fn assert_truncation_error(e: &GgufError, cut: usize) {
    let msg = e.to_string();
    let named = ["truncated file", "cannot fit", "past the end of the data section"];
    assert!(named.iter().any(|n| msg.contains(n)), "cut at {cut}: unexpected error {msg:?}");
}

#[test]
fn truncated_at_each_64th_of_a_small_file() {
    let full = small_file();
    assert!(GgufFile::from_bytes(full.clone()).is_ok());
    for k in 0..64 {
        let cut = full.len() * k / 64;
        let e = refuse(full[..cut].to_vec(), &[]);
        assert_truncation_error(&e, cut);
    }
    // Cutting one byte anywhere in the last tensor's data is caught too.
    let e = refuse(full[..full.len() - 1].to_vec(), &["blk.0.ffn_down.weight"]);
    assert!(matches!(e, GgufError::TensorOutOfBounds { .. }), "{e}");
    assert_no_allocation_over(ALLOC_LIMIT);
}

#[test]
fn truncated_smollm2_header_at_64_points() {
    let mut prefix = Vec::new();
    std::fs::File::open(common::smollm2_path())
        .expect("open SmolLM2")
        .take(2 << 20)
        .read_to_end(&mut prefix)
        .expect("read 2 MB");
    // Its header and metadata end just before the data section at 1785664.
    let header_end = 1_785_664;
    for k in 0..64 {
        let cut = header_end * k / 64;
        let e = refuse(prefix[..cut].to_vec(), &[]);
        assert_truncation_error(&e, cut);
    }
    // With the whole header present, the first tensor is reported past the end of the data.
    // The tracker sees the 2 MB buffer, so it would see a huge allocation too.
    assert!(common::alloc::largest() >= 2 << 20);
    let e = refuse(prefix, &["token_embd.weight", "past the end"]);
    assert!(matches!(e, GgufError::TensorOutOfBounds { .. }), "{e}");
    assert_no_allocation_over(ALLOC_LIMIT);
}

#[test]
fn wrong_magic() {
    let mut bytes = small_file();
    bytes[..4].copy_from_slice(b"GGML");
    refuse(bytes, &["not a GGUF file", "GGML"]);
    refuse(b"\x7fELF\x02\x01\x01\x00".to_vec(), &["not a GGUF file"]);
}

#[test]
fn byte_swapped_files_are_refused_clearly() {
    let mut c = Craft(b"FUGG".to_vec());
    c.u32(3).u64(0).u64(0);
    refuse(c.bytes(), &["big-endian", "only little-endian"]);
    let mut c = Craft(b"GGUF".to_vec());
    c.raw(&3u32.to_be_bytes()).raw(&0u64.to_be_bytes()).raw(&0u64.to_be_bytes());
    refuse(c.bytes(), &["big-endian", "0x03000000"]);
}

#[test]
fn unsupported_version() {
    for v in [0, 1, 4, 0xFFFF] {
        let e = refuse(Craft::header(v, 0, 0).bytes(), &["unsupported GGUF version"]);
        assert!(matches!(e, GgufError::UnsupportedVersion(x) if x == v));
    }
    // Version 2 has the same layout as 3 and is accepted.
    let f = GgufFile::from_bytes(Craft::header(2, 0, 0).bytes()).expect("v2");
    assert_eq!(f.version(), 2);
}

#[test]
fn tensor_offset_past_end() {
    let mut c = Craft::header(3, 1, 0);
    c.tensor("w", &[4], GgmlType::F32.id(), 64).pad(32).zeros(16);
    let e = refuse(c.bytes(), &["tensor 'w'", "data offset 64", "past the end"]);
    assert!(matches!(e, GgufError::TensorOutOfBounds { .. }));
    // Offset u64::MAX - 31 (aligned): offset + size wraps around in naive code.
    let mut c = Craft::header(3, 1, 0);
    c.tensor("w", &[16], GgmlType::F32.id(), u64::MAX - 31).pad(32).zeros(64);
    let e = refuse(c.bytes(), &["tensor 'w'", "past the end"]);
    assert!(matches!(e, GgufError::TensorOutOfBounds { .. }));
}

#[test]
fn misaligned_tensor_offset() {
    let mut c = Craft::header(3, 1, 0);
    c.tensor("w", &[4], GgmlType::F32.id(), 4).pad(32).zeros(64);
    let e = refuse(c.bytes(), &["tensor 'w'", "not a multiple of the alignment 32"]);
    assert!(matches!(e, GgufError::Misaligned { offset: 4, .. }));
}

#[test]
fn tensor_count_2_pow_60() {
    let e = refuse(Craft::header(3, 1 << 60, 0).bytes(), &["tensor count", "1152921504606846976"]);
    assert!(matches!(e, GgufError::CountTooLarge { .. }));
    assert_no_allocation_over(ALLOC_LIMIT);
}

#[test]
fn kv_count_2_pow_60() {
    let e =
        refuse(Craft::header(3, 0, 1 << 60).bytes(), &["metadata key/value count", "1152921504606846976"]);
    assert!(matches!(e, GgufError::CountTooLarge { .. }));
    assert_no_allocation_over(ALLOC_LIMIT);
}

#[test]
fn unknown_type_id() {
    // 4 and 5 were Q4_2/Q4_3 (removed), 43 is past the end of ggml's table; the types ggml has and
    // edgevl does not read are named (the message gave only the number).
    for (id, name) in
        [(4, None), (5, None), (43, None), (u32::MAX, None), (20, Some("IQ4_NL")), (39, Some("MXFP4"))]
    {
        let mut c = Craft::header(3, 1, 0);
        c.tensor("blk.0.attn_q.weight", &[32], id, 0).pad(32).zeros(64);
        let e = refuse(c.bytes(), &["blk.0.attn_q.weight", &format!("type id {id}")]);
        assert!(matches!(e, GgufError::UnknownType { id: x, .. } if x == id));
        assert_eq!(e.to_string().contains(&format!("({})", name.unwrap_or("?"))), name.is_some(), "{e}");
    }
}

#[test]
fn unknown_value_type_and_invalid_strings_and_bools() {
    let mut c = Craft::header(3, 0, 1);
    c.str("general.name").u32(13).u32(0);
    refuse(c.bytes(), &["general.name", "unknown value type id 13"]);
    let mut c = Craft::header(3, 0, 1);
    c.str("general.name").u32(vt::STR).u64(2).raw(&[0xC3, 0x28]);
    refuse(c.bytes(), &["general.name", "not valid UTF-8"]);
    let mut c = Craft::header(3, 0, 1);
    c.u64(2).raw(&[0xFF, 0xFE]).u32(vt::U8).u8(0);
    refuse(c.bytes(), &["key of metadata entry #0", "not valid UTF-8"]);
    let mut c = Craft::header(3, 0, 1);
    c.str("flag").u32(7).u8(2);
    refuse(c.bytes(), &["flag", "invalid byte 0x02"]);
}

#[test]
fn missing_tensor_and_wrong_shape_via_require_tensor() {
    let f = GgufFile::from_bytes(small_file()).expect("valid");
    let e = f.require_tensor("output.weight", &[64, 4]).expect_err("missing");
    assert!(matches!(&e, GgufError::MissingTensor(n) if n == "output.weight"));
    assert_eq!(e.to_string(), "missing tensor 'output.weight'");
    let e = f.require_tensor("token_embd.weight", &[4, 64]).expect_err("shape");
    assert!(matches!(e, GgufError::ShapeMismatch { .. }));
    assert_eq!(
        e.to_string(),
        "tensor 'token_embd.weight' has shape [64, 4], expected [4, 64] (ggml order, row length first)"
    );
    assert!(f.require_tensor("token_embd.weight", &[64, 4]).is_ok());
}

#[test]
fn missing_key_and_wrong_type() {
    let f = GgufFile::from_bytes(small_file()).expect("valid");
    let md = f.metadata();
    let e = md.get_u32("llama.context_length").expect_err("missing");
    assert_eq!(e.to_string(), "missing metadata key 'llama.context_length'");
    let e = md.get_str("llama.block_count").expect_err("wrong type");
    assert_eq!(e.to_string(), "metadata key 'llama.block_count' has type u32, expected str");
    let e = md.get_f32_array("tokenizer.ggml.tokens").expect_err("wrong type");
    assert!(e.to_string().contains("array<str>, expected array<f32>"), "{e}");
    assert_eq!(f.architecture().ok(), Some("llama"));
}

#[test]
fn open_reports_the_path() {
    let e = GgufFile::open("/nonexistent/dir/model.gguf").expect_err("missing file");
    assert!(matches!(e, GgufError::Io { .. }));
    assert!(e.to_string().contains("/nonexistent/dir/model.gguf"), "{e}");
    let dir = std::env::temp_dir().join(format!("edgevl-gguf-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let empty = dir.join("empty.gguf");
    std::fs::write(&empty, b"").expect("write");
    let e = GgufFile::open(&empty).expect_err("empty file");
    assert!(e.to_string().contains("truncated file: header magic"), "{e}");
    std::fs::remove_dir_all(&dir).expect("clean up");
}

/// Opens `head` followed by zeros up to `len` bytes: a sparse file (no disk is written) whose
/// declared counts fit the file's size.
fn open_sparse(name: &str, head: &[u8], len: u64) -> Result<GgufFile, GgufError> {
    // A folder per file: tests run in parallel threads of one process.
    let dir = std::env::temp_dir().join(format!("edgevl-gguf-sparse-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join(name);
    std::fs::write(&path, head).expect("write");
    std::fs::OpenOptions::new().write(true).open(&path).expect("open").set_len(len).expect("grow");
    let out = GgufFile::open(&path);
    std::fs::remove_dir_all(&dir).expect("clean up");
    out
}

#[test]
fn counts_that_fit_a_big_file_but_not_memory_are_refused_before_allocating() {
    // 2^26 tensor infos fit in 1.5 GiB of file (24 bytes each at least), but in memory they
    // would take about ten times that: refused as the count is read.
    let n_tensors = 1u64 << 26;
    let e = open_sparse("tensors.gguf", &Craft::header(3, n_tensors, 0).bytes(), n_tensors * 24 + 4096)
        .expect_err("refused");
    assert!(matches!(e, GgufError::HeaderTooLarge { .. }), "{e}");
    assert!(e.to_string().contains("tensor count"), "{e}");
    // An array of 2^25 strings fits in 256 MiB (8 bytes each, empty), and takes 1.75 GiB as
    // `String`s with their heap blocks.
    let n = 1u64 << 25;
    let mut head = Craft::header(3, 0, 1);
    head.str("tokenizer.ggml.tokens").u32(vt::ARRAY).u32(vt::STR).u64(n);
    let e = open_sparse("strings.gguf", &head.bytes(), n * 8 + 4096).expect_err("refused");
    assert!(matches!(e, GgufError::HeaderTooLarge { .. }), "{e}");
    assert!(e.to_string().contains("tokenizer.ggml.tokens"), "{e}");
    assert_no_allocation_over(ALLOC_LIMIT);
}

#[test]
fn tensors_sharing_bytes_are_refused() {
    let mut c = Craft::header(3, 2, 0);
    c.tensor("a", &[8], GgmlType::F32.id(), 0).tensor("b", &[8], GgmlType::F32.id(), 0).pad(32).zeros(64);
    let e = refuse(c.bytes(), &["tensors 'a' and 'b' overlap"]);
    assert!(matches!(e, GgufError::OverlappingTensors { offset: 0, .. }));
    // Half over the other.
    let mut c = Craft::header(3, 2, 0);
    c.tensor("a", &[16], GgmlType::F32.id(), 0).tensor("b", &[16], GgmlType::F32.id(), 32).pad(32).zeros(128);
    refuse(c.bytes(), &["tensors 'a' and 'b' overlap", "offset 32"]);
    // Back to back, and in either order in the table: accepted.
    let mut c = Craft::header(3, 2, 0);
    c.tensor("b", &[8], GgmlType::F32.id(), 32).tensor("a", &[8], GgmlType::F32.id(), 0).pad(32).zeros(64);
    GgufFile::from_bytes(c.bytes()).expect("adjacent tensors");
}
