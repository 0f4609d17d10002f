//! Random-weight LLaMA-family decoders (llama, qwen2) with exact architecture shapes, written as GGUF files that both
//! edgevl and llama.cpp load (llama.cpp's tensor names and metadata keys, a GPT-2-style
//! byte-level vocabulary of synthetic tokens).

use std::path::Path;

use edgevl_arch::family::VisionFamily;
use edgevl_arch::general;
use edgevl_arch::llm::{self, Block, LlmKey, ARCH_LLAMA, ARCH_QWEN2};
use edgevl_arch::tokenizer::{self as tok, SpecialToken};
use edgevl_gguf::{Array, GgufWriter, Value};
use edgevl_kernels::DType;

use crate::image_tokens::{family_image_tokens, lfm2_image_tokens, MAX_GRID_TILES};
use crate::tensors::{add_random_tensors, create, file_type, GenError, TensorSpec};

/// Errors of LLaMA model generation.
#[derive(Debug, thiserror::Error)]
pub enum LlmGenError {
    /// Generating or writing a tensor failed.
    #[error(transparent)]
    Gen(#[from] GenError),
    /// No preset of that name.
    #[error("unknown preset '{name}' (known: {known})")]
    UnknownPreset {
        /// The name asked for.
        name: String,
        /// The presets there are.
        known: String,
    },
    /// The vocabulary is too small for the extra tokens asked for.
    #[error("preset '{preset}' has {n_vocab} tokens, too few for the {needed} the options need")]
    VocabTooSmall {
        /// The preset.
        preset: String,
        /// Its vocabulary size.
        n_vocab: usize,
        /// Tokens needed (bytes, `<|endoftext|>` and the extras).
        needed: usize,
    },
}

/// Choices beyond the shape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LlamaOptions {
    /// Put llama.cpp's lfm2 image tokens (see [`crate::image_tokens`]) in the vocabulary as
    /// control tokens right after `<|endoftext|>`, so llama-mtmd-cli can pair the model with an
    /// lfm2 mmproj.
    pub image_tokens: bool,
}

/// Shape of a LLaMA-family decoder.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LlamaShape {
    /// Preset name (also `general.name`).
    pub name: &'static str,
    /// `general.architecture`: `llama`, or `qwen2` (adds q/k/v biases).
    pub arch: &'static str,
    /// The vision family whose image tokens the vocabulary always holds (the LLM of a public VLM).
    pub family_tokens: Option<VisionFamily>,
    /// Residual width.
    pub n_embd: usize,
    /// Number of blocks.
    pub n_layer: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads.
    pub n_head_kv: usize,
    /// SwiGLU hidden width.
    pub n_ff: usize,
    /// Vocabulary size (at least 257: the 256 byte tokens and one control token).
    pub n_vocab: usize,
    /// Training context length.
    pub n_ctx: usize,
    /// RoPE frequency base.
    pub rope_base: f32,
    /// Whether the output projection is the token embedding (no `output.weight`).
    pub tied_output: bool,
}

/// The LLaMA-shaped presets.
pub const PRESETS: [LlamaShape; 5] = [
    // BlueLM-V-3B's language model (2.7B).
    LlamaShape {
        name: "bluelm-v-3b",
        arch: ARCH_LLAMA,
        family_tokens: None,
        n_embd: 2560,
        n_layer: 28,
        n_head: 20,
        n_head_kv: 20,
        n_ff: 6912,
        n_vocab: 100_000,
        n_ctx: 4096,
        rope_base: 10_000.0,
        tied_output: false,
    },
    // SmolLM2-135M.
    LlamaShape {
        name: "smollm2-135m",
        arch: ARCH_LLAMA,
        family_tokens: None,
        n_embd: 576,
        n_layer: 30,
        n_head: 9,
        n_head_kv: 3,
        n_ff: 1536,
        n_vocab: 49_152,
        n_ctx: 8192,
        rope_base: 100_000.0,
        tied_output: true,
    },
    // InternVL3-1B's language model (Qwen2.5-0.5B, with InternVL's image tokens).
    LlamaShape {
        name: "internvl3-1b",
        arch: ARCH_QWEN2,
        family_tokens: Some(VisionFamily::InternVl),
        n_embd: 896,
        n_layer: 24,
        n_head: 14,
        n_head_kv: 2,
        n_ff: 4864,
        n_vocab: 151_674,
        n_ctx: 32_768,
        rope_base: 1_000_000.0,
        tied_output: true,
    },
    // SmolVLM-256M's language model (SmolLM2-135M's shape, SmolVLM's vocabulary).
    LlamaShape {
        name: "smolvlm-256m",
        arch: ARCH_LLAMA,
        family_tokens: Some(VisionFamily::Idefics3),
        n_embd: 576,
        n_layer: 30,
        n_head: 9,
        n_head_kv: 3,
        n_ff: 1536,
        n_vocab: 49_280,
        n_ctx: 8192,
        rope_base: 100_000.0,
        tied_output: true,
    },
    // A few kilobytes, for tests.
    LlamaShape {
        name: "tiny",
        arch: ARCH_LLAMA,
        family_tokens: None,
        n_embd: 64,
        n_layer: 2,
        n_head: 4,
        n_head_kv: 2,
        n_ff: 128,
        n_vocab: 512,
        n_ctx: 256,
        rope_base: 10_000.0,
        tied_output: false,
    },
];

