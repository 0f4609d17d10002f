//! The decoder's file: tensors mapped and checked against `config.json`, types planned, metadata
//! in llama.cpp's order.

use edgevl_arch::hf::{self, HfArch};
use edgevl_arch::{general, llm};
use edgevl_gguf::{GgmlType, Metadata, TensorSpec, Value};

use crate::checkpoint::{Checkpoint, JsonFile};
use crate::error::{ConvertError, Result};
use crate::hparams::{self, LlmParams};
use crate::naming::{self, Naming};
use crate::plan::{self, PlanOptions, Scheme, TypedTensor};
use crate::safetensors::Dtype;
use crate::stream::{PlannedTensor, Rows};
use crate::vocab;

/// GGML's quantisation version, written as `general.quantization_version`.
const QUANTIZATION_VERSION: u32 = 2;

/// A file ready to stream: its metadata and planned tensors.
#[derive(Debug)]
pub struct Job<'a> {
    /// Metadata in write order.
    pub metadata: Metadata,
    /// Tensors in write order.
    pub tensors: Vec<PlannedTensor<'a>>,
}

/// Plans the decoder's GGUF for checkpoint `ck`.
pub fn build<'a>(ck: &'a Checkpoint, opts: &PlanOptions) -> Result<Job<'a>> {
    let (arch, _) = hparams::architecture(&ck.config)?;
    let params = LlmParams::from_config(&ck.config, arch)?;
    let mut mapped: Vec<(
        String,
        Vec<u64>,
        Rows,
        &crate::safetensors::SafetensorsFile,
        &crate::safetensors::TensorView,
    )> = Vec::new();
    for (file, view) in ck.tensors() {
        if hf::SKIPPED_SUFFIXES.iter().any(|s| view.name.ends_with(s)) || hf::is_multimodal_tensor(&view.name)
        {
            continue;
        }
        let mut name = view.name.as_str();
        for p in hf::STRIPPED_PREFIXES {
            if let Some(rest) = name.strip_prefix(p) {
                name = rest;
            }
        }
        let Some(gguf) = hf::llm_tensor(name) else {
            return Err(ConvertError::UnexpectedTensor {
                path: file.path().to_path_buf(),
                tensor: view.name.clone(),
                arch: arch.hf_name().into(),
            });
        };
        if !matches!(view.dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16) {
            return Err(ConvertError::UnsupportedDtype {
                path: file.path().to_path_buf(),
                tensor: view.name.clone(),
                dtype: view.dtype.name().into(),
            });
        }
        if let Some(expected) = params.expected_shape(&gguf) {
            if expected != view.shape {
                return Err(ConvertError::ShapeMismatch {
                    path: file.path().to_path_buf(),
                    tensor: view.name.clone(),
                    expected,
                    found: view.shape.clone(),
                });
            }
        }
        let rows = if arch.permutes_qk() && (name.ends_with("q_proj.weight") || name.ends_with("q_proj.bias"))
        {
            Rows::PermuteQk { n_head: params.n_head }
        } else if arch.permutes_qk() && (name.ends_with("k_proj.weight") || name.ends_with("k_proj.bias")) {
            Rows::PermuteQk { n_head: params.n_head_kv }
        } else {
            Rows::AsIs
        };
        let ne: Vec<u64> = view.shape.iter().rev().copied().collect();
        mapped.push((gguf, ne, rows, file, view));
    }
    check_complete(ck, arch, &params, &mapped.iter().map(|m| m.0.as_str()).collect::<Vec<_>>())?;

    let typed: Vec<TypedTensor> = mapped.iter().map(|(n, ne, ..)| TypedTensor { name: n, ne }).collect();
    let types = plan::plan(opts, &typed, params.n_layer);
    let tensors: Vec<PlannedTensor> = mapped
        .into_iter()
        .zip(types)
        .map(|((name, ne, rows, file, view), ggml_type)| PlannedTensor {
            spec: TensorSpec { name, ggml_type, dims: ne },
            file,
            view,
            rows,
        })
        .collect();

    let total_params: u64 = tensors.iter().map(|t| t.view.n_elements()).sum();
    let mut md = Metadata::new();
    md.set(general::ARCHITECTURE.into(), Value::Str(arch.gguf_arch().into()));
    md.set(general::TYPE.into(), Value::Str("model".into()));
    if let Some(gen) = JsonFile::read_optional(&ck.dir().join("generation_config.json")).ok().flatten() {
        naming::write_sampling(&mut md, &gen.root);
    }
    let merged = hparams::merged(&ck.config);
    Naming::derive(ck.dir(), &merged, total_params).write(&mut md);
    // llama-quantize re-sets these two keys after copying the converter's, which moves them last.
    let requantized = !matches!(opts.scheme, Scheme::F32 | Scheme::F16 | Scheme::BF16);
    params.write_metadata(&mut md, (!requantized).then(|| opts.file_type()));
    if !requantized {
        md.set(general::QUANTIZATION_VERSION.into(), Value::U32(QUANTIZATION_VERSION));
    }
    vocab::import(ck.dir(), arch, &merged, params.vocab_size, &mut md)?;
    if requantized {
        md.set(general::QUANTIZATION_VERSION.into(), Value::U32(QUANTIZATION_VERSION));
        md.set(general::FILE_TYPE.into(), Value::U32(opts.file_type()));
    }
    if opts.scheme == Scheme::BlueLm {
        md.set(general::EDGEVL_QUANT_SCHEME.into(), Value::Str(Scheme::BlueLm.name().into()));
    }
    Ok(Job { metadata: md, tensors })
}

/// Every tensor the decoder needs is there.
fn check_complete(ck: &Checkpoint, arch: HfArch, p: &LlmParams, names: &[&str]) -> Result<()> {
    let missing = |tensor: String| Err(ConvertError::MissingTensor { dir: ck.dir().to_path_buf(), tensor });
    let has = |n: &str| names.contains(&n);
    for n in [llm::TOKEN_EMBD, llm::OUTPUT_NORM] {
        if !has(n) {
            return missing(n.to_string());
        }
    }
    for layer in 0..p.n_layer as usize {
        for b in llm::Block::ALL {
            let bias = matches!(b, llm::Block::AttnQBias | llm::Block::AttnKBias | llm::Block::AttnVBias);
            if bias && arch != HfArch::Qwen2 {
                continue;
            }
            if !has(&b.name(layer)) {
                return missing(hf::block_tensor_name(layer, b).unwrap_or_else(|| b.name(layer)));
            }
        }
    }
    Ok(())
}

/// The converted file's type of each tensor, for reports.
pub fn summary(job: &Job) -> Vec<(String, GgmlType)> {
    job.tensors.iter().map(|t| (t.spec.name.clone(), t.spec.ggml_type)).collect()
}
