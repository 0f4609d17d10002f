//! `edgevl bench`: prompt processing (pp) and token generation (tg) speed measured as llama-bench
//! measures them, peak RSS, and a memory-bandwidth probe printed beside tg as its roofline.
//!
//! Method (llama-bench's): one warm-up prompt pass and one warm-up generation step, then for each
//! repetition the cache is cleared back to the depth (`-d`, 0 by default: empty) and either `-p`
//! random tokens go through one forward pass (logits of the last position only), or `-n`
//! single-token decode steps run. At a depth, the first `-d` random tokens are prefilled once
//! (untimed) and kept: each repetition truncates the cache back to them, which leaves the same
//! cache llama-bench's re-prefill gives. Rates are tokens per second of each repetition; the
//! table gives their median and standard deviation. The tg roofline counts the weights and the
//! KV cache a decode step reads at its mean position.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use edgevl_gguf::GgufFile;
use edgevl_kernels::{KernelConfig, Kernels, ThreadPool};
use edgevl_model::{Decoder, DecoderInput, KvCache, LogitsWanted, RunState};

/// Options of `edgevl bench`.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// The LLM (GGUF).
    #[arg(short = 'm', long = "model")]
    pub model: PathBuf,
    /// Prompt tokens of the pp test (0 skips it).
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512, value_parser = crate::counts::tokens)]
    pub n_prompt: usize,
    /// Generated tokens of the tg test (0 skips it).
    #[arg(short = 'n', long = "n-gen", default_value_t = 128, value_parser = crate::counts::tokens)]
    pub n_gen: usize,
    /// Repetitions of each test.
    #[arg(short = 'r', long = "repetitions", default_value_t = 5)]
    pub reps: usize,
    /// Threads.
    #[arg(short = 't', long = "threads", default_value_t = 2, value_parser = crate::counts::threads)]
    pub threads: usize,
    /// Tokens already in the cache when each test starts (llama-bench's `-d`): pp and tg are
    /// measured after this many positions.
    #[arg(short = 'd', long = "n-depth", default_value_t = 0, value_parser = crate::counts::tokens)]
    pub depth: usize,
    /// Context size of the cache (default: n-depth + n-prompt + n-gen, as llama-bench; with
    /// `--image`, the model's trained context up to 4096, which the image prompt must fit in). The whole
    /// cache is resident from the start, so the peak RSS is that of a full context of this size.
    #[arg(short = 'c', long = "ctx-size", value_parser = crate::counts::context)]
    pub ctx: Option<usize>,
    /// KV cache element type (llama-bench's `-ctk` / `-ctv`). q8_0 takes 53% of f16's memory:
    /// the 2.7B BlueLM shape at ctx 2048 needs it to stay under 2.0 GB of peak RSS.
    #[arg(long = "cache-type", value_enum, default_value_t = crate::run::KvTypeArg::F16)]
    pub kv_type: crate::run::KvTypeArg,
    /// Print one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub vision: crate::bench_vision::VisionBenchArgs,
    /// Skip the memory-bandwidth probe (its 1 GiB buffer counts in the process's peak RSS as
    /// `/usr/bin/time` sees it; the RSS printed here is taken before the probe).
    #[arg(long)]
    pub no_bandwidth: bool,
}

/// Median, spread and extremes of a test's per-repetition samples.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stats {
    /// Median.
    pub median: f64,
    /// Sample standard deviation.
    pub stddev: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
}

impl Stats {
    /// The statistics of `samples`.
    pub(crate) fn of(samples: &[f64]) -> Stats {
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len().max(1) as f64;
        let median = match s.len() {
            0 => 0.0,
            l if l % 2 == 1 => s[l / 2],
            l => (s[l / 2 - 1] + s[l / 2]) / 2.0,
        };
        let mean = s.iter().sum::<f64>() / n;
        let var =
            if s.len() > 1 { s.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
        Stats {
            median,
            stddev: var.sqrt(),
            min: s.first().copied().unwrap_or(0.0),
            max: s.last().copied().unwrap_or(0.0),
        }
    }

    /// As a JSON object.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::json!({ "median": self.median, "stddev": self.stddev, "min": self.min, "max": self.max })
    }
}

/// A model ready to be timed.
struct Bench {
    dec: Decoder,
    kv: KvCache,
    st: RunState,
    pool: ThreadPool,
    rng: u64,
    /// Positions kept in the cache between repetitions.
    depth: usize,
}