/// The preset called `name`.
pub fn preset(name: &str) -> Option<LlamaShape> {
    PRESETS.iter().copied().find(|p| p.name == name)
}

/// Id of the one control token (`<|endoftext|>`, also BOS and EOS): right after the byte tokens.
pub const EOT_ID: u32 = 256;

/// GGUF token type of a normal token (llama.cpp's `LLAMA_TOKEN_TYPE_NORMAL`).
const TOKEN_NORMAL: i32 = 1;
/// GGUF token type of a control token.
const TOKEN_CONTROL: i32 = 3;

/// The character GPT-2's byte-level BPE writes for byte `b` (printable bytes stand for
/// themselves, the others are shifted to U+0100 and above).
fn byte_char(b: u8) -> char {
    let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable {
        char::from(b)
    } else {
        let below = (0..b).filter(|&c| !matches!(c, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)).count();
        char::from_u32(256 + below as u32).unwrap_or(char::REPLACEMENT_CHARACTER)
    }
}

/// The vocabulary of `shape`: the 256 byte tokens, `<|endoftext|>` (control), the control
/// tokens `extra`, then synthetic `tokN` fillers; with each token's GGUF type.
fn vocabulary(shape: &LlamaShape, extra: &[String]) -> Result<(Vec<String>, Vec<i32>), LlmGenError> {
    let needed = EOT_ID as usize + 1 + extra.len();
    if needed > shape.n_vocab {
        return Err(LlmGenError::VocabTooSmall {
            preset: shape.name.to_string(),
            n_vocab: shape.n_vocab,
            needed,
        });
    }
    let mut tokens: Vec<String> = (0..=255u8).map(|b| byte_char(b).to_string()).collect();
    tokens.push("<|endoftext|>".into());
    tokens.extend(extra.iter().cloned());
    tokens.extend((tokens.len()..shape.n_vocab).map(|i| format!("tok{i}")));
    let mut types = vec![TOKEN_NORMAL; shape.n_vocab];
    types[EOT_ID as usize..needed].fill(TOKEN_CONTROL);
    Ok((tokens, types))
}

