//! Regression corpus: one crafted file per bug class of llama.cpp's published GGUF
//! vulnerabilities. Each must be refused with an error naming the problem, without a panic and
//! without a large allocation (a tracking allocator checks the largest request).

mod common;

use common::alloc::{assert_no_allocation_over, Tracking};
use common::craft::{vt, Craft};
use common::refuse;
use edgevl_gguf::{GgmlType, GgufError, GgufFile};

#[global_allocator]
static ALLOC: Tracking = Tracking;

/// The crafted files are a few hundred bytes; nothing should allocate more than 1 MiB.
const ALLOC_LIMIT: usize = 1 << 20;

/// Refuses `bytes`, prints the message (for the log) and checks the allocation bound.
fn refuse_small(bytes: Vec<u8>, needles: &[&str]) -> GgufError {
    let e = refuse(bytes, needles);
    eprintln!("refused: {e}");
    assert_no_allocation_over(ALLOC_LIMIT);
    e
}

/// n_kv so large that `n_kv * sizeof(entry)` wraps.
#[test]
fn cve_2024_23605_n_kv_overflow() {
    for n_kv in [u64::MAX, 1 << 63, (u64::MAX / 13) + 1, 1 << 60] {
        let mut c = Craft::header(3, 0, n_kv);
        c.kv_u32("general.alignment", 32);
        let e = refuse_small(c.bytes(), &["metadata key/value count", &n_kv.to_string()]);
        assert!(matches!(e, GgufError::CountTooLarge { .. }));
    }
}

/// n_tensors so large that `n_tensors * sizeof(tensor_info)` wraps.
#[test]
fn cve_2024_21836_n_tensors_overflow() {
    for n_tensors in [u64::MAX, u64::MAX / 24 + 1, 1 << 61, 1 << 60] {
        let mut c = Craft::header(3, n_tensors, 0);
        c.tensor("w", &[32], 0, 0).pad(32).zeros(128);
        let e = refuse_small(c.bytes(), &["tensor count", &n_tensors.to_string()]);
        assert!(matches!(e, GgufError::CountTooLarge { .. }));
    }
}

/// Huge string lengths (keys, values, tensor names), including `u64::MAX` where `len + 1` wraps.
#[test]
fn cve_2024_23496_string_length_huge() {
    // Declared lengths above i32::MAX are refused outright, before reading or allocating.
    for len in [1u64 << 40, u64::MAX] {
        let mut c = Craft::header(3, 0, 1);
        c.u64(len).raw(b"general.name");
        let e = refuse_small(c.bytes(), &["key of metadata entry #0", &len.to_string()]);
        assert!(matches!(e, GgufError::StringTooLong { .. }));
        let mut c = Craft::header(3, 0, 1);
        c.str("general.name").u32(vt::STR).u64(len).raw(b"abc");
        let e = refuse_small(c.bytes(), &["general.name", "over the limit"]);
        assert!(matches!(e, GgufError::StringTooLong { .. }));
    }
    // A plausible length that still exceeds the file is a truncation naming the key.
    let mut c = Craft::header(3, 0, 1);
    c.str("general.name").u32(vt::STR).u64(1 << 30).raw(b"abc");
    let e = refuse_small(c.bytes(), &["value of metadata key 'general.name'", "1073741824"]);
    assert!(matches!(e, GgufError::Truncated { .. }));
    // Tensor names too.
    let mut c = Craft::header(3, 1, 0);
    c.u64(1 << 33).raw(b"w").zeros(32);
    refuse_small(c.bytes(), &["name of tensor info #0", "over the limit"]);
}

/// Huge array lengths, of fixed-size elements (count * size wraps) and of strings.
#[test]
fn cve_2024_21825_array_length_huge() {
    for (elem, count) in [
        (vt::U8, 1u64 << 40),
        (vt::U64, 1 << 61),   // count * 8 wraps to 0
        (vt::U64, u64::MAX),  // count * 8 wraps
        (vt::STR, 1 << 60),   // each string needs >= 8 bytes
        (vt::ARRAY, 1 << 60), // each inner array needs >= 12 bytes
        (vt::U32, 5),         // 20 bytes needed, 8 present
    ] {
        let mut c = Craft::header(3, 0, 1);
        c.str("tokenizer.ggml.tokens").u32(vt::ARRAY).u32(elem).u64(count).u64(0);
        let e = refuse_small(
            c.bytes(),
            &["metadata key 'tokenizer.ggml.tokens'", &count.to_string(), "cannot fit"],
        );
        assert!(matches!(e, GgufError::CountTooLarge { .. }));
    }
    // Deeply nested arrays are bounded (no unbounded recursion).
    let mut c = Craft::header(3, 0, 1);
    c.str("deep").u32(vt::ARRAY);
    for _ in 0..10_000 {
        c.u32(vt::ARRAY).u64(1);
    }
    refuse_small(c.bytes(), &["deep", "nested more than"]);
}

/// n_dims > 4 and dims whose product overflows.
#[test]
fn cve_2024_21802_n_dims_and_dim_product_overflow() {
    for n_dims in [5u32, 64, u32::MAX] {
        let mut c = Craft::header(3, 1, 0);
        c.str("blk.0.attn_k.weight").u32(n_dims).zeros(64);
        let e = refuse_small(c.bytes(), &["blk.0.attn_k.weight", &format!("{n_dims} dimensions")]);
        assert!(matches!(e, GgufError::TooManyDims { .. }));
    }
    for dims in [
        vec![1u64 << 32, 1 << 32],                // product 2^64 wraps to 0
        vec![1 << 16, 1 << 16, 1 << 16, 1 << 16], // same with 4 dims
        vec![u64::MAX],                           // larger than int64 ne
        vec![1 << 62, 2],                         // 2^63: not representable as int64
    ] {
        let mut c = Craft::header(3, 1, 0);
        c.tensor("w", &dims, GgmlType::F32.id(), 0).pad(32).zeros(64);
        let e = refuse_small(c.bytes(), &["overflow", "tensor 'w'"]);
        assert!(matches!(e, GgufError::Overflow { .. }), "{dims:?}");
    }
}

