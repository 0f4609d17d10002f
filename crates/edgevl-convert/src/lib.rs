//! edgevl-convert: Hugging Face checkpoints to GGUF.
//!
//! A checkpoint directory (`config.json`, `*.safetensors` or shards with
//! `model.safetensors.index.json`, `tokenizer.json` + `tokenizer_config.json`) becomes the GGUF
//! llama.cpp's `convert_hf_to_gguf.py` would write — same tensor names, order, metadata keys and
//! values — with the tensor types `llama-quantize` would then choose for the scheme, in one pass:
//! tensors are read through mmap, converted a slab of rows at a time on several threads and
//! appended to a temporary file beside the output, renamed into place only when complete.
//!
//! ```no_run
//! use edgevl_convert::{convert, ConvertOptions, PlanOptions, Scheme, LlmType, Silent};
//! let opts = ConvertOptions {
//!     plan: PlanOptions { scheme: Scheme::Q4_0, llm_type: LlmType::Q4_0, pure: false },
//!     threads: 2,
//!     cancel: None,
//! };
//! convert("SmolLM2-135M-Instruct".as_ref(), "smollm2-q4_0.gguf".as_ref(), &opts, &mut Silent).unwrap();
//! ```
#![warn(missing_docs)]

mod checkpoint;
mod chkhsh;
mod error;
mod hparams;
mod llm;
mod naming;
mod plan;
pub mod safetensors;
mod stream;
mod vocab;

use std::io::Write;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub use checkpoint::Checkpoint;
pub use error::{ConvertError, Result};
pub use hparams::LlmParams;
pub use naming::{id_to_title, model_id_components, size_label, NameParts};
pub use plan::{fallback, LlmType, PlanOptions, Scheme};
pub use stream::{Progress, Silent};
pub use vocab::{chkhsh, pre_tokenizer_name};

use edgevl_gguf::{AtomicFile, GgmlType};

/// Options of a conversion.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    /// Scheme and type rules.
    pub plan: PlanOptions,
    /// Threads that quantise.
    pub threads: usize,
    /// Set to true (e.g. by a Ctrl-C handler) to stop; the output is then not written.
    pub cancel: Option<Arc<AtomicBool>>,
}

/// What was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Each tensor's name and type, in file order.
    pub tensors: Vec<(String, GgmlType)>,
}

/// Converts the checkpoint in `src` to the decoder GGUF `out`: written to `OUT.part-<pid>` and
/// renamed onto `out` when complete; on any error (or cancellation) neither is left behind.
pub fn convert(
    src: &Path,
    out: &Path,
    opts: &ConvertOptions,
    progress: &mut dyn Progress,
) -> Result<Summary> {
    let ck = Checkpoint::open(src)?;
    let job = llm::build(&ck, &opts.plan)?;
    let file =
        AtomicFile::create(out).map_err(|source| ConvertError::Io { path: out.to_path_buf(), source })?;
    let file = stream::write_all(
        file,
        out,
        &job.metadata,
        &job.tensors,
        opts.threads,
        opts.cancel.as_deref(),
        progress,
    )?;
    file.commit().map_err(|source| ConvertError::Io { path: out.to_path_buf(), source })?;
    Ok(Summary { tensors: llm::summary(&job) })
}

/// Converts the checkpoint in `src` and writes the GGUF bytes to `sink` (`label` names it in errors).
pub fn convert_to_writer<W: Write>(
    src: &Path,
    sink: W,
    label: &Path,
    opts: &ConvertOptions,
    progress: &mut dyn Progress,
) -> Result<(W, Summary)> {
    let ck = Checkpoint::open(src)?;
    let job = llm::build(&ck, &opts.plan)?;
    let sink = stream::write_all(
        sink,
        label,
        &job.metadata,
        &job.tensors,
        opts.threads,
        opts.cancel.as_deref(),
        progress,
    )?;
    Ok((sink, Summary { tensors: llm::summary(&job) }))
}
