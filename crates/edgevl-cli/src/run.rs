//! `edgevl run`: one prompt in, a streamed answer out.

use crate::vision_args::{describe, VisionArgs};
use anyhow::Context;
use clap::Args;
use edgevl_kernels::KernelConfig;
use edgevl_model::KvType;
use edgevl_runtime::{Sampler, SamplerConfig, Session, SessionConfig, TurnStats};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Options shared by every command that loads a text model.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// The LLM (GGUF).
    #[arg(short = 'm', long = "model")]
    pub model: PathBuf,
    /// Threads (default: the number of physical cores).
    #[arg(short = 't', long = "threads", value_parser = crate::counts::threads)]
    pub threads: Option<usize>,
    /// Context size (default: the model's, capped at 4096).
    #[arg(short = 'c', long = "ctx-size", value_parser = crate::counts::context)]
    pub ctx: Option<usize>,
    /// Prompt tokens per prefill pass.
    #[arg(long, default_value_t = 128)]
    pub chunk: usize,
    /// KV cache element type.
    #[arg(long = "cache-type", value_enum, default_value_t = KvTypeArg::F16)]
    pub kv_type: KvTypeArg,
}

/// KV cache element types on the command line.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum KvTypeArg {
    /// Half precision (llama.cpp's default).
    F16,
    /// Single precision.
    F32,
    /// Q8_0 blocks (llama.cpp's `-ctk q8_0 -ctv q8_0`): 53% of the f16 cache's memory; needs
    /// attention heads a multiple of 32 wide.
    #[value(name = "q8_0")]
    Q8_0,
}

impl From<KvTypeArg> for KvType {
    fn from(a: KvTypeArg) -> Self {
        match a {
            KvTypeArg::F16 => KvType::F16,
            KvTypeArg::F32 => KvType::F32,
            KvTypeArg::Q8_0 => KvType::Q8_0,
        }
    }
}

impl ModelArgs {
    /// The session configuration these options describe, with kernel table options `kernels`.
    pub fn session_config(&self, kernels: KernelConfig) -> SessionConfig {
        let mut cfg = SessionConfig {
            n_ctx: self.ctx,
            chunk: self.chunk,
            kv_type: self.kv_type.into(),
            kernels,
            ..SessionConfig::default()
        };
        if let Some(t) = self.threads {
            cfg.n_threads = t;
        }
        cfg
    }

    /// Load the model into a session with kernel table options `kernels`, naming the file in any error.
    pub fn load(&self, kernels: KernelConfig) -> anyhow::Result<Session> {
        self.load_with(&self.session_config(kernels))
    }

    /// Load the model (and the mmproj of `vision`, if any) into a session.
    pub fn load_with_vision(&self, vision: &VisionArgs, kernels: KernelConfig) -> anyhow::Result<Session> {
        let mut cfg = self.session_config(kernels);
        vision.apply(&mut cfg);
        self.load_with(&cfg)
    }

    fn load_with(&self, cfg: &SessionConfig) -> anyhow::Result<Session> {
        let what = match &cfg.mmproj {
            Some(mm) => format!("model {} with mmproj {}", self.model.display(), mm.display()),
            None => format!("model {}", self.model.display()),
        };
        let session = Session::load(&self.model, cfg).with_context(|| format!("cannot load {what}"))?;
        if session.tokenizer().pre_tokenizer_defaulted() {
            eprintln!("edgevl: {}", edgevl_tokenizer::PRE_DEFAULTED_WARNING);
        }
        Ok(session)
    }
}

