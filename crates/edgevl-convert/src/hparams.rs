//! Decoder hyper-parameters from `config.json`, read as llama.cpp's converter reads them: through
//! transformers' config class, so a field the file leaves out takes transformers' default.

use edgevl_arch::family::VisionFamily;
use edgevl_arch::hf::{config as cfg, vision, HfArch};
use edgevl_arch::{general, llm, llm::Block, llm::LlmKey};
use edgevl_gguf::{Metadata, Value};
use serde_json::{Map, Value as Json};

use crate::checkpoint::JsonFile;
use crate::error::{ConvertError, Result};
use crate::rope::Llama3Rope;

/// transformers' defaults for the fields a converter reads (`LlamaConfig`, `Qwen2Config`).
struct Defaults {
    vocab: u64,
    n_embd: u64,
    n_ff: u64,
    n_layer: u64,
    n_head: u64,
    n_ctx: u64,
    /// `head_dim` appears in `to_dict()` (LlamaConfig sets it to hidden / heads).
    head_dim_in_dict: bool,
}

fn defaults(arch: HfArch) -> Defaults {
    match arch {
        HfArch::Llama => Defaults {
            vocab: 32000,
            n_embd: 4096,
            n_ff: 11008,
            n_layer: 32,
            n_head: 32,
            n_ctx: 2048,
            head_dim_in_dict: true,
        },
        HfArch::Qwen2 => Defaults {
            vocab: 151936,
            n_embd: 4096,
            n_ff: 22016,
            n_layer: 32,
            n_head: 32,
            n_ctx: 32768,
            head_dim_in_dict: false,
        },
    }
}
const DEFAULT_RMS_EPS: f64 = 1e-6;
const DEFAULT_ROPE_THETA: f64 = 10000.0;
/// Largest width, block, head or context count edgevl's decoder loader accepts.
const MAX_DIM: u64 = edgevl_model::MAX_DIM;
/// Widest attention head the decoder loader accepts.
const MAX_HEAD_DIM: u64 = edgevl_model::MAX_HEAD_DIM as u64;
/// Largest vocabulary edgevl's tokenizer loads (edgevl-tokenizer's `MAX_VOCAB`); it also bounds the
/// padding of the token list up to `vocab_size`.
const MAX_VOCAB: u64 = 1 << 22;

/// The sign a float hyper-parameter must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sign {
    /// Greater than zero (RoPE base and scale, LayerNorm epsilon).
    Positive,
    /// Zero or more (RMSNorm epsilon).
    NonNegative,
}

/// Checks a float hyper-parameter as edgevl's loaders check the f32 the GGUF stores: finite once
/// rounded to f32 (1e300 would become infinity) and of `sign` (a tiny positive value must not round
/// to zero); the error message otherwise.
pub fn check_f32(x: f64, sign: Sign) -> std::result::Result<f64, String> {
    let f = x as f32;
    let ok = f.is_finite()
        && match sign {
            Sign::Positive => f > 0.0,
            Sign::NonNegative => f >= 0.0,
        };
    if ok {
        Ok(x)
    } else {
        let want = match sign {
            Sign::Positive => "> 0",
            Sign::NonNegative => ">= 0",
        };
        Err(format!("{x:?} is not a finite number {want} that fits in f32"))
    }
}

/// Hyper-parameters of a LLaMA-family decoder.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmParams {
    /// The architecture.
    pub arch: HfArch,
    /// Blocks.
    pub n_layer: u64,
    /// Training context.
    pub n_ctx: u64,
    /// Hidden width.
    pub n_embd: u64,
    /// FFN width.
    pub n_ff: u64,
    /// Query heads.
    pub n_head: u64,
    /// Key/value heads.
    pub n_head_kv: u64,
    /// Width of one head.
    pub head_dim: u64,
    /// Whether `head_dim` is written as key/value length (llama.cpp writes it when the config has it).
    pub write_head_dim: bool,
    /// RoPE base.
    pub rope_theta: f64,
    /// RMSNorm epsilon.
    pub rms_eps: f64,
    /// Linear RoPE scaling factor, if any.
    pub rope_linear_factor: Option<f64>,
    /// Llama 3.1's RoPE scaling, written as the tensor `rope_freqs.weight` (no metadata key).
    pub rope_llama3: Option<Llama3Rope>,
    /// Vocabulary size.
    pub vocab_size: u64,
    /// Output tied to the token embedding.
    pub tie_word_embeddings: bool,
}