/// Metadata of `shape`: architecture keys and the synthetic vocabulary.
fn add_metadata(
    w: &mut GgufWriter,
    shape: &LlamaShape,
    dtype: DType,
    opts: LlamaOptions,
) -> Result<(), LlmGenError> {
    let u32v = |n: usize| Value::U32(n as u32);
    let k = |key: LlmKey| key.of(shape.arch);
    w.add_kv(general::ARCHITECTURE, Value::Str(shape.arch.into()));
    w.add_kv(general::NAME, Value::Str(format!("random-{}", shape.name)));
    w.add_kv(general::FILE_TYPE, Value::U32(file_type(dtype)));
    w.add_kv(k(LlmKey::ContextLength), u32v(shape.n_ctx));
    w.add_kv(k(LlmKey::EmbeddingLength), u32v(shape.n_embd));
    w.add_kv(k(LlmKey::BlockCount), u32v(shape.n_layer));
    w.add_kv(k(LlmKey::FeedForwardLength), u32v(shape.n_ff));
    w.add_kv(k(LlmKey::HeadCount), u32v(shape.n_head));
    w.add_kv(k(LlmKey::HeadCountKv), u32v(shape.n_head_kv));
    w.add_kv(k(LlmKey::RopeDimensionCount), u32v(shape.n_embd / shape.n_head));
    w.add_kv(k(LlmKey::RopeFreqBase), Value::F32(shape.rope_base));
    w.add_kv(k(LlmKey::RmsEps), Value::F32(1e-5));
    w.add_kv(k(LlmKey::VocabSize), u32v(shape.n_vocab));
    let mut extra = if opts.image_tokens { lfm2_image_tokens(MAX_GRID_TILES) } else { Vec::new() };
    extra.extend(shape.family_tokens.map(family_image_tokens).unwrap_or_default());
    let (tokens, types) = vocabulary(shape, &extra)?;
    w.add_kv(tok::MODEL, Value::Str("gpt2".into()));
    w.add_kv(tok::PRE, Value::Str("default".into()));
    w.add_kv(tok::TOKENS, Value::Array(Array::Str(tokens)));
    w.add_kv(tok::TOKEN_TYPE, Value::Array(Array::I32(types)));
    w.add_kv(tok::MERGES, Value::Array(Array::Str(Vec::new())));
    w.add_kv(SpecialToken::Bos.key(), Value::U32(EOT_ID));
    w.add_kv(SpecialToken::Eos.key(), Value::U32(EOT_ID));
    w.add_kv(tok::ADD_BOS, Value::Bool(false));
    Ok(())
}

/// Every tensor of `shape` in file order, matrices stored as `dtype`.
pub fn tensor_specs(shape: &LlamaShape, dtype: DType) -> Vec<TensorSpec> {
    let (d, ff, v) = (shape.n_embd as u64, shape.n_ff as u64, shape.n_vocab as u64);
    let kvd = (shape.n_embd / shape.n_head * shape.n_head_kv) as u64;
    // Uniform in [-a, a] has variance a^2 / 3: a = sqrt(3 / cols) keeps products near unit scale.
    let mat = |name: String, cols: u64, rows: u64| TensorSpec {
        name,
        dims: vec![cols, rows],
        dtype,
        scale: (3.0 / cols as f32).sqrt(),
    };
    let norm = |name: String| TensorSpec { name, dims: vec![d], dtype: DType::F32, scale: -1.0 };
    let mut out = vec![TensorSpec { name: llm::TOKEN_EMBD.into(), dims: vec![d, v], dtype, scale: 1.0 }];
    let bias = |name: String, n: u64| TensorSpec { name, dims: vec![n], dtype: DType::F32, scale: 0.1 };
    for l in 0..shape.n_layer {
        out.push(norm(Block::AttnNorm.name(l)));
        out.push(mat(Block::AttnQ.name(l), d, d));
        out.push(mat(Block::AttnK.name(l), d, kvd));
        out.push(mat(Block::AttnV.name(l), d, kvd));
        if shape.arch == ARCH_QWEN2 {
            out.push(bias(Block::AttnQBias.name(l), d));
            out.push(bias(Block::AttnKBias.name(l), kvd));
            out.push(bias(Block::AttnVBias.name(l), kvd));
        }
        out.push(mat(Block::AttnOutput.name(l), d, d));
        out.push(norm(Block::FfnNorm.name(l)));
        out.push(mat(Block::FfnGate.name(l), d, ff));
        out.push(mat(Block::FfnUp.name(l), d, ff));
        out.push(mat(Block::FfnDown.name(l), ff, d));
    }
    out.push(norm(llm::OUTPUT_NORM.into()));
    if !shape.tied_output {
        out.push(mat(llm::OUTPUT.into(), d, v));
    }
    out
}

/// Builds the GGUF of `shape` with matrices stored as `dtype` and weights drawn from `seed`;
/// `progress(done, total)` is called after each tensor.
pub fn build_llama(
    shape: &LlamaShape,
    dtype: DType,
    seed: u64,
    opts: LlamaOptions,
    progress: impl FnMut(usize, usize),
) -> Result<GgufWriter, LlmGenError> {
    let mut w = GgufWriter::new();
    add_metadata(&mut w, shape, dtype, opts)?;
    add_random_tensors(&mut w, &tensor_specs(shape, dtype), seed, progress)?;
    Ok(w)
}

