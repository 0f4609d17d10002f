//! Typed hyper-parameters of the LLaMA-family decoder, read from GGUF metadata.

use crate::ModelError;
use edgevl_arch::general;
use edgevl_arch::llm::{LlmKey, ARCH_LLAMA, ARCH_QWEN2};
use edgevl_gguf::Metadata;
use edgevl_kernels::ops::{Rope, RopeLayout};

/// The decoder families edgevl implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Architecture {
    /// `llama`: RMSNorm, normal RoPE layout, SwiGLU, GQA.
    Llama,
    /// `qwen2`: as llama with NeoX RoPE and q/k/v biases.
    Qwen2,
}

impl Architecture {
    /// Parse `general.architecture`.
    pub fn from_name(name: &str) -> Result<Self, ModelError> {
        match name {
            ARCH_LLAMA => Ok(Architecture::Llama),
            ARCH_QWEN2 => Ok(Architecture::Qwen2),
            edgevl_arch::general::ARCH_CLIP => Err(ModelError::MmprojAsModel),
            other => Err(ModelError::UnsupportedArchitecture(other.to_string())),
        }
    }

    /// The metadata key prefix (`llama`, `qwen2`).
    pub fn key_prefix(self) -> &'static str {
        match self {
            Architecture::Llama => ARCH_LLAMA,
            Architecture::Qwen2 => ARCH_QWEN2,
        }
    }

    /// RoPE pairing used by llama.cpp for this family.
    pub fn rope_layout(self) -> RopeLayout {
        match self {
            Architecture::Llama => RopeLayout::Normal,
            Architecture::Qwen2 => RopeLayout::Neox,
        }
    }
}

/// Largest value accepted for any single dimension; keeps a hostile header from asking for
/// absurd scratch buffers before any tensor is touched.
pub const MAX_DIM: u64 = 1 << 20;

/// Widest attention head the decoder supports (known models use at most 256).
pub const MAX_HEAD_DIM: usize = 512;

/// Hyper-parameters of a decoder.
#[derive(Clone, Debug, PartialEq)]
pub struct DecoderHparams {
    /// Model family.
    pub arch: Architecture,
    /// Hidden width.
    pub n_embd: usize,
    /// Number of transformer blocks.
    pub n_layer: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads (GQA when smaller than `n_head`).
    pub n_head_kv: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// SwiGLU inner width.
    pub n_ff: usize,
    /// Context length the model was trained with.
    pub n_ctx_train: usize,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// Rotary embedding parameters.
    pub rope: Rope,
}

impl DecoderHparams {
    /// Width of all query heads together.
    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    /// Width of all key (or value) heads together.
    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }
}

fn dim(md: &Metadata, key: &str) -> Result<usize, ModelError> {
    let v = md.get_u64(key)?;
    if v == 0 || v > MAX_DIM {
        return Err(ModelError::BadHparams(format!("{key} = {v} is outside 1..={MAX_DIM}")));
    }
    Ok(v as usize)
}

fn opt_dim(md: &Metadata, key: &str) -> Result<Option<usize>, ModelError> {
    match md.get(key) {
        None => Ok(None),
        Some(_) => dim(md, key).map(Some),
    }
}

impl TryFrom<&Metadata> for DecoderHparams {
    type Error = ModelError;