impl Bench {
    /// Random token ids as llama-bench draws them (uniform over the vocabulary).
    fn tokens(&mut self, n: usize) -> Vec<u32> {
        let nv = self.dec.n_vocab() as u64;
        (0..n)
            .map(|_| {
                // xorshift64*: any fixed sequence of ids will do.
                self.rng ^= self.rng >> 12;
                self.rng ^= self.rng << 25;
                self.rng ^= self.rng >> 27;
                (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) % nv) as u32
            })
            .collect()
    }

    /// Prefills `depth` random tokens in passes of at most the run state's batch (untimed).
    fn fill_depth(&mut self, depth: usize, batch: usize) -> anyhow::Result<()> {
        self.kv.truncate(0);
        let toks = self.tokens(depth);
        for chunk in toks.chunks(batch.max(1)) {
            self.dec.forward(
                DecoderInput::Tokens(chunk),
                &mut self.kv,
                &mut self.st,
                &self.pool,
                LogitsWanted::None,
            )?;
        }
        self.depth = depth;
        Ok(())
    }

    /// One pp repetition after the depth: seconds.
    fn prompt(&mut self, n: usize) -> anyhow::Result<f64> {
        self.kv.truncate(self.depth);
        let toks = self.tokens(n);
        let t0 = Instant::now();
        self.dec.forward(
            DecoderInput::Tokens(&toks),
            &mut self.kv,
            &mut self.st,
            &self.pool,
            LogitsWanted::Last,
        )?;
        Ok(t0.elapsed().as_secs_f64())
    }

    /// One tg repetition of `n` decode steps after the depth: seconds.
    fn generate(&mut self, n: usize) -> anyhow::Result<f64> {
        self.kv.truncate(self.depth);
        let toks = self.tokens(n);
        let t0 = Instant::now();
        for t in &toks {
            let tok = std::slice::from_ref(t);
            self.dec.forward(
                DecoderInput::Tokens(tok),
                &mut self.kv,
                &mut self.st,
                &self.pool,
                LogitsWanted::Last,
            )?;
        }
        Ok(t0.elapsed().as_secs_f64())
    }
}

/// Peak resident set size of this process in MB (VmHWM), if the system reports it.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Bytes of weights one decode step reads: every tensor but the embedding table (of which it
/// reads one row), unless the output projection is tied to it.
fn bytes_per_token(f: &GgufFile) -> u64 {
    let tied = f.tensor(edgevl_arch::llm::OUTPUT).is_none();
    f.tensors()
        .iter()
        .filter(|t| tied || t.name != edgevl_arch::llm::TOKEN_EMBD)
        .map(|t| f.tensor_data(t).len() as u64)
        .sum()
}

/// Size of the bandwidth probe's buffer: well past the caches a process of this machine sees.
const PROBE_BYTES: usize = 1 << 30;