/// Writes the random LLaMA-architecture model `preset` (see [`PRESETS`]) with matrices stored as
/// `dtype` to `path` atomically (a part file renamed into place).
pub fn write_llama(
    preset_name: &str,
    dtype: DType,
    seed: u64,
    opts: LlamaOptions,
    path: &Path,
    progress: impl FnMut(usize, usize),
) -> Result<(), LlmGenError> {
    let shape = preset(preset_name).ok_or_else(|| LlmGenError::UnknownPreset {
        name: preset_name.to_string(),
        known: PRESETS.iter().map(|p| p.name).collect::<Vec<_>>().join(", "),
    })?;
    // The destination first: a path that cannot be written is an error before the model is built.
    let file = create(path)?;
    build_llama(&shape, dtype, seed, opts, progress)?.write_to_file(file).map_err(GenError::from)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_chars_are_gpt2s_mapping() {
        // Spot values of GPT-2's bytes_to_unicode table.
        assert_eq!(byte_char(b'A'), 'A');
        assert_eq!(byte_char(b' '), '\u{120}');
        assert_eq!(byte_char(b'\n'), '\u{10A}');
        assert_eq!(byte_char(0), '\u{100}');
        assert_eq!(byte_char(0xAD), '\u{143}');
        let all: std::collections::HashSet<char> = (0..=255u8).map(byte_char).collect();
        assert_eq!(all.len(), 256);
    }

    #[test]
    fn bluelm_shape_has_the_published_parameter_count() {
        let shape = preset("bluelm-v-3b").unwrap();
        let n: u64 = tensor_specs(&shape, DType::Q4_0).iter().map(|s| s.dims.iter().product::<u64>()).sum();
        assert!((2_700_000_000..2_750_000_000).contains(&n), "{n}");
    }

    #[test]
    fn unknown_preset_is_named() {
        let e = write_llama(
            "nope",
            DType::Q4_0,
            1,
            LlamaOptions::default(),
            Path::new("/nonexistent/x"),
            |_, _| {},
        )
        .unwrap_err();
        assert!(e.to_string().contains("nope"));
    }

    #[test]
    fn family_llms_hold_their_image_tokens_and_qwen2_biases() {
        let internvl = preset("internvl3-1b").unwrap();
        let (tokens, _) = vocabulary(&internvl, &family_image_tokens(VisionFamily::InternVl)).unwrap();
        for t in ["<img>", "</img>", "<IMG_CONTEXT>"] {
            assert!(tokens.iter().any(|x| x == t), "{t}");
        }
        let specs = tensor_specs(&internvl, DType::Q8_0);
        assert!(specs.iter().any(|s| s.name == "blk.23.attn_k.bias" && s.dims == vec![128]));
        let smol = preset("smolvlm-256m").unwrap();
        let (tokens, _) = vocabulary(&smol, &family_image_tokens(VisionFamily::Idefics3)).unwrap();
        for t in ["<fake_token_around_image>", "<image>", "<global-img>", "<row_1_col_1>", "<row_6_col_6>"] {
            assert!(tokens.iter().any(|x| x == t), "{t}");
        }
        assert!(!tensor_specs(&smol, DType::Q8_0).iter().any(|s| s.name.ends_with(".bias")));
    }

    #[test]
    fn image_tokens_are_control_tokens_after_endoftext() {
        let shape = preset("tiny").unwrap();
        let extra = lfm2_image_tokens(MAX_GRID_TILES);
        let (tokens, types) = vocabulary(&shape, &extra).unwrap();
        assert_eq!(tokens.len(), shape.n_vocab);
        assert_eq!(tokens[257], "<|image_start|>");
        assert_eq!(&tokens[257..257 + extra.len()], &extra[..]);
        assert!(types[256..257 + extra.len()].iter().all(|&t| t == TOKEN_CONTROL));
        assert!(types[257 + extra.len()..].iter().all(|&t| t == TOKEN_NORMAL));
        let small = LlamaShape { n_vocab: 300, ..shape };
        let e = vocabulary(&small, &extra).unwrap_err().to_string();
        assert!(e.contains("300") && e.contains("310"), "{e}");
    }
}
