//! edgevl-convert: Hugging Face checkpoints to GGUF.
//!
//! A checkpoint directory (`config.json`, `*.safetensors` or shards with
//! `model.safetensors.index.json`, `tokenizer.json` + `tokenizer_config.json`) becomes the GGUF
//! (and, for a vision-language checkpoint, the mmproj GGUF of `--mmproj`) llama.cpp's
//! `convert_hf_to_gguf.py` would write — same tensor names, order, metadata keys and
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
//!     pre_tokenizer: None,
//! };
//! convert("SmolLM2-135M-Instruct".as_ref(), "smollm2-q4_0.gguf".as_ref(), None, &opts, &mut Silent).unwrap();
//! ```
#![warn(missing_docs)]

mod checkpoint;
mod chkhsh;
mod error;
mod hparams;
mod llm;
mod naming;
mod plan;
mod rope;
pub mod safetensors;
mod stream;
mod vision;
mod vocab;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub use checkpoint::Checkpoint;
pub use error::{ConvertError, Result};
pub use hparams::LlmParams;
pub use naming::{id_to_title, model_id_components, size_label, NameParts};
pub use plan::{fallback, LlmType, PlanOptions, Scheme};
pub use rope::{llama3_factors, Llama3Rope};
pub use stream::{Progress, Silent};
pub use vocab::{chkhsh, pre_tokenizer_name};

use edgevl_arch::family::VisionFamily;
use edgevl_gguf::{AtomicFile, GgmlType};
use stream::Job;

/// Options of a conversion.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    /// Scheme and type rules.
    pub plan: PlanOptions,
    /// Threads that quantise.
    pub threads: usize,
    /// Set to true (e.g. by a Ctrl-C handler) to stop; the output is then not written.
    pub cancel: Option<Arc<AtomicBool>>,
    /// `tokenizer.ggml.pre` for a BPE tokenizer whose hash llama.cpp's table does not know (one of
    /// the table's names); `None`: the table decides.
    pub pre_tokenizer: Option<String>,
}

/// Which file of a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The language model (`-o OUT.gguf`).
    Llm,
    /// The vision tower and projector of a vision-language checkpoint (`--mmproj-out`).
    Mmproj,
}

/// What was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Each tensor's name and type in the language model's file, in file order.
    pub tensors: Vec<(String, GgmlType)>,
    /// The same for the mmproj file (empty when none was asked for).
    pub mmproj_tensors: Vec<(String, GgmlType)>,
}

/// The vision family of the checkpoint, which must be a vision-language one.
fn vision_family(ck: &Checkpoint) -> Result<VisionFamily> {
    let arch = hparams::architecture(&ck.config)?;
    arch.vision.ok_or_else(|| ConvertError::Config {
        path: ck.config.path.clone(),
        field: edgevl_arch::hf::config::ARCHITECTURES.into(),
        message: format!(
            "{} has no vision tower: an mmproj needs a vision-language checkpoint ({})",
            arch.llm.hf_name(),
            edgevl_arch::hf::vision::ARCHITECTURES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        ),
    })
}

/// Plans `part` of the checkpoint.
fn plan_part<'a>(ck: &'a Checkpoint, part: Part, opts: &ConvertOptions) -> Result<Job<'a>> {
    match part {
        Part::Llm => llm::build(ck, &opts.plan, opts.pre_tokenizer.as_deref()),
        Part::Mmproj => vision::build(ck, vision_family(ck)?, &opts.plan),
    }
}

/// Streams `job` into the temporary file of `out`, not yet renamed.
fn write_part(
    out: &Path,
    job: &Job,
    opts: &ConvertOptions,
    progress: &mut dyn Progress,
) -> Result<AtomicFile> {
    let file =
        AtomicFile::create(out).map_err(|source| ConvertError::Io { path: out.to_path_buf(), source })?;
    stream::write_all(file, out, job, opts.threads, opts.cancel.as_deref(), progress)
}

/// Converts the checkpoint in `src` to the decoder GGUF `out` and, when `mmproj_out` is given, its
/// vision tower and projector to that mmproj GGUF. Both files are planned (every check of the
/// checkpoint done) before either is written; each is written to `NAME.part-<pid>` and both are
/// renamed into place only when both are complete; on any error (or cancellation) no part file
/// is left behind and the outputs are as they were (an output that is a directory, one file
/// named for both, or a file of the checkpoint other than a GGUF, is refused before anything is read; should the mmproj's rename fail after the
/// decoder's, the decoder's old file is put back where the file system has hard links).
pub fn convert(
    src: &Path,
    out: &Path,
    mmproj_out: Option<&Path>,
    opts: &ConvertOptions,
    progress: &mut dyn Progress,
) -> Result<Summary> {
    check_destinations(out, mmproj_out)?;
    for path in std::iter::once(out).chain(mmproj_out) {
        refuse_checkpoint_file(src, path)?;
    }
    let ck = Checkpoint::open(src)?;
    let llm_job = plan_part(&ck, Part::Llm, opts)?;
    let mm_job = mmproj_out.map(|p| plan_part(&ck, Part::Mmproj, opts).map(|j| (p, j))).transpose()?;
    let llm_file = write_part(out, &llm_job, opts, progress)?;
    let mm_file = match &mm_job {
        Some((path, job)) => Some((*path, write_part(path, job, opts, progress)?)),
        None => None,
    };
    commit_both(out, llm_file, mm_file)?;
    Ok(Summary {
        tensors: llm_job.summary(),
        mmproj_tensors: mm_job.map(|(_, j)| j.summary()).unwrap_or_default(),
    })
}