/// Sampling options shared by `run` and `chat`.
#[derive(Args, Debug, Clone)]
pub struct GenArgs {
    /// Tokens to generate at most (per turn in chat).
    #[arg(short = 'n', long = "n-predict", default_value_t = 128)]
    pub n_predict: usize,
    /// Temperature (0 or less = greedy).
    #[arg(long, default_value_t = 0.8, allow_negative_numbers = true)]
    pub temp: f32,
    /// Top-k (0 = off).
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Top-p (1.0 = off).
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Min-p (0.0 = off).
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    /// Repeat penalty over the last 64 tokens (1.0 = off).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Seed of the sampler's draws, so a sampled answer repeats (default, or -1, as llama-cli:
    /// a new random seed each run).
    #[arg(long, allow_negative_numbers = true, value_parser = parse_seed)]
    pub seed: Option<u64>,
}

/// A `--seed`: a number from 0 to 2^64-1, or -1 for a random one (as llama-cli's).
fn parse_seed(s: &str) -> Result<u64, String> {
    let n = s.trim().parse::<i128>().map_err(|_| format!("{s:?} is not a number"))?;
    edgevl_runtime::requested_seed(Some(n))
}

impl GenArgs {
    /// A sampler with these settings, or the error naming one the sampling chain cannot use
    /// (checked before the model loads).
    pub fn sampler(&self) -> anyhow::Result<Sampler> {
        let mut cfg = SamplerConfig {
            temp: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            ..SamplerConfig::default()
        };
        cfg.seed = self.seed.unwrap_or_else(edgevl_runtime::random_seed);
        cfg.check().map_err(|e| anyhow::anyhow!("bad setting: {e}"))?;
        Ok(Sampler::new(cfg))
    }
}

/// Arguments of `edgevl run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    gen: GenArgs,
    #[command(flatten)]
    vision: VisionArgs,
    /// An image for the prompt (needs --mmproj; repeat for several). It goes where the prompt
    /// has a <__media__> marker, else in front of the prompt's text.
    #[arg(long, value_name = "FILE")]
    image: Vec<PathBuf>,
    /// The prompt (it may start with '-', as "-p '- a list item'").
    #[arg(
        short = 'p',
        long = "prompt",
        allow_hyphen_values = true,
        required_unless_present = "file",
        conflicts_with = "file"
    )]
    prompt: Option<String>,
    /// Read the prompt from FILE (UTF-8 text; `-` reads stdin), for prompts too long for a
    /// command line.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<PathBuf>,
    /// No chat template: tokenise the prompt as is.
    #[arg(long)]
    raw: bool,
    /// Write timing and memory statistics as JSON to this file.
    #[arg(long)]
    stats_json: Option<PathBuf>,
    #[command(flatten)]
    dump: crate::dump::DumpArgs,
}