/// The language model's config inside a multimodal `config.json`: `text_config`, or InternVL's
/// `llm_config` (llama.cpp reads it as `text_config`).
pub fn text_config(config: &JsonFile) -> Option<&Map<String, Json>> {
    [cfg::TEXT_CONFIG, vision::config::LLM_CONFIG].iter().find_map(|k| config.root.get(*k)?.as_object())
}

/// The config with the text config merged over the root, as llama.cpp does for multimodal checkpoints.
pub fn merged(config: &JsonFile) -> Map<String, Json> {
    let mut m = config.root.clone();
    if let Some(text) = text_config(config) {
        for (k, v) in text {
            m.insert(k.clone(), v.clone());
        }
    }
    m
}

/// What `config.json` says the checkpoint is: its decoder, and for a vision-language checkpoint
/// the family of its vision side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Architecture {
    /// The decoder.
    pub llm: HfArch,
    /// The vision family, for a vision-language checkpoint.
    pub vision: Option<VisionFamily>,
}

/// The architecture named by `architectures[0]`; for a vision-language model, its decoder is the
/// one the text config's `architectures[0]` names (as llama.cpp's `get_model_architecture`).
pub fn architecture(config: &JsonFile) -> Result<Architecture> {
    let first = |m: &Map<String, Json>| -> Option<String> {
        m.get(cfg::ARCHITECTURES)?.as_array()?.first()?.as_str().map(str::to_string)
    };
    let name = first(&config.root).ok_or_else(|| ConvertError::Config {
        path: config.path.clone(),
        field: cfg::ARCHITECTURES.into(),
        message: "missing, or not a list of names".into(),
    })?;
    let unknown = |name: String| ConvertError::UnknownArchitecture {
        path: config.path.clone(),
        name,
        known: HfArch::ALL
            .iter()
            .map(|(_, n)| *n)
            .chain(vision::ARCHITECTURES.iter().map(|(n, _)| *n))
            .collect::<Vec<_>>()
            .join(", "),
    };
    if let Some(arch) = HfArch::from_name(&name) {
        return Ok(Architecture { llm: arch, vision: None });
    }
    let Some(family) = vision::family_of(&name) else {
        return Err(unknown(name));
    };
    let llm = match text_config(config).and_then(first) {
        Some(text) => HfArch::from_name(&text).ok_or_else(|| unknown(text))?,
        // SmolVLM's decoder is a LLaMA (llama.cpp then maps the top-level name to it).
        None if family == VisionFamily::Idefics3 => HfArch::Llama,
        None => {
            return Err(ConvertError::Config {
                path: config.path.clone(),
                field: format!("{}.{}", cfg::TEXT_CONFIG, cfg::ARCHITECTURES),
                message: format!("a {name} checkpoint must name its decoder (e.g. LlamaForCausalLM)"),
            })
        }
    };
    Ok(Architecture { llm, vision: Some(family) })
}

/// The first of `keys` present (and not null) in `m`.
fn find<'a>(m: &'a Map<String, Json>, keys: &[&'static str]) -> Option<(&'static str, &'a Json)> {
    keys.iter().find_map(|k| m.get(*k).filter(|v| !v.is_null()).map(|v| (*k, v)))
}

