//! The one table of GGUF tensor names (llama.cpp's `llama-arch.cpp` conventions), shared by the
//! loader, and later by the converter and the random-model generator.

/// Token embedding table `[n_embd, n_vocab]`.
pub const TOKEN_EMBD: &str = "token_embd.weight";
/// Final RMSNorm weight `[n_embd]`.
pub const OUTPUT_NORM: &str = "output_norm.weight";
/// Output projection `[n_embd, n_vocab]`; absent when tied to the token embedding.
pub const OUTPUT: &str = "output.weight";

/// Per-block tensors of the decoder.
#[derive(Clone, Copy, Debug)]
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
    /// The tensor's name in block `layer`.
    pub fn name(self, layer: usize) -> String {
        let suffix = match self {
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
        };
        format!("blk.{layer}.{suffix}")
    }
}
