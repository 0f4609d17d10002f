//! `edgevl run`: one prompt in, a streamed answer out.

use anyhow::Context;
use clap::Args;
use edgevl_model::KvType;
use edgevl_runtime::{Engine, EngineConfig, Sampler, SamplerConfig};
use std::io::Write;
use std::path::PathBuf;

/// Options shared by every command that loads a text model.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// The LLM (GGUF).
    #[arg(short = 'm', long = "model")]
    pub model: PathBuf,
    /// Threads (default: the number of physical cores).
    #[arg(short = 't', long = "threads")]
    pub threads: Option<usize>,
    /// Context size (default: the model's, capped at 4096).
    #[arg(short = 'c', long = "ctx-size")]
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
}

impl From<KvTypeArg> for KvType {
    fn from(a: KvTypeArg) -> Self {
        match a {
            KvTypeArg::F16 => KvType::F16,
            KvTypeArg::F32 => KvType::F32,
        }
    }
}

impl ModelArgs {
    /// The engine configuration these options describe.
    pub fn engine_config(&self) -> EngineConfig {
        let mut cfg = EngineConfig {
            n_ctx: self.ctx,
            chunk: self.chunk,
            kv_type: self.kv_type.into(),
            ..EngineConfig::default()
        };
        if let Some(t) = self.threads {
            cfg.n_threads = t;
        }
        cfg
    }

    /// Load the engine, naming the file in any error.
    pub fn load(&self) -> anyhow::Result<Engine> {
        Engine::load(&self.model, &self.engine_config())
            .with_context(|| format!("cannot load model {}", self.model.display()))
    }
}

/// Arguments of `edgevl run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The prompt.
    #[arg(short = 'p', long = "prompt")]
    prompt: String,
    /// Tokens to generate at most.
    #[arg(short = 'n', long = "n-predict", default_value_t = 128)]
    n_predict: usize,
    /// Temperature (0 = greedy).
    #[arg(long, default_value_t = 0.8)]
    temp: f32,
    /// Top-k (0 = off).
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    /// Top-p (1.0 = off).
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    /// Min-p (0.0 = off).
    #[arg(long, default_value_t = 0.05)]
    min_p: f32,
    /// Repeat penalty over the last 64 tokens (1.0 = off).
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    /// Random seed.
    #[arg(long)]
    seed: Option<u64>,
    /// No chat template: tokenise the prompt as is.
    #[arg(long)]
    raw: bool,
    /// Write timing and memory statistics as JSON to this file.
    #[arg(long)]
    stats_json: Option<PathBuf>,
}

/// Run `edgevl run`.
pub fn run(a: &RunArgs) -> anyhow::Result<()> {
    let mut engine = a.model.load()?;
    if !a.raw && !engine.has_chat_template() {
        eprintln!("edgevl: the model has no chat template; using ChatML (pass --raw to use none)");
    }
    let prompt = engine.prompt_tokens(&a.prompt, a.raw)?;
    let mut cfg = SamplerConfig {
        temp: a.temp,
        top_k: a.top_k,
        top_p: a.top_p,
        min_p: a.min_p,
        repeat_penalty: a.repeat_penalty,
        ..SamplerConfig::default()
    };
    if let Some(s) = a.seed {
        cfg.seed = s;
    }
    let mut sampler = Sampler::new(cfg);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let (_, stats) = engine.generate(&prompt, a.n_predict, &mut sampler, |piece| {
        out.write_all(piece.as_bytes()).and_then(|_| out.flush()).is_ok()
    })?;
    writeln!(out)?;
    eprintln!(
        "edgevl: prompt {} tok, {:.1} tok/s prefill; generated {} tok, {:.1} tok/s; ttft {:.0} ms; load {:.0} ms; peak RSS {:.0} MB",
        stats.prompt_tokens,
        stats.prefill_tok_s,
        stats.generated_tokens,
        stats.decode_tok_s,
        stats.ttft_ms,
        stats.load_ms,
        stats.peak_rss_mb
    );
    if let Some(path) = &a.stats_json {
        let json = serde_json::to_string_pretty(&stats)?;
        write_atomically(path, json.as_bytes())?;
    }
    Ok(())
}

/// Write `bytes` to `path` through a temporary file so no partial file is left behind.
pub fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension(format!("part-{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}
