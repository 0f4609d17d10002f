//! InternVL and SmolVLM against llama.cpp: the tiny random checkpoints of tests/fixtures/hf
//! (InternVLChatModel in OpenGVLab's original layout, Idefics3ForConditionalGeneration as
//! transformers saves it; the models of tests/fixtures/tiny-internvl and tiny-smolvlm) converted by
//! `edgevl convert --mmproj-out` equal what llama.cpp made of them: the language model as
//! `convert_hf_to_gguf.py --outtype f32` (and `llama-quantize Q8_0` of it), the mmproj as
//! `convert_hf_to_gguf.py --mmproj --outtype f32` and `--outtype q8_0` — every metadata key (order,
//! type, value), every tensor's name, type, dims and bytes (goldens by
//! scripts/make_convert_vlm_fixtures.py).

mod common;

use edgevl_convert::{convert, ConvertOptions, LlmType, PlanOptions, Scheme, Silent};

fn check(family: &str, pre_tokenizer: &str) {
    let src = edgevl_testdata::fixture(&format!("hf/tiny-{family}"));
    let dir = std::env::temp_dir().join(format!("edgevl-vlm-goldens-{}-{family}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (scheme, name) in [(Scheme::F32, "f32"), (Scheme::Q8_0, "q8_0")] {
        let opts = ConvertOptions {
            plan: PlanOptions { scheme, llm_type: LlmType::Q4_0, pure: false },
            threads: 2,
            cancel: None,
            // The tiny tokenizers are trained for the fixtures: llama.cpp's table does not know them
            // (the fixture script told its converter the same name).
            pre_tokenizer: Some(pre_tokenizer.into()),
        };
        let (out, mmproj) = (dir.join(format!("{name}.gguf")), dir.join(format!("mmproj-{name}.gguf")));
        let summary = convert(&src, &out, Some(&mmproj), &opts, &mut Silent).unwrap();
        assert!(!summary.mmproj_tensors.is_empty());
        // llama-quantize reorders tensors by layer; edgevl keeps the converter's order.
        common::check_golden(&out, &format!("tiny-{family}-{name}"), scheme == Scheme::F32);
        common::check_golden(&mmproj, &format!("tiny-{family}-mmproj-{name}"), true);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tiny_internvl_equals_llama_cpp() {
    check("internvl", "qwen2");
}

#[test]
fn tiny_smolvlm_equals_llama_cpp() {
    check("smolvlm", "smollm");
}