    /// Required keys (for arch `A`): `general.architecture`, `A.embedding_length`,
    /// `A.block_count`, `A.feed_forward_length`, `A.attention.head_count`, `A.context_length`,
    /// `A.attention.layer_norm_rms_epsilon`. Optional: `A.attention.head_count_kv`,
    /// `A.attention.key_length`, `A.rope.dimension_count` (the head width), `A.rope.freq_base`,
    /// `A.rope.scaling.type` (`none` or `linear`, the default), `A.rope.scaling.factor` (or the older
    /// `A.rope.scale_linear`), `A.expert_count` (0).
    fn try_from(md: &Metadata) -> Result<Self, ModelError> {
        let arch = Architecture::from_name(md.get_str(general::ARCHITECTURE)?)?;
        let p = arch.key_prefix();
        let k = |key: LlmKey| key.of(p);
        let n_embd = dim(md, &k(LlmKey::EmbeddingLength))?;
        let n_layer = dim(md, &k(LlmKey::BlockCount))?;
        let n_ff = dim(md, &k(LlmKey::FeedForwardLength))?;
        let n_head = dim(md, &k(LlmKey::HeadCount))?;
        let n_head_kv = opt_dim(md, &k(LlmKey::HeadCountKv))?.unwrap_or(n_head);
        // The trained context only sets the default context (capped at load): any u32 is taken, as llama.cpp
        // takes 4M-context models (a dimension's bound would refuse them).
        let n_ctx_train = match md.get_u64(&k(LlmKey::ContextLength))? {
            0 => return Err(ModelError::BadHparams(format!("{} is 0", k(LlmKey::ContextLength)))),
            v => usize::try_from(v.min(u32::MAX as u64)).unwrap_or(u32::MAX as usize),
        };
        if let Some(n) = md.opt_u64(&k(LlmKey::ExpertCount))? {
            if n > 0 {
                return Err(ModelError::BadHparams(format!(
                    "{} = {n}: mixture-of-experts models are not supported",
                    k(LlmKey::ExpertCount)
                )));
            }
        }
        let rms_eps = md.get_f32(&k(LlmKey::RmsEps))?;
        if n_head % n_head_kv != 0 {
            return Err(ModelError::BadHparams(format!(
                "head_count {n_head} is not a multiple of head_count_kv {n_head_kv}"
            )));
        }
        let head_dim = match opt_dim(md, &k(LlmKey::KeyLength))? {
            Some(h) => h,
            None if n_embd % n_head == 0 => n_embd / n_head,
            None => {
                return Err(ModelError::BadHparams(format!(
                    "embedding_length {n_embd} is not a multiple of head_count {n_head}"
                )))
            }
        };
        if head_dim > MAX_HEAD_DIM {
            return Err(ModelError::BadHparams(format!(
                "head width {head_dim} exceeds the supported maximum {MAX_HEAD_DIM}"
            )));
        }
        if let Some(vl) = opt_dim(md, &k(LlmKey::ValueLength))? {
            if vl != head_dim {
                return Err(ModelError::BadHparams(format!(
                    "value_length {vl} differs from key_length {head_dim} (not supported)"
                )));
            }
        }
        // LLaMA and Qwen2 rotate whole heads (transformers; llama.cpp refuses another count for llama),
        // in pairs of dimensions.
        let n_rot = opt_dim(md, &k(LlmKey::RopeDimensionCount))?.unwrap_or(head_dim);
        if n_rot != head_dim {
            return Err(ModelError::BadHparams(format!(
                "rope.dimension_count {n_rot} differs from the head width {head_dim}: partial rotary is not how \
                 {p} computes (not supported)"
            )));
        }
        if n_rot % 2 != 0 {
            return Err(ModelError::BadHparams(format!(
                "rope.dimension_count {n_rot} must be even: RoPE rotates pairs of dimensions"
            )));
        }
        let freq_base = md.opt_f32(&k(LlmKey::RopeFreqBase))?.unwrap_or(10000.0);
        // As llama.cpp reads them: the type defaults to linear, the factor to the older `rope.scale_linear`, and a
        // factor of 0 (or none) is no scaling.
        let scaling = md.opt_str(&k(LlmKey::RopeScalingType))?.unwrap_or("linear");
        let factor = match md.opt_f32(&k(LlmKey::RopeScalingFactor))? {
            Some(f) => f,
            None => md.opt_f32(&k(LlmKey::RopeScaleLinear))?.unwrap_or(0.0),
        };
        let freq_scale = match scaling {
            "none" => 1.0,
            "linear" if !(factor.is_finite() && factor >= 0.0) => {
                return Err(ModelError::BadHparams(format!(
                    "rope scaling factor {factor} must be a number >= 0"
                )));
            }
            "linear" if factor == 0.0 => 1.0,
            "linear" => 1.0 / factor,
            other => {
                return Err(ModelError::BadHparams(format!(
                    "rope.scaling.type '{other}' is not supported (none, linear)"
                )))
            }
        };
        if !(freq_base.is_finite() && freq_base > 0.0 && rms_eps.is_finite() && rms_eps >= 0.0) {
            return Err(ModelError::BadHparams(format!(
                "rope.freq_base {freq_base} / rms epsilon {rms_eps} out of range"
            )));
        }
        Ok(DecoderHparams {
            arch,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            head_dim,
            n_ff,
            n_ctx_train,
            rms_eps,
            rope: Rope { layout: arch.rope_layout(), n_rot, freq_base, freq_scale },
        })
    }
}