/// Tensor sizes that each fit but whose sum overflows the data-section size.
#[test]
fn cve_2025_53630_data_section_size_sum_overflow() {
    let n = 0x6000_0000_0000_0000u64; // 3 * n > u64::MAX
    let mut c = Craft::header(3, 3, 0);
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        c.tensor(name, &[n], GgmlType::I8.id(), i as u64 * n);
    }
    c.pad(32).zeros(64);
    let e = refuse_small(c.bytes(), &["overflow", "total size of the tensor data section"]);
    assert!(matches!(e, GgufError::Overflow { .. }));
}

/// The bypass of the 53630 fix: sizes whose plain sum fits but whose *padded* sum wraps.
#[test]
fn cve_2026_27940_padded_data_size_sum_overflow() {
    let n = i64::MAX as u64; // 2^63 - 1, padded to 2^63; two of them: 2^64
    let mut c = Craft::header(3, 2, 0);
    c.tensor("a", &[n], GgmlType::I8.id(), 0).tensor("b", &[n], GgmlType::I8.id(), 1 << 63).pad(32).zeros(64);
    assert!(n.checked_add(n).is_some(), "unpadded sum fits");
    let e = refuse_small(c.bytes(), &["total size of the tensor data section", "'b'"]);
    assert!(matches!(e, GgufError::Overflow { .. }));
}

/// A tensor whose logical byte size is unrepresentable (or absurd) while the file is tiny.
#[test]
fn cve_2026_33298_tensor_byte_size_overflow() {
    // Element count fits int64, byte size does not (2^62 f64 = 2^65 bytes).
    let mut c = Craft::header(3, 1, 0);
    c.tensor("w", &[1 << 62], GgmlType::F64.id(), 0).pad(32).zeros(4096);
    let e = refuse_small(c.bytes(), &["overflow", "size of tensor 'w'"]);
    assert!(matches!(e, GgufError::Overflow { .. }));
    // Representable but exabyte-sized: refused as out of bounds, never mapped onto 4 KiB.
    let mut c = Craft::header(3, 1, 0);
    c.tensor("w", &[256, 1 << 40], GgmlType::Q4_K.id(), 0).pad(32).zeros(4096);
    let e = refuse_small(c.bytes(), &["tensor 'w'", "past the end"]);
    assert!(matches!(e, GgufError::TensorOutOfBounds { .. }));
}

#[test]
fn alignment_zero_not_power_of_two_and_2_pow_31() {
    for a in [0u32, 3, 48, 1 << 31, u32::MAX] {
        let mut c = Craft::header(3, 0, 1);
        c.kv_u32("general.alignment", a);
        let e = refuse_small(c.bytes(), &["general.alignment", &a.to_string(), "power of two"]);
        assert!(matches!(e, GgufError::BadAlignment { .. }));
    }
    let mut c = Craft::header(3, 0, 1);
    c.kv_str("general.alignment", "32");
    refuse_small(c.bytes(), &["general.alignment", "has type str"]);
}

#[test]
fn duplicate_keys_and_tensor_names() {
    let mut c = Craft::header(3, 0, 2);
    c.kv_u32("llama.block_count", 1).kv_u32("llama.block_count", 2);
    let e = refuse_small(c.bytes(), &["duplicate metadata key 'llama.block_count'", "offset"]);
    assert!(matches!(e, GgufError::DuplicateKey { .. }));
    let mut c = Craft::header(3, 2, 0);
    c.tensor("w", &[8], GgmlType::F32.id(), 0).tensor("w", &[8], GgmlType::F32.id(), 32).pad(32).zeros(64);
    let e = refuse_small(c.bytes(), &["duplicate tensor name 'w'"]);
    assert!(matches!(e, GgufError::DuplicateTensor { .. }));
}

/// tokenizer.ggml.tokens as an array of u32: a valid file, but the typed getter refuses it.
#[test]
fn tokenizer_array_of_wrong_element_type() {
    let mut c = Craft::header(3, 0, 1);
    c.str("tokenizer.ggml.tokens").u32(vt::ARRAY).u32(vt::U32).u64(3);
    for id in [1u32, 2, 3] {
        c.u32(id);
    }
    let f = GgufFile::from_bytes(c.bytes()).expect("structurally valid");
    let e = f.metadata().get_str_array("tokenizer.ggml.tokens").expect_err("wrong element type");
    assert!(matches!(e, GgufError::WrongType { .. }));
    assert_eq!(
        e.to_string(),
        "metadata key 'tokenizer.ggml.tokens' has type array<u32>, expected array<str>"
    );
    assert_no_allocation_over(ALLOC_LIMIT);
}

/// A token string declared longer than i32::MAX (llama.cpp truncated it to int32).
#[test]
fn cve_2025_49847_token_longer_than_i32_max() {
    let len = i32::MAX as u64 + 1;
    let mut c = Craft::header(3, 0, 1);
    c.str("tokenizer.ggml.tokens").u32(vt::ARRAY).u32(vt::STR).u64(2);
    c.str("ok").u64(len).raw(b"rest-of-token");
    let e = refuse_small(c.bytes(), &["tokenizer.ggml.tokens", &len.to_string(), "over the limit"]);
    assert!(matches!(e, GgufError::StringTooLong { .. }));
}
