//! Byte identity with llama.cpp: SmolLM2-135M-Instruct's Hugging Face directory converted by
//! `edgevl convert` for every scheme llama.cpp also writes, compared tensor by tensor (type, dims,
//! sha256 of the bytes) and key by key with the goldens `scripts/gen_convert_goldens.sh` made from
//! `convert_hf_to_gguf.py` (f32, f16, bf16) and `llama-quantize` (q8_0, q4_0, q4_1, Q4_K_M).

mod common;

use edgevl_convert::{convert, ConvertOptions, LlmType, PlanOptions, Scheme, Silent};

fn check(scheme: Scheme, golden: &str) {
    let src = edgevl_testdata::smollm2_hf_dir();
    let dir = std::env::temp_dir().join(format!("edgevl-goldens-{}-{golden}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(format!("{golden}.gguf"));
    let opts = ConvertOptions {
        plan: PlanOptions { scheme, llm_type: LlmType::Q4_0, pure: false },
        threads: 2,
        cancel: None,
        pre_tokenizer: None,
    };
    convert(&src, &out, None, &opts, &mut Silent).unwrap();
    // llama-quantize reorders tensors by layer; edgevl keeps the converter's order.
    common::check_golden(
        &out,
        &format!("smollm2-{golden}"),
        matches!(scheme, Scheme::F32 | Scheme::F16 | Scheme::BF16),
    );
    std::fs::remove_dir_all(&dir).unwrap();
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
