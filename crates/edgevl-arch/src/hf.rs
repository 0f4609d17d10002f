//! The Hugging Face side: checkpoint tensor names per architecture and the `config.json` fields a
//! converter reads, with the GGUF names they become (llama.cpp's `gguf-py` `tensor_mapping.py` and
//! `convert_hf_to_gguf.py` conventions).
//!
//! ```
//! use edgevl_arch::hf::{self, HfArch};
//! let arch = HfArch::from_name("Qwen2ForCausalLM").unwrap();
//! assert_eq!(arch.gguf_arch(), "qwen2");
//! assert_eq!(hf::llm_tensor("model.layers.7.self_attn.q_proj.bias").unwrap(), "blk.7.attn_q.bias");
//! assert_eq!(hf::llm_tensor("lm_head.weight").unwrap(), "output.weight");
//! ```

use crate::llm::{self, Block};

pub mod vision;

/// Decoder architectures a converter reads (`config.json` `architectures[0]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HfArch {
    /// `LlamaForCausalLM` (SmolLM2, Llama 2/3, ...): Q and K rows permuted for ggml's RoPE.
    Llama,
    /// `Qwen2ForCausalLM` (Qwen2, Qwen2.5): NeoX RoPE, q/k/v biases, no permutation.
    Qwen2,
}

impl HfArch {
    /// Every architecture, with its `architectures` names (the first is the one reported);
    /// `VLlama3ForCausalLM` is the decoder of SmolVLM (Idefics3) checkpoints.
    pub const ALL: [(HfArch, &'static str); 3] = [
        (HfArch::Llama, "LlamaForCausalLM"),
        (HfArch::Qwen2, "Qwen2ForCausalLM"),
        (HfArch::Llama, "VLlama3ForCausalLM"),
    ];

    /// The architecture named `name` in `config.json`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(a, _)| *a)
    }

    /// The `config.json` name.
    pub fn hf_name(self) -> &'static str {
        Self::ALL.iter().find(|(a, _)| *a == self).map(|(_, n)| *n).unwrap_or("")
    }

    /// `general.architecture` of the converted file.
    pub fn gguf_arch(self) -> &'static str {
        match self {
            HfArch::Llama => llm::ARCH_LLAMA,
            HfArch::Qwen2 => llm::ARCH_QWEN2,
        }
    }

    /// Whether llama.cpp's converter permutes the rows of Q and K (`LlamaModel.permute`).
    pub fn permutes_qk(self) -> bool {
        matches!(self, HfArch::Llama)
    }
}

/// `model.embed_tokens.weight`.
pub const EMBED_TOKENS: &str = "model.embed_tokens.weight";
/// `model.norm.weight`.
pub const NORM: &str = "model.norm.weight";
/// `lm_head.weight` (absent when tied to the embedding).
pub const LM_HEAD: &str = "lm_head.weight";
/// Prefix of the decoder blocks, followed by `{layer}.`.
pub const LAYERS_PREFIX: &str = "model.layers.";

/// Name parts llama.cpp's converter removes from decoder tensor names of multimodal checkpoints,
/// wherever they are (`language_model.` everywhere, `text_model.` for SmolVLM's
/// `model.text_model.*`).
pub const STRIPPED_PARTS: [&str; 2] = ["language_model.", "text_model."];

/// The block tensors: name after `model.layers.{i}.` and the GGUF block tensor.
pub const BLOCK_TENSORS: [(&str, Block); 12] = [
    ("input_layernorm.weight", Block::AttnNorm),
    ("self_attn.q_proj.weight", Block::AttnQ),
    ("self_attn.q_proj.bias", Block::AttnQBias),
    ("self_attn.k_proj.weight", Block::AttnK),
    ("self_attn.k_proj.bias", Block::AttnKBias),
    ("self_attn.v_proj.weight", Block::AttnV),
    ("self_attn.v_proj.bias", Block::AttnVBias),
    ("self_attn.o_proj.weight", Block::AttnOutput),
    ("post_attention_layernorm.weight", Block::FfnNorm),
    ("mlp.gate_proj.weight", Block::FfnGate),
    ("mlp.up_proj.weight", Block::FfnUp),
    ("mlp.down_proj.weight", Block::FfnDown),
];

/// Name prefixes of the non-text parts of a multimodal checkpoint, which the decoder's file leaves
/// out (llama.cpp's `TextModel.filter_tensors`).
pub const MULTIMODAL_PREFIXES: [&str; 10] = [
    "mlp",
    "vit.",
    "vpm.",
    "siglip2.",
    "conformer.",
    "merger.",
    "resampler.",
    "sound_encoder.",
    "sound_projection.",
    "speech_embeddings.",
];
/// Name parts of the non-text parts of a multimodal checkpoint (same source).
pub const MULTIMODAL_PARTS: [&str; 16] = [
    "visual.",
    "vision.",
    "audio.",
    "talker.",
    "vision_",
    "audio_",
    "token2wav.",
    "code2wav.",
    "projector.",
    "pre_mm_projector_norm",
    "image_newline",
    "view_seperator",
    "patch_embed",
    "patch_merger.",
    "patch_merge_mlp.",
    "model.connector.",
];