/// Refuses, before anything is read or written, an output that is a directory and the same file
/// named for both outputs (the second would replace the first).
fn check_destinations(out: &Path, mmproj_out: Option<&Path>) -> Result<()> {
    for path in std::iter::once(out).chain(mmproj_out) {
        if path.is_dir() {
            return Err(ConvertError::Options(format!("output '{}' is a directory", path.display())));
        }
    }
    if let Some(mm) = mmproj_out {
        if same_file_name(out, mm) {
            return Err(ConvertError::Options(format!(
                "-o and --mmproj-out name the same file '{}'",
                out.display()
            )));
        }
    }
    Ok(())
}

/// Refuses an output that would replace a file of the checkpoint directory `src` other than a
/// GGUF (a weights shard, `config.json`, the tokenizer: writing there destroyed the checkpoint
/// while it was being read). A GGUF there is an earlier conversion's output, replaced as usual.
fn refuse_checkpoint_file(src: &Path, out: &Path) -> Result<()> {
    let Ok(target) = std::fs::metadata(out) else { return Ok(()) };
    let Ok(entries) = std::fs::read_dir(src) else { return Ok(()) };
    let is_target = |p: &Path| std::fs::metadata(p).is_ok_and(|m| same_file(&m, &target, p, out));
    if !entries.flatten().any(|e| is_target(&e.path())) {
        return Ok(());
    }
    let mut magic = [0u8; 4];
    let is_gguf =
        std::fs::File::open(out).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && &magic == b"GGUF";
    if is_gguf {
        return Ok(());
    }
    Err(ConvertError::Options(format!(
        "output '{}' is a file of the checkpoint '{}': writing it would destroy the checkpoint; choose another name",
        out.display(),
        src.display()
    )))
}

/// Whether two files (their metadata, and their paths where inodes are not known) are one.
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata, a_path: &Path, b_path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let _ = (a_path, b_path);
        a.is_file() && a.dev() == b.dev() && a.ino() == b.ino()
    }
    #[cfg(not(unix))]
    {
        let _ = b;
        a.is_file() && a_path.canonicalize().ok() == b_path.canonicalize().ok()
    }
}

/// Whether `a` and `b` name the same file: the same name in the same (canonical) directory.
fn same_file_name(a: &Path, b: &Path) -> bool {
    let place = |p: &Path| {
        let dir = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        (dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf()), p.file_name().map(ToOwned::to_owned))
    };
    place(a) == place(b)
}

/// Renames the written files into place, the decoder's first. When the mmproj's rename fails
/// after the decoder's succeeded, the decoder's destination gets back the file it held before
/// (kept as a hard link beside it meanwhile, where the file system has hard links), or is
/// removed if it held none.
fn commit_both(out: &Path, llm: AtomicFile, mmproj: Option<(&Path, AtomicFile)>) -> Result<()> {
    let io = |path: &Path, source| ConvertError::Io { path: path.to_path_buf(), source };
    let Some((mm_path, mm_file)) = mmproj else {
        return llm.commit().map_err(|e| io(out, e));
    };
    // The file the decoder's commit replaces: a link's target, which the commit writes through.
    let target = match std::fs::symlink_metadata(out) {
        Ok(m) if m.file_type().is_symlink() => {
            std::fs::canonicalize(out).unwrap_or_else(|_| out.to_path_buf())
        }
        _ => out.to_path_buf(),
    };
    let mut backup = target.as_os_str().to_owned();
    backup.push(format!(".old-{}", std::process::id()));
    let backup = PathBuf::from(backup);
    let _ = std::fs::remove_file(&backup);
    let kept = std::fs::hard_link(&target, &backup).is_ok();
    let restore = || {
        if kept {
            let _ = std::fs::rename(&backup, &target);
        } else {
            let _ = std::fs::remove_file(&target);
        }
    };
    if let Err(source) = llm.commit() {
        if kept {
            let _ = std::fs::remove_file(&backup);
        }
        return Err(io(out, source));
    }
    if let Err(source) = mm_file.commit() {
        restore();
        return Err(io(mm_path, source));
    }
    if kept {
        let _ = std::fs::remove_file(&backup);
    }
    Ok(())
}

/// Converts `part` of the checkpoint in `src` and writes the GGUF bytes to `sink` (`label` names it
/// in errors); returns the sink and each tensor's name and type.
pub fn convert_to_writer<W: Write>(
    src: &Path,
    part: Part,
    sink: W,
    label: &Path,
    opts: &ConvertOptions,
    progress: &mut dyn Progress,
) -> Result<(W, Vec<(String, GgmlType)>)> {
    let ck = Checkpoint::open(src)?;
    let job = plan_part(&ck, part, opts)?;
    let sink = stream::write_all(sink, label, &job, opts.threads, opts.cancel.as_deref(), progress)?;
    Ok((sink, job.summary()))
}