impl LlmParams {
    /// Reads the decoder's hyper-parameters from `config`.
    pub fn from_config(config: &JsonFile, arch: HfArch) -> Result<Self> {
        let m = merged(config);
        let d = defaults(arch);
        let bad = |field: &str, message: String| ConvertError::Config {
            path: config.path.clone(),
            field: field.to_string(),
            message,
        };
        // A count in 1..=max: zero makes no model, and the loader refuses more than `max`.
        let count = |keys: &[&'static str], default: u64, max: u64| -> Result<u64> {
            match find(&m, keys) {
                None => Ok(default),
                Some((k, v)) => v
                    .as_u64()
                    .filter(|&x| (1..=max).contains(&x))
                    .ok_or_else(|| bad(k, format!("{v} is not a count in 1..={max}"))),
            }
        };
        let float = |field: &str, value: Option<&Json>, default: f64, sign: Sign| -> Result<f64> {
            let x = match value {
                None => default,
                Some(v) => v.as_f64().ok_or_else(|| bad(field, format!("{v} is not a number")))?,
            };
            check_f32(x, sign).map_err(|message| bad(field, message))
        };
        let n_layer = count(&cfg::N_LAYER, d.n_layer, MAX_DIM)?;
        let n_ctx = count(&cfg::N_CTX, d.n_ctx, MAX_DIM)?;
        let n_embd = count(&cfg::N_EMBD, d.n_embd, MAX_DIM)?;
        let n_ff = count(&cfg::N_FF, d.n_ff, MAX_DIM)?;
        let n_head = count(&cfg::N_HEAD, d.n_head, MAX_DIM)?;
        let n_head_kv = count(&cfg::N_HEAD_KV, n_head, MAX_DIM)?;
        let vocab_size = count(&[cfg::VOCAB_SIZE], d.vocab, MAX_VOCAB)?;
        if n_head % n_head_kv != 0 {
            return Err(bad(
                cfg::N_HEAD_KV[0],
                format!("{n_head} heads cannot share {n_head_kv} key/value heads"),
            ));
        }
        let explicit_head_dim = find(&m, &[cfg::HEAD_DIM]).is_some();
        let head_dim = if explicit_head_dim {
            count(&[cfg::HEAD_DIM], 0, MAX_HEAD_DIM)?
        } else if n_embd % n_head == 0 {
            n_embd / n_head
        } else {
            return Err(bad(cfg::N_HEAD[0], format!("{n_head} heads do not divide the width {n_embd}")));
        };
        // RoPE turns pairs of a head's values (llama.cpp's Q/K permutation splits heads in halves).
        if !(1..=MAX_HEAD_DIM).contains(&head_dim) || head_dim % 2 != 0 {
            let field = if explicit_head_dim { cfg::HEAD_DIM } else { cfg::N_HEAD[0] };
            return Err(bad(field, format!("head width {head_dim} is not even and in 2..={MAX_HEAD_DIM}")));
        }
        let rope = find(&m, &cfg::ROPE_SCALING);
        let rope_obj = rope.and_then(|(k, v)| Some((k, v.as_object()?)));
        let rope_theta = match rope_obj.and_then(|(k, r)| Some((k, r.get("rope_theta")?))) {
            Some((k, t)) => float(&format!("{k}.rope_theta"), Some(t), DEFAULT_ROPE_THETA, Sign::Positive)?,
            None => {
                let (k, t) = find(&m, &cfg::ROPE_THETA).unzip();
                float(k.unwrap_or(cfg::ROPE_THETA[0]), t, DEFAULT_ROPE_THETA, Sign::Positive)?
            }
        };
        let (rms_key, rms) = find(&m, &cfg::RMS_EPS).unzip();
        let rms_eps = float(rms_key.unwrap_or(cfg::RMS_EPS[0]), rms, DEFAULT_RMS_EPS, Sign::NonNegative)?;
        let rope_type =
            rope_obj.and_then(|(_, r)| r.get("rope_type").or_else(|| r.get("type"))).and_then(Json::as_str);
        let factor = rope_obj.and_then(|(k, r)| Some((k, r.get("factor")?)));
        let mut rope_llama3 = None;
        let rope_linear_factor = match (rope_type, factor) {
            (None | Some("default"), _) => None,
            (Some("linear"), Some((k, f))) => {
                Some(float(&format!("{k}.factor"), Some(f), 1.0, Sign::Positive)?)
            }
            (Some("linear"), None) => None,
            // Llama 3.1's scaling, written as `rope_freqs.weight` (llama.cpp's `LlamaModel` only).
            (Some(t), _) if t.eq_ignore_ascii_case("llama3") && arch == HfArch::Llama => {
                let (k, r) = rope_obj.expect("a rope type comes from its object");
                let get = |field: &str, default: f64| -> Result<f64> {
                    let at = format!("{k}.{field}");
                    float(&at, r.get(field), default, Sign::Positive)
                };
                // llama.cpp mirrors a top-level `original_max_position_embeddings` into the object.
                let context = match r.get("original_max_position_embeddings") {
                    Some(_) => get("original_max_position_embeddings", 8192.0)?,
                    None => {
                        let top = m.get("original_max_position_embeddings");
                        float("original_max_position_embeddings", top, 8192.0, Sign::Positive)?
                    }
                };
                rope_llama3 = Some(Llama3Rope {
                    factor: get("factor", 8.0)?,
                    low_freq_factor: get("low_freq_factor", 1.0)?,
                    high_freq_factor: get("high_freq_factor", 4.0)?,
                    original_context: context,
                });
                None
            }
            (Some(t), _) => {
                return Err(bad(
                    "rope_scaling",
                    format!("RoPE scaling type '{t}' is not supported by edgevl convert"),
                ))
            }
        };
        let tie_word_embeddings = m.get(cfg::TIE_WORD_EMBEDDINGS).and_then(Json::as_bool).unwrap_or(false);
        Ok(Self {
            arch,
            n_layer,
            n_ctx,
            n_embd,
            n_ff,
            n_head,
            n_head_kv,
            head_dim,
            write_head_dim: explicit_head_dim || d.head_dim_in_dict,
            rope_theta,
            rms_eps,
            rope_linear_factor,
            rope_llama3,
            vocab_size,
            tie_word_embeddings,
        })
    }

