//! Seeded random mutations of a valid small file never panic, never allocate hugely, and
//! whatever is accepted is internally consistent and survives a write/read round trip.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

use common::alloc::{assert_no_allocation_over, Tracking};
use edgevl_gguf::{Array, GgmlType, GgufFile, GgufWriter, Value};

#[global_allocator]
static ALLOC: Tracking = Tracking;

/// SplitMix64: a tiny, well-known seeded generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn seed_file() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.add_kv("general.architecture", Value::Str("llama".into()))
        .add_kv("general.alignment", Value::U32(16))
        .add_kv("llama.block_count", Value::U32(1))
        .add_kv("f", Value::F32(1.0))
        .add_kv("b", Value::Bool(true))
        .add_kv("toks", Value::Array(Array::Str(vec!["a".into(), "bc".into()])))
        .add_kv("ids", Value::Array(Array::I32(vec![1, -1])))
        .add_kv("nest", Value::Array(Array::Nested(vec![Array::U8(vec![1])])));
    w.add_tensor("q", GgmlType::Q8_0, &[32, 2], vec![3; 68]).expect("q");
    w.add_tensor("n", GgmlType::F32, &[4], vec![7; 16]).expect("n");
    w.add_tensor("e", GgmlType::I8, &[2, 1, 1, 2], vec![1; 4]).expect("e");
    w.to_bytes().expect("seed")
}

/// Values that make good count/length/offset corruptions.
const INTERESTING: [u64; 12] =
    [0, 1, 4, 5, 31, 32, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 1 << 60, i64::MAX as u64, u64::MAX];

fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(3) {
        let len = bytes.len();
        if len == 0 {
            return;
        }
        let pos = rng.below(len);
        match rng.below(6) {
            0 => bytes[pos] ^= 1 << rng.below(8),
            1 => bytes[pos] = rng.next() as u8,
            2 => {
                let v = INTERESTING[rng.below(INTERESTING.len())].to_le_bytes();
                let width = [1, 4, 8][rng.below(3)];
                for (i, b) in v.iter().take(width).enumerate() {
                    if let Some(slot) = bytes.get_mut(pos + i) {
                        *slot = *b;
                    }
                }
            }
            3 => bytes.truncate(pos),
            4 => bytes.insert(pos, rng.next() as u8),
            _ => {
                bytes.remove(pos);
            }
        }
    }
}

/// Uses everything an accepted file offers, checking its invariants.
fn exercise(f: &GgufFile) {
    let md = f.metadata();
    for (k, v) in md.iter() {
        assert!(md.get(k).is_some());
        let _ = (v.type_name(), md.get_u64(k), md.get_f32(k), md.get_str_array(k));
    }
    let _ = (f.architecture(), md.opt_u32("llama.block_count"));
    assert!(f.alignment().is_power_of_two());
    for t in f.tensors() {
        assert_eq!(f.tensor_data(t).len() as u64, t.n_bytes);
        assert_eq!(t.offset % f.alignment(), 0);
        assert!(f.data_offset() + t.offset + t.n_bytes <= f.file_len());
        assert_eq!(f.tensor(&t.name).map(|x| &x.dims), Some(&t.dims));
        let _ = t.n_elements();
    }
    // What was accepted can be written back and reads back the same.
    let mut w = GgufWriter::new();
    for (k, v) in md.iter() {
        w.add_kv(k, v.clone());
    }
    for t in f.tensors() {
        w.add_tensor(t.name.clone(), t.ggml_type, &t.dims, f.tensor_data(t).to_vec())
            .expect("re-add accepted tensor");
    }
    let again = GgufFile::from_bytes(w.to_bytes().expect("rewrite")).expect("re-read");
    assert_eq!(again.metadata(), md);
    assert_eq!(again.tensors().len(), f.tensors().len());
    for t in f.tensors() {
        let u = again.tensor(&t.name).expect("tensor kept");
        assert_eq!(again.tensor_data(u), f.tensor_data(t));
    }
}

#[test]
fn random_mutations_never_panic() {
    let seed = seed_file();
    assert!(GgufFile::from_bytes(seed.clone()).is_ok());
    let mut rng = Rng(0x005E_ED0F_ED6E_F00D);
    let (mut accepted, mut refused) = (0, 0);
    for i in 0..20_000 {
        let mut bytes = seed.clone();
        mutate(&mut rng, &mut bytes);
        let outcome = catch_unwind(AssertUnwindSafe(|| match GgufFile::from_bytes(bytes.clone()) {
            Ok(f) => {
                exercise(&f);
                true
            }
            Err(e) => {
                assert!(!e.to_string().is_empty());
                false
            }
        }));
        match outcome {
            Ok(true) => accepted += 1,
            Ok(false) => refused += 1,
            Err(_) => panic!("mutation #{i} panicked; input: {bytes:02x?}"),
        }
    }
    eprintln!("accepted {accepted}, refused {refused}");
    // Both paths are exercised: many mutations are refused, and some (e.g. in tensor data or
    // string contents) are accepted.
    assert!(refused > 5000 && accepted > 500, "accepted {accepted}, refused {refused}");
    // The seed is under 1 KiB; nothing should approach 1 MiB.
    assert_no_allocation_over(1 << 20);
}
