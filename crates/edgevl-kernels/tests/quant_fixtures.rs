//! Our dequantisers and reference quantisers against the `gguf` Python package
//! (fixtures written by scripts/gen_quant_fixtures.py into tests/fixtures/quant/).

use std::path::PathBuf;

use edgevl_kernels::formats::quantize_ref;
use edgevl_kernels::{DType, Kernels};

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/quant").join(name);
    std::fs::read(&p)
        .unwrap_or_else(|e| panic!("{}: {e}; regenerate with scripts/gen_quant_fixtures.py", p.display()))
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

const FILES: [(&str, DType); 8] = [
    ("f16", DType::F16),
    ("bf16", DType::BF16),
    ("q8_0", DType::Q8_0),
    ("q4_0", DType::Q4_0),
    ("q4_1", DType::Q4_1),
    ("q5_0", DType::Q5_0),
    ("q4_k", DType::Q4_K),
    ("q6_k", DType::Q6_K),
];

#[test]
fn dequantize_matches_gguf_package() {
    for k in Kernels::all_levels() {
        for (name, dtype) in FILES {
            let blocks = fixture(&format!("{name}.blocks"));
            let want = f32s(&fixture(&format!("{name}.deq")));
            assert_eq!(blocks.len() / dtype.block_bytes() * dtype.block_size(), want.len(), "{name}");
            let mut got = vec![0f32; want.len()];
            k.format(dtype).dequantize(&blocks, &mut got);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                // numpy computes in f32 like ggml; allow 1 ulp where an f16 scale multiplies twice.
                let ulps = (g.to_bits() as i64 - w.to_bits() as i64).abs();
                assert!(g == w || ulps <= 1, "{name} ({:?}) element {i}: ours {g:e}, gguf {w:e}", k.level());
            }
        }
    }
}

#[test]
fn quantize_ref_matches_gguf_package_bit_exactly() {
    let x = f32s(&fixture("quant_input.f32"));
    for (name, dtype) in
        [("q8_0", DType::Q8_0), ("q4_0", DType::Q4_0), ("q4_1", DType::Q4_1), ("q5_0", DType::Q5_0)]
    {
        let want = fixture(&format!("{name}.quant"));
        let got = quantize_ref(dtype, &x).expect("whole blocks");
        assert_eq!(got.len(), want.len(), "{name}");
        let bb = dtype.block_bytes();
        for (b, (g, w)) in got.chunks(bb).zip(want.chunks(bb)).enumerate() {
            assert_eq!(g, w, "{name} block {b} differs from gguf's quantize");
        }
    }
}
