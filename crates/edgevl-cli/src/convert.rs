//! `edgevl convert`: a Hugging Face checkpoint to GGUF with a precision scheme.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use edgevl_convert::{convert, ConvertOptions, LlmType, PlanOptions, Progress, Scheme};
use edgevl_gguf::GgmlType;
use indicatif::{ProgressBar, ProgressStyle};

/// Arguments of `edgevl convert`.
#[derive(Args)]
pub struct ConvertArgs {
    /// Hugging Face checkpoint directory (config.json, *.safetensors, tokenizer files).
    src: PathBuf,
    /// Output GGUF (the decoder).
    #[arg(short = 'o', long = "out")]
    out: PathBuf,
    /// Output GGUF of the vision tower and projector (mmproj) of a vision-language checkpoint
    /// (this project's layout, InternVL, SmolVLM); written as llama.cpp's `--mmproj` writes it.
    #[arg(long)]
    mmproj_out: Option<PathBuf>,
    /// tokenizer.ggml.pre for a BPE tokenizer llama.cpp's hash table does not know (e.g. `qwen2`,
    /// `smollm`, `llama-bpe`): the pre-tokenizer it was trained with.
    #[arg(long)]
    pre_tokenizer: Option<String>,
    /// Precision: f32, f16, bf16, q8_0, q4_0, q4_1, q4_k (llama-quantize's Q4_K_M), or bluelm (the paper's mix).
    #[arg(long, default_value = "q8_0")]
    scheme: String,
    /// bluelm only: 4-bit type of the LLM's linear weights, q4_0 (default) or q4_k.
    #[arg(long)]
    llm_type: Option<String>,
    /// Every quantisable tensor the scheme's type (llama-quantize --pure).
    #[arg(long)]
    pure: bool,
    /// Threads that quantise (default: physical cores).
    #[arg(short = 't', long, value_parser = crate::counts::threads)]
    threads: Option<usize>,
}

/// Progress on stderr: a bar on a terminal, one line per tensor otherwise.
struct Report {
    bar: Option<ProgressBar>,
    n: usize,
    start: Instant,
}

impl Progress for Report {
    fn start(&mut self, out: &Path, n_tensors: usize, total_bytes: u64) {
        self.n = n_tensors;
        eprintln!(
            "edgevl convert: {n_tensors} tensors, {:.1} MiB -> {}",
            total_bytes as f64 / 1048576.0,
            out.display()
        );
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total_bytes);
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg:40!} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            self.bar = Some(bar);
        }
    }
    fn tensor(&mut self, index: usize, name: &str, ggml_type: GgmlType, source: &str) {
        let msg = format!("[{}/{}] {name} {source} -> {ggml_type}", index + 1, self.n);
        match &self.bar {
            Some(bar) => bar.set_message(msg),
            None => eprintln!("{msg}"),
        }
    }
    fn advance(&mut self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }
    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        eprintln!("edgevl convert: done in {:.1} s", self.start.elapsed().as_secs_f64());
    }
}

/// Runs `edgevl convert`.
pub fn run(a: &ConvertArgs) -> Result<()> {
    let Some(scheme) = Scheme::parse(&a.scheme) else {
        let names: Vec<&str> = Scheme::ALL.iter().map(|(_, n)| *n).collect();
        bail!("unknown --scheme '{}' (one of: {})", a.scheme, names.join(", "));
    };
    let llm_type = match (&a.llm_type, scheme) {
        (None, _) => LlmType::Q4_0,
        (Some(t), Scheme::BlueLm) => {
            LlmType::parse(t).with_context(|| format!("unknown --llm-type '{t}' (q4_0 or q4_k)"))?
        }
        (Some(_), _) => bail!("--llm-type goes only with --scheme bluelm"),
    };
    // Ctrl-C, SIGTERM and SIGHUP cancel the conversion: its threads stop and its part files go;
    // the process then ends with 128 + the signal's number, as the other commands do.
    let cancel = Arc::new(AtomicBool::new(false));
    let signalled = Arc::new(AtomicUsize::new(0));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP] {
        signal_hook::flag::register_usize(signal, signalled.clone(), signal as usize)
            .context("installing the signal handlers")?;
        signal_hook::flag::register(signal, cancel.clone()).context("installing the signal handlers")?;
    }
    let opts = ConvertOptions {
        plan: PlanOptions { scheme, llm_type, pure: a.pure },
        threads: a.threads.unwrap_or_else(edgevl_runtime::physical_cores),
        cancel: Some(cancel),
        pre_tokenizer: a.pre_tokenizer.clone(),
    };
    let mut report = Report { bar: None, n: 0, start: Instant::now() };
    let summary = match convert(&a.src, &a.out, a.mmproj_out.as_deref(), &opts, &mut report) {
        Err(e @ edgevl_convert::ConvertError::Cancelled { .. }) => {
            eprintln!("edgevl: {e}");
            // (0 when no signal was recorded, which a cancel without one cannot be: taken as SIGINT's.)
            let signal = match signalled.load(Ordering::Relaxed) {
                0 => signal_hook::consts::SIGINT,
                n => n as i32,
            };
            std::process::exit(128 + signal);
        }
        result => result?,
    };
    report_types(&a.out, &summary.tensors);
    if let Some(m) = &a.mmproj_out {
        report_types(m, &summary.mmproj_tensors);
    }
    Ok(())
}

/// "wrote FILE (N TYPE, ...)" on stderr.
fn report_types(path: &Path, tensors: &[(String, GgmlType)]) {
    let mut counts: Vec<(GgmlType, usize)> = Vec::new();
    for (_, t) in tensors {
        match counts.iter_mut().find(|(x, _)| x == t) {
            Some(c) => c.1 += 1,
            None => counts.push((*t, 1)),
        }
    }
    let types: Vec<String> = counts.iter().map(|(t, n)| format!("{n} {t}")).collect();
    eprintln!("edgevl convert: wrote {} ({})", path.display(), types.join(", "));
}