/// Whether a checkpoint tensor belongs to a multimodal checkpoint's vision/audio side.
pub fn is_multimodal_tensor(name: &str) -> bool {
    MULTIMODAL_PREFIXES.iter().any(|p| name.starts_with(p))
        || MULTIMODAL_PARTS.iter().any(|p| name.contains(p))
}

/// Tensors llama.cpp's converter drops (`.rotary_emb.inv_freq`, attention masks).
pub const SKIPPED_SUFFIXES: [&str; 3] = [".attention.masked_bias", ".attention.bias", ".rotary_emb.inv_freq"];

/// The HF name of block tensor `t` in layer `layer`.
pub fn block_tensor_name(layer: usize, t: Block) -> Option<String> {
    BLOCK_TENSORS.iter().find(|(_, b)| *b == t).map(|(s, _)| format!("{LAYERS_PREFIX}{layer}.{s}"))
}

/// The GGUF name of a decoder tensor (after [`STRIPPED_PARTS`] are removed), or `None` when
/// the name is not one of a LLaMA/Qwen2 decoder's.
pub fn llm_tensor(hf_name: &str) -> Option<String> {
    match hf_name {
        EMBED_TOKENS => return Some(llm::TOKEN_EMBD.to_string()),
        NORM => return Some(llm::OUTPUT_NORM.to_string()),
        LM_HEAD => return Some(llm::OUTPUT.to_string()),
        _ => {}
    }
    let rest = hf_name.strip_prefix(LAYERS_PREFIX)?;
    let (layer, suffix) = rest.split_once('.')?;
    if layer.is_empty() || !layer.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let layer: usize = layer.parse().ok()?;
    BLOCK_TENSORS.iter().find(|(s, _)| *s == suffix).map(|(_, b)| b.name(layer))
}

/// `config.json` fields, and the alternatives llama.cpp's converter accepts for each (first found wins).
pub mod config {
    /// `architectures`: list whose first entry names the model class.
    pub const ARCHITECTURES: &str = "architectures";
    /// `text_config`: a multimodal model's decoder config (merged over the root, as llama.cpp does).
    pub const TEXT_CONFIG: &str = "text_config";
    /// `vision_config`.
    pub const VISION_CONFIG: &str = "vision_config";
    /// `_name_or_path`: the hub id the checkpoint was saved from (naming heuristics).
    pub const NAME_OR_PATH: &str = "_name_or_path";
    /// `tie_word_embeddings`.
    pub const TIE_WORD_EMBEDDINGS: &str = "tie_word_embeddings";
    /// `head_dim`.
    pub const HEAD_DIM: &str = "head_dim";
    /// `vocab_size`.
    pub const VOCAB_SIZE: &str = "vocab_size";
    /// `rope_scaling` (older transformers) / `rope_parameters` (newer).
    pub const ROPE_SCALING: [&str; 2] = ["rope_parameters", "rope_scaling"];
    /// Block count.
    pub const N_LAYER: [&str; 4] = ["n_layers", "num_hidden_layers", "n_layer", "num_layers"];
    /// Training context.
    pub const N_CTX: [&str; 6] = [
        "max_position_embeddings",
        "n_ctx",
        "n_positions",
        "max_length",
        "max_sequence_length",
        "model_max_length",
    ];
    /// Hidden width.
    pub const N_EMBD: [&str; 3] = ["hidden_size", "n_embd", "dim"];
    /// FFN width.
    pub const N_FF: [&str; 5] = [
        "prefix_dense_intermediate_size",
        "dense_intermediate_size",
        "intermediate_size",
        "n_inner",
        "hidden_dim",
    ];
    /// Query heads.
    pub const N_HEAD: [&str; 3] = ["num_attention_heads", "n_head", "n_heads"];
    /// Key/value heads.
    pub const N_HEAD_KV: [&str; 2] = ["num_key_value_heads", "n_kv_heads"];
    /// RoPE base.
    pub const ROPE_THETA: [&str; 5] =
        ["global_rope_theta", "rope_global_theta", "rope_theta_global", "rope_theta", "rotary_emb_base"];
    /// RMSNorm epsilon.
    pub const RMS_EPS: [&str; 2] = ["rms_norm_eps", "norm_eps"];
    /// Special token ids in `config.json` (`{kind}_token_id`), in llama.cpp's `SpecialVocab` order.
    pub const SPECIAL_TOKEN_KINDS: [&str; 7] = ["bos", "eos", "unk", "sep", "pad", "cls", "mask"];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_block_tensor_maps_both_ways() {
        for (_, b) in BLOCK_TENSORS {
            let hf = block_tensor_name(12, b).unwrap();
            assert_eq!(llm_tensor(&hf).unwrap(), b.name(12));
        }
        assert_eq!(llm_tensor("model.layers.x.mlp.up_proj.weight"), None);
        assert_eq!(llm_tensor("model.layers.1.mlp.unknown.weight"), None);
        assert_eq!(llm_tensor("model.norm.weight").unwrap(), llm::OUTPUT_NORM);
        for (a, n) in HfArch::ALL {
            assert_eq!(HfArch::from_name(n), Some(a));
            assert_eq!(HfArch::from_name(a.hf_name()), Some(a));
        }
    }
}