    /// Writes the decoder keys in llama.cpp's order (`TextModel.set_gguf_parameters`, then the
    /// architecture's own), with `general.file_type` among them when given.
    pub fn write_metadata(&self, md: &mut Metadata, file_type: Option<u32>) {
        let a = self.arch.gguf_arch();
        let u = |x: u64| Value::U32(x as u32);
        md.set(LlmKey::BlockCount.of(a), u(self.n_layer));
        md.set(LlmKey::ContextLength.of(a), u(self.n_ctx));
        md.set(LlmKey::EmbeddingLength.of(a), u(self.n_embd));
        md.set(LlmKey::FeedForwardLength.of(a), u(self.n_ff));
        md.set(LlmKey::HeadCount.of(a), u(self.n_head));
        md.set(LlmKey::HeadCountKv.of(a), u(self.n_head_kv));
        if let Some(f) = self.rope_linear_factor {
            md.set(LlmKey::RopeScalingType.of(a), Value::Str("linear".into()));
            md.set(LlmKey::RopeScalingFactor.of(a), Value::F32(f as f32));
        }
        md.set(LlmKey::RopeFreqBase.of(a), Value::F32(self.rope_theta as f32));
        md.set(LlmKey::RmsEps.of(a), Value::F32(self.rms_eps as f32));
        if self.write_head_dim {
            md.set(LlmKey::KeyLength.of(a), u(self.head_dim));
            md.set(LlmKey::ValueLength.of(a), u(self.head_dim));
        }
        if let Some(ft) = file_type {
            md.set(general::FILE_TYPE.to_string(), Value::U32(ft));
        }
        if self.arch == HfArch::Llama {
            md.set(LlmKey::VocabSize.of(a), u(self.vocab_size));
            md.set(LlmKey::RopeDimensionCount.of(a), u(self.head_dim));
        }
    }