/// Run `edgevl run`.
pub fn run(a: &RunArgs, kernels: KernelConfig) -> anyhow::Result<()> {
    if let Some(path) = &a.stats_json {
        check_output_file(path)?;
    }
    a.dump.check()?;
    let mut sampler = a.gen.sampler()?;
    let prompt = match (&a.prompt, &a.file) {
        (Some(p), _) => p.clone(),
        (None, Some(path)) => read_prompt_file(path)?,
        (None, None) => anyhow::bail!("give the prompt with -p TEXT or -f FILE"),
    };
    let mut session = a.model.load_with_vision(&a.vision, kernels)?;
    // Ctrl-C from here stops the answer, which is reported as usual (a second one ends the
    // program at once, removing unfinished output files as the signal did during loading). Its
    // own flag, not only the session's: a turn's start clears the session's, which lost a Ctrl-C
    // pressed while an image was read.
    let cancel = session.cancel_flag();
    let interrupted = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&interrupted);
    ctrlc::set_handler(move || {
        cancel.store(true, Ordering::Relaxed);
        if seen.swap(true, Ordering::Relaxed) {
            edgevl_gguf::AtomicFile::remove_all_parts();
            std::process::exit(130);
        }
    })
    .context("cannot install the Ctrl-C handler")?;
    session.set_progress(crate::progress_bar::on_terminal());
    let dump = a.dump.hook();
    if let Some((_, hook)) = &dump {
        session.set_decoder_hook(hook.clone())?;
    }
    for path in &a.image {
        let info = session.add_image(path)?;
        eprintln!("edgevl: {}", describe(&info));
    }
    if interrupted.load(Ordering::Relaxed) {
        eprintln!("edgevl: stopped (Ctrl-C) before the answer");
        std::process::exit(130);
    }
    if !a.raw && !session.has_chat_template() {
        eprintln!("edgevl: the model has no chat template; using ChatML (pass --raw to use none)");
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut write = |piece: &str| out.write_all(piece.as_bytes()).and_then(|_| out.flush()).is_ok();
    let stats = if a.raw {
        let (segments, _) = session.raw_prompt_segments(&prompt)?;
        session.complete(&segments, a.gen.n_predict, &mut sampler, &mut write)?.1
    } else {
        session.ask(&prompt, a.gen.n_predict, &mut sampler, &mut write)?
    };
    writeln!(out)?;
    out.flush()?;
    if stats.finish == edgevl_runtime::Finish::Cancelled {
        eprintln!("edgevl: answer stopped (Ctrl-C)");
    }
    if stats.finish == edgevl_runtime::Finish::ContextFull {
        eprintln!(
            "edgevl: the answer stopped at the end of the {}-token context (-c for a larger one)",
            stats.n_ctx
        );
    }
    eprintln!("edgevl: {}", summary(&stats));
    if let Some((rec, _)) = &dump {
        a.dump.write(rec)?;
    }
    if let Some(path) = &a.stats_json {
        let json = serde_json::to_string_pretty(&stats)?;
        write_atomically(path, json.as_bytes())?;
    }
    if stats.finish == edgevl_runtime::Finish::Cancelled {
        // As an interrupted program ends, once what it had is reported.
        std::process::exit(130);
    }
    Ok(())
}

/// The prompt in `path` (`-` = stdin): UTF-8 text of at most 64 MiB, or an error saying why not.
fn read_prompt_file(path: &std::path::Path) -> anyhow::Result<String> {
    let stdin = std::path::Path::new("/dev/stdin");
    let source = if path.as_os_str() == "-" { stdin } else { path };
    edgevl_gguf::read_text_or_stream(source, 64 << 20)
        .with_context(|| format!("cannot read the prompt file {}", path.display()))
}

/// A one-line human summary of a turn, for stderr.
pub fn summary(s: &TurnStats) -> String {
    format!(
        "prompt {} tok ({}{} reused, {} prefilled at {:.1} tok/s); generated {} tok, {:.1} tok/s; ttft {:.0} ms; load {:.0} ms; peak RSS {:.0} MB",
        s.prompt_tokens,
        if s.image_tokens > 0 {
            format!("{} image, waited {:.0} ms for encoding; ", s.image_tokens, s.image_wait_ms)
        } else {
            String::new()
        },
        s.reused_tokens,
        s.prefilled_tokens,
        s.prefill_tok_s,
        s.generated_tokens,
        s.decode_tok_s,
        s.ttft_ms,
        s.load_ms,
        s.peak_rss_mb
    )
}

/// Checks, before any long work, that a file can be written at `path` later: it is no directory
/// and its folder exists (a bad path found after a long run lost the run's output).
pub fn check_output_file(path: &std::path::Path) -> anyhow::Result<()> {
    if path.is_dir() {
        anyhow::bail!("cannot write {}: it is a directory", path.display());
    }
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    if !folder.is_dir() {
        anyhow::bail!("cannot write {}: the folder {} does not exist", path.display(), folder.display());
    }
    Ok(())
}

/// Write `bytes` to `path` through an [`edgevl_gguf::AtomicFile`] (a part file beside it, synced
/// and renamed; removed on failure), so `path` is never left half-written, a link is written
/// through and a device or directory is refused.
pub fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let write = || -> std::io::Result<()> {
        let mut f = edgevl_gguf::AtomicFile::create(path)?;
        f.write_all(bytes)?;
        f.commit()
    };
    write().with_context(|| format!("cannot write {}", path.display()))
}
