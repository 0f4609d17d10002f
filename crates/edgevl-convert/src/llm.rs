//! The decoder's file: tensors mapped and checked against `config.json`, types planned, metadata
//! in llama.cpp's order.

use edgevl_arch::hf::{self, HfArch};
use edgevl_arch::{general, llm};
use edgevl_gguf::{Metadata, TensorSpec, Value};

use crate::checkpoint::{require_float, require_shape, Checkpoint};
use crate::error::{ConvertError, Result};
use crate::hparams::{self, LlmParams};
use crate::naming;
use crate::plan::{self, PlanOptions, Scheme, TypedTensor};
use crate::safetensors::{SafetensorsFile, TensorView};
use crate::stream::{n_params, Job, PlannedTensor, Rows, Source};
use crate::vocab;

/// GGML's quantisation version, written as `general.quantization_version`.
pub const QUANTIZATION_VERSION: u32 = 2;

/// Plans the decoder's GGUF for checkpoint `ck`; `pre_tokenizer` names `tokenizer.ggml.pre` for a
/// tokenizer llama.cpp's hash table does not know.
pub fn build<'a>(ck: &'a Checkpoint, opts: &PlanOptions, pre_tokenizer: Option<&str>) -> Result<Job<'a>> {
    let arch = hparams::architecture(&ck.config)?.llm;
    let params = LlmParams::from_config(&ck.config, arch)?;
    let mut mapped: Vec<(String, Vec<u64>, Rows, &SafetensorsFile, &TensorView)> = Vec::new();
    for (file, view) in ck.tensors() {
        if hf::SKIPPED_SUFFIXES.iter().any(|s| view.name.ends_with(s)) || hf::is_multimodal_tensor(&view.name)
        {
            continue;
        }
        let name = hf::STRIPPED_PARTS.iter().fold(view.name.clone(), |n, p| n.replace(p, ""));
        let name = name.as_str();
        let Some(gguf) = hf::llm_tensor(name) else {
            return Err(ConvertError::UnexpectedTensor {
                path: file.path().to_path_buf(),
                tensor: view.name.clone(),
                arch: arch.hf_name().into(),
            });
        };
        require_float(file, view)?;
        if let Some(expected) = params.expected_shape(&gguf) {
            require_shape(file, view, expected)?;
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
    // llama.cpp's extra tensors come first (`generate_extra_tensors`), F32 as every 1-D tensor.
    let extra = params.rope_llama3.map(|p| {
        let factors = crate::rope::llama3_factors(params.rope_theta, params.head_dim, &p);
        PlannedTensor {
            spec: TensorSpec {
                name: llm::ROPE_FREQS.into(),
                ggml_type: edgevl_gguf::GgmlType::F32,
                dims: vec![factors.len() as u64],
            },
            source: Source::Computed(factors),
            rows: Rows::AsIs,
        }
    });
    let tensors: Vec<PlannedTensor> = extra
        .into_iter()
        .chain(mapped.into_iter().zip(types).map(|((name, ne, rows, file, view), ggml_type)| PlannedTensor {
            spec: TensorSpec { name, ggml_type, dims: ne },
            source: Source::Mapped { file, view },
            rows,
        }))
        .collect();

    let mut md = Metadata::new();
    // The naming reads the root config.json (gguf-py's metadata reads the raw file): a
    // vision-language checkpoint's text config names the LLM it started from, not this model.
    naming::write_header(
        &mut md,
        ck.dir(),
        arch.gguf_arch(),
        general::TYPE_MODEL,
        &ck.config.root,
        n_params(&tensors),
    );
    // llama-quantize re-sets these two keys after copying the converter's, which moves them last.
    let requantized = !matches!(opts.scheme, Scheme::F32 | Scheme::F16 | Scheme::BF16);
    params.write_metadata(&mut md, (!requantized).then(|| opts.file_type()));
    if !requantized {
        md.set(general::QUANTIZATION_VERSION.into(), Value::U32(QUANTIZATION_VERSION));
    }
    // Special token ids: config.json's root, then its `text_config` (gguf-py's SpecialVocab).
    vocab::import(ck.dir(), arch, &ck.config.root, params.vocab_size, pre_tokenizer, &mut md)?;
    if requantized {
        md.set(general::QUANTIZATION_VERSION.into(), Value::U32(QUANTIZATION_VERSION));
        md.set(general::FILE_TYPE.into(), Value::U32(opts.file_type()));
    }
    if opts.scheme == Scheme::BlueLm {
        md.set(general::EDGEVL_QUANT_SCHEME.into(), Value::Str(Scheme::BlueLm.name().into()));
    }
    edgevl_model::DecoderHparams::try_from(&md).map_err(|e| ConvertError::Unloadable {
        path: ck.config.path.clone(),
        what: "LLM",
        message: e.to_string(),
    })?;
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