    /// The checkpoint (row-major) shape `config.json` implies for a GGUF tensor name, if known.
    pub fn expected_shape(&self, gguf_name: &str) -> Option<Vec<u64>> {
        let (e, q, kv) = (self.n_embd, self.n_head * self.head_dim, self.n_head_kv * self.head_dim);
        match gguf_name {
            llm::TOKEN_EMBD | llm::OUTPUT => return Some(vec![self.vocab_size, e]),
            llm::OUTPUT_NORM => return Some(vec![e]),
            _ => {}
        }
        let rest = gguf_name.strip_prefix("blk.")?;
        let (layer, suffix) = rest.split_once('.')?;
        let layer: u64 = layer.parse().ok()?;
        if layer >= self.n_layer {
            return Some(vec![]);
        }
        let b = Block::ALL.into_iter().find(|b| b.suffix() == suffix)?;
        Some(match b {
            Block::AttnNorm | Block::FfnNorm => vec![e],
            Block::AttnQ => vec![q, e],
            Block::AttnK | Block::AttnV => vec![kv, e],
            Block::AttnQBias => vec![q],
            Block::AttnKBias | Block::AttnVBias => vec![kv],
            Block::AttnOutput => vec![e, q],
            Block::FfnGate | Block::FfnUp => vec![self.n_ff, e],
            Block::FfnDown => vec![e, self.n_ff],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn config(json: &str) -> JsonFile {
        match serde_json::from_str(json).unwrap() {
            Json::Object(root) => JsonFile { path: PathBuf::from("config.json"), root },
            _ => unreachable!(),
        }
    }

    #[test]
    fn transformers_defaults_fill_missing_fields() {
        let c = config(
            r#"{"architectures":["Qwen2ForCausalLM"],"hidden_size":64,"num_attention_heads":4,"num_key_value_heads":2,"intermediate_size":128,"num_hidden_layers":2,"vocab_size":1000}"#,
        );
        let p = LlmParams::from_config(&c, architecture(&c).unwrap().llm).unwrap();
        assert_eq!(
            (p.n_ctx, p.rms_eps, p.rope_theta, p.head_dim, p.write_head_dim),
            (32768, 1e-6, 10000.0, 16, false)
        );
        let c = config(
            r#"{"architectures":["LlamaForCausalLM"],"hidden_size":64,"num_attention_heads":4,"intermediate_size":128,"num_hidden_layers":2,"vocab_size":1000,"rope_scaling":{"rope_type":"yarn","factor":2.0}}"#,
        );
        let e = LlmParams::from_config(&c, HfArch::Llama).unwrap_err().to_string();
        assert!(e.contains("yarn"), "{e}");
        let c = config(r#"{"architectures":["GPTNeoXForCausalLM"]}"#);
        assert!(architecture(&c)
            .unwrap_err()
            .to_string()
            .contains("unknown architecture 'GPTNeoXForCausalLM'"));
    }

    #[test]
    fn values_the_loader_refuses_name_the_field_they_come_from() {
        let base = r#""architectures":["LlamaForCausalLM"],"hidden_size":64,"num_attention_heads":4,"intermediate_size":128,"num_hidden_layers":2,"vocab_size":1000"#;
        for (extra, field) in [
            // 60 / 4 = 15: an odd head width has no RoPE pairs (llama.cpp's permute cannot split it).
            (r#""hidden_size":60"#, "num_attention_heads"),
            (r#""hidden_size":66"#, "num_attention_heads"),
            (r#""rope_theta":1e-50"#, "rope_theta"),
            (r#""rope_parameters":{"rope_type":"default","rope_theta":-1}"#, "rope_parameters.rope_theta"),
            (r#""rope_scaling":{"type":"linear","factor":-2}"#, "rope_scaling.factor"),
            (r#""norm_eps":"small""#, "norm_eps"),
        ] {
            let c = config(&format!("{{{base},{extra}}}"));
            let e = LlmParams::from_config(&c, HfArch::Llama).unwrap_err().to_string();
            assert!(e.contains(&format!("field '{field}'")), "{extra}: {e}");
        }
        assert_eq!(check_f32(0.0, Sign::NonNegative), Ok(0.0));
        assert!(check_f32(f64::from(f32::MAX) * 2.0, Sign::Positive).is_err());
    }
}