/// Runs the benchmark and prints the table (or JSON) on stdout.
pub fn run(a: &BenchArgs, kernels: KernelConfig) -> anyhow::Result<()> {
    anyhow::ensure!(a.reps > 0, "-r must be at least 1");
    if let Some(image) = &a.vision.image {
        let Some(mmproj) = &a.vision.mmproj else { anyhow::bail!("--image needs --mmproj") };
        let cfg = edgevl_runtime::SessionConfig {
            n_threads: a.threads,
            n_ctx: a.ctx,
            kv_type: a.kv_type.into(),
            kernels,
            ..edgevl_runtime::SessionConfig::default()
        };
        let j = crate::bench_vision::e2e_bench(&a.model, mmproj, image, &cfg, &a.vision, a.n_gen, a.json)?;
        if a.json {
            println!("{j}");
        }
        return Ok(());
    }
    anyhow::ensure!(
        a.n_prompt + a.n_gen > 0 || !a.no_bandwidth || a.vision.mmproj.is_some(),
        "nothing to measure: -p and -n are both 0, --no-bandwidth is set and there is no --mmproj"
    );
    let k = Kernels::new(kernels);
    let vit = match &a.vision.mmproj {
        Some(mmproj) => Some(crate::bench_vision::vit_bench(mmproj, &k, &a.vision, a.threads, a.json)?),
        None => None,
    };
    if a.n_prompt + a.n_gen == 0 && a.no_bandwidth {
        // The ViT rows alone: the LLM is not loaded.
        if a.json {
            println!("{}", serde_json::json!({ "threads": a.threads, "vit": vit }));
        }
        return Ok(());
    }
    let file =
        Arc::new(GgufFile::open(&a.model).with_context(|| format!("cannot open {}", a.model.display()))?);
    let dec =
        Decoder::load(Arc::clone(&file), &k).with_context(|| format!("cannot load {}", a.model.display()))?;
    let d = a.depth;
    let n_ctx = a.ctx.unwrap_or(d + a.n_prompt + a.n_gen).clamp(1, crate::counts::MAX_TOKENS);
    anyhow::ensure!(
        d + a.n_prompt.max(a.n_gen) <= n_ctx,
        "-d {d} plus the longest test ({}) does not fit the context of {n_ctx}",
        a.n_prompt.max(a.n_gen)
    );
    let kv = dec.try_new_cache(n_ctx, a.kv_type.into())?;
    // The depth is prefilled in passes of at most 512 (or the pp size, when larger).
    let batch = a.n_prompt.max(if d > 0 { 512 } else { 1 });
    let st = dec.new_state(batch, n_ctx);
    let pool = ThreadPool::new(a.threads);
    let mut b = Bench { dec, kv, st, pool, rng: 0x9e37_79b9_7f4a_7c15, depth: 0 };
    if d > 0 {
        eprintln!("bench: prefilling the depth of {d} tokens");
        b.fill_depth(d, batch)?;
    }

    if a.n_prompt > 0 {
        eprintln!("bench: warm-up prompt pass");
        b.prompt(a.n_prompt)?;
    }
    if a.n_gen > 0 {
        eprintln!("bench: warm-up generation step");
        b.generate(1)?;
    }
    let mut pp = Vec::new();
    for i in 0..if a.n_prompt > 0 { a.reps } else { 0 } {
        let s = b.prompt(a.n_prompt)?;
        eprintln!("bench: pp{} run {}/{}: {:.2} tok/s", a.n_prompt, i + 1, a.reps, a.n_prompt as f64 / s);
        pp.push(a.n_prompt as f64 / s);
    }
    let mut tg = Vec::new();
    for i in 0..if a.n_gen > 0 { a.reps } else { 0 } {
        let s = b.generate(a.n_gen)?;
        eprintln!("bench: tg{} run {}/{}: {:.2} tok/s", a.n_gen, i + 1, a.reps, a.n_gen as f64 / s);
        tg.push(a.n_gen as f64 / s);
    }
    let rss = peak_rss_mb();
    // A decode step reads the weights and the cache up to its position (mean: d + n/2).
    let kv_per_position = (b.kv.size_bytes() / n_ctx) as u64;
    let weights = bytes_per_token(&file) + kv_per_position * (d as u64 + a.n_gen as u64 / 2);
    let bw = if a.no_bandwidth {
        None
    } else {
        Some(edgevl_kernels::probe::read_bandwidth_gbs(&b.pool, PROBE_BYTES))
    };
    let roofline = bw.map(|g| g * 1e9 / weights.max(1) as f64);
    let (pp, tg) = (Stats::of(&pp), Stats::of(&tg));
    let level = format!("{:?}", b.dec.kernels().level());

    if a.json {
        let j = serde_json::json!({
            "model": a.model.display().to_string(),
            "threads": b.pool.n_threads(),
            "n_ctx": n_ctx,
            "n_depth": d,
            "cache_type": b.kv.kv_type().name(),
            "kv_cache_mib": b.kv.size_bytes() as f64 / 1048576.0,
            "simd": level,
            "n_prompt": a.n_prompt,
            "n_gen": a.n_gen,
            "reps": a.reps,
            "pp_tok_s": (a.n_prompt > 0).then(|| pp.json()),
            "tg_tok_s": (a.n_gen > 0).then(|| tg.json()),
            "peak_rss_mb": rss,
            "bytes_per_token": weights,
            "read_bandwidth_gbs": bw,
            "tg_roofline_tok_s": roofline,
            "vit": vit,
        });
        println!("{j}");
        return Ok(());
    }
    let name = a.model.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    println!("| model | threads | simd | test | t/s (median ± sd) | min .. max |");
    println!("|---|---:|---|---|---:|---|");
    let row = |test: String, s: &Stats| {
        println!(
            "| {name} | {} | {level} | {test} | {:.2} ± {:.2} | {:.2} .. {:.2} |",
            b.pool.n_threads(),
            s.median,
            s.stddev,
            s.min,
            s.max
        )
    };
    let at = if d > 0 { format!(" @ d{d}") } else { String::new() };
    if a.n_prompt > 0 {
        row(format!("pp{}{at}", a.n_prompt), &pp);
    }
    if a.n_gen > 0 {
        row(format!("tg{}{at}", a.n_gen), &tg);
    }
    println!();
    println!(
        "KV cache: {} x {n_ctx} positions, {:.1} MiB",
        b.kv.kv_type().name(),
        b.kv.size_bytes() as f64 / 1048576.0
    );
    if let Some(r) = rss {
        println!("peak RSS: {r:.0} MB (before the bandwidth probe)");
    }
    println!("weights and KV cache read per generated token: {:.1} MB", weights as f64 / 1e6);
    if let (Some(bw), Some(roof)) = (bw, roofline) {
        let pct = if a.n_gen > 0 {
            format!(", tg at {:.0}% of it", 100.0 * tg.median / roof)
        } else {
            String::new()
        };
        println!(
            "read bandwidth ({} threads): {bw:.1} GB/s -> tg roofline {roof:.1} tok/s{pct}",
            b.pool.n_threads()
        );
    }
    Ok(())
}
