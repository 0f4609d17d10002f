//! The decoder's tensor names and metadata keys (llama.cpp's `llama-arch.cpp` conventions).

/// `general.architecture` of a LLaMA decoder.
pub const ARCH_LLAMA: &str = "llama";
/// `general.architecture` of a Qwen2 decoder (NeoX RoPE, q/k/v biases).
pub const ARCH_QWEN2: &str = "qwen2";

/// Token embedding table `[n_embd, n_vocab]`.
pub const TOKEN_EMBD: &str = "token_embd.weight";
/// Final RMSNorm weight `[n_embd]`.
pub const OUTPUT_NORM: &str = "output_norm.weight";
/// Output projection `[n_embd, n_vocab]`; absent when tied to the token embedding.
pub const OUTPUT: &str = "output.weight";
/// RoPE frequency factors `[n_rot / 2]` (each pair's angle divided by its factor): how llama.cpp's
/// converter writes Llama 3.1's `rope_scaling` (`rope_type: llama3`); absent otherwise.
pub const ROPE_FREQS: &str = "rope_freqs.weight";

/// Per-block tensors of the decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Block {
    /// Pre-attention RMSNorm weight.
    AttnNorm,
    /// Query projection.
    AttnQ,
    /// Key projection.
    AttnK,
    /// Value projection.
    AttnV,
    /// Query bias (qwen2).
    AttnQBias,
    /// Key bias (qwen2).
    AttnKBias,
    /// Value bias (qwen2).
    AttnVBias,
    /// Attention output projection.
    AttnOutput,
    /// Pre-FFN RMSNorm weight.
    FfnNorm,
    /// SwiGLU gate projection.
    FfnGate,
    /// SwiGLU up projection.
    FfnUp,
    /// SwiGLU down projection.
    FfnDown,
}

impl Block {
    /// Every block tensor, in the order llama.cpp's converter writes them.
    pub const ALL: [Block; 12] = [
        Block::AttnNorm,
        Block::AttnQ,
        Block::AttnQBias,
        Block::AttnK,
        Block::AttnKBias,
        Block::AttnV,
        Block::AttnVBias,
        Block::AttnOutput,
        Block::FfnNorm,
        Block::FfnGate,
        Block::FfnUp,
        Block::FfnDown,
    ];

    /// The name after `blk.{layer}.`, e.g. `attn_q.weight`.
    pub fn suffix(self) -> &'static str {
        match self {
            Block::AttnNorm => "attn_norm.weight",
            Block::AttnQ => "attn_q.weight",
            Block::AttnK => "attn_k.weight",
            Block::AttnV => "attn_v.weight",
            Block::AttnQBias => "attn_q.bias",
            Block::AttnKBias => "attn_k.bias",
            Block::AttnVBias => "attn_v.bias",
            Block::AttnOutput => "attn_output.weight",
            Block::FfnNorm => "ffn_norm.weight",
            Block::FfnGate => "ffn_gate.weight",
            Block::FfnUp => "ffn_up.weight",
            Block::FfnDown => "ffn_down.weight",
        }
    }

    /// The tensor's name in block `layer`.
    pub fn name(self, layer: usize) -> String {
        format!("blk.{layer}.{}", self.suffix())
    }
}

/// Per-architecture metadata keys, `{arch}.{suffix}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LlmKey {
    /// `context_length`: the training context.
    ContextLength,
    /// `embedding_length`: hidden width.
    EmbeddingLength,
    /// `block_count`: transformer blocks.
    BlockCount,
    /// `feed_forward_length`: SwiGLU inner width.
    FeedForwardLength,
    /// `attention.head_count`: query heads.
    HeadCount,
    /// `attention.head_count_kv`: key/value heads.
    HeadCountKv,
    /// `attention.key_length`: width of a key head.
    KeyLength,
    /// `attention.value_length`: width of a value head.
    ValueLength,
    /// `attention.layer_norm_rms_epsilon`.
    RmsEps,
    /// `rope.dimension_count`: rotated dimensions per head.
    RopeDimensionCount,
    /// `rope.freq_base`.
    RopeFreqBase,
    /// `rope.scaling.type`: `none`, `linear`, ...
    RopeScalingType,
    /// `rope.scaling.factor`.
    RopeScalingFactor,
    /// `rope.scale_linear`: the older key of the linear scaling factor.
    RopeScaleLinear,
    /// `expert_count`: experts of a mixture-of-experts model.
    ExpertCount,
    /// `vocab_size`.
    VocabSize,
}

impl LlmKey {
    /// The part after `{arch}.`.
    pub fn suffix(self) -> &'static str {
        match self {
            LlmKey::ContextLength => "context_length",
            LlmKey::EmbeddingLength => "embedding_length",
            LlmKey::BlockCount => "block_count",
            LlmKey::FeedForwardLength => "feed_forward_length",
            LlmKey::HeadCount => "attention.head_count",
            LlmKey::HeadCountKv => "attention.head_count_kv",
            LlmKey::KeyLength => "attention.key_length",
            LlmKey::ValueLength => "attention.value_length",
            LlmKey::RmsEps => "attention.layer_norm_rms_epsilon",
            LlmKey::RopeDimensionCount => "rope.dimension_count",
            LlmKey::RopeFreqBase => "rope.freq_base",
            LlmKey::RopeScalingType => "rope.scaling.type",
            LlmKey::RopeScalingFactor => "rope.scaling.factor",
            LlmKey::RopeScaleLinear => "rope.scale_linear",
            LlmKey::ExpertCount => "expert_count",
            LlmKey::VocabSize => "vocab_size",
        }
    }

    /// The full key for architecture `arch`, e.g. `llama.block_count`.
    pub fn of(self, arch: &str) -> String {
        format!("{arch}.{}", self.suffix())
    }
}
