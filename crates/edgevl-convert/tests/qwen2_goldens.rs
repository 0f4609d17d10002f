//! Qwen2 against llama.cpp: a tiny Qwen2ForCausalLM (width 256, 2 layers, GQA, q/k/v biases, tied
//! embeddings; every value by formula, SmolLM2's tokenizer) converted by `edgevl convert` equals what
//! `convert_hf_to_gguf.py` (f32) and `llama-quantize` (Q8_0, Q4_K_M) made of the same checkpoint
//! (goldens by scripts/gen_qwen2_convert_goldens.py).

mod common;

use std::fs;

use common::{bf16, write_st, T};
use edgevl_convert::{convert, ConvertOptions, LlmType, PlanOptions, Scheme, Silent};

const D: u64 = 256;
const FF: u64 = 512;
const KV: u64 = 128;
const VOCAB: u64 = 49152;

fn tensors() -> Vec<(String, Vec<u64>)> {
    let mut v = vec![("model.embed_tokens.weight".to_string(), vec![VOCAB, D])];
    for l in 0..2 {
        let p = format!("model.layers.{l}.");
        for (n, s) in [
            ("input_layernorm.weight", vec![D]),
            ("self_attn.q_proj.weight", vec![D, D]),
            ("self_attn.q_proj.bias", vec![D]),
            ("self_attn.k_proj.weight", vec![KV, D]),
            ("self_attn.k_proj.bias", vec![KV]),
            ("self_attn.v_proj.weight", vec![KV, D]),
            ("self_attn.v_proj.bias", vec![KV]),
            ("self_attn.o_proj.weight", vec![D, D]),
            ("post_attention_layernorm.weight", vec![D]),
            ("mlp.gate_proj.weight", vec![FF, D]),
            ("mlp.up_proj.weight", vec![FF, D]),
            ("mlp.down_proj.weight", vec![D, FF]),
        ] {
            v.push((format!("{p}{n}"), s));
        }
    }
    v.push(("model.norm.weight".into(), vec![D]));
    v
}

#[test]
fn tiny_qwen2_equals_llama_cpp() {
    let root = std::env::temp_dir().join(format!("edgevl-qwen2-{}", std::process::id()));
    // The directory's name matters: general.name comes from it.
    let dir = root.join("tiny-qwen2");
    fs::create_dir_all(&dir).unwrap();
    let t: Vec<T> = tensors()
        .into_iter()
        .enumerate()
        .map(|(i, (n, s))| {
            let b = bf16(&s, i as u32 + 1);
            (n, "BF16", s, b)
        })
        .collect();
    write_st(&dir.join("model.safetensors"), &t, |h| h);
    let config = format!(
        r#"{{"architectures":["Qwen2ForCausalLM"],"hidden_size":{D},"intermediate_size":{FF},"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":{VOCAB},"tie_word_embeddings":true,"rms_norm_eps":1e-6,"rope_theta":1000000.0,"max_position_embeddings":4096,"bos_token_id":1,"eos_token_id":2}}"#
    );
    fs::write(dir.join("config.json"), config).unwrap();
    common::smollm2_tokenizer(&dir);
    for (scheme, golden) in [(Scheme::F32, "f32"), (Scheme::Q8_0, "q8_0"), (Scheme::Q4K, "q4_k")] {
        let out = root.join(format!("{golden}.gguf"));
        let opts = ConvertOptions {
            plan: PlanOptions { scheme, llm_type: LlmType::Q4_0, pure: false },
            threads: 2,
            cancel: None,
            pre_tokenizer: None,
        };
        convert(&dir, &out, None, &opts, &mut Silent).unwrap();
        common::check_golden(&out, &format!("tiny-qwen2-{golden}"), scheme == Scheme::F32);
    }
    fs::remove_dir_all(&root).unwrap();
}
