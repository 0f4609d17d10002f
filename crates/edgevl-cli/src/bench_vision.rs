//! `edgevl bench` with images.
//!
//! With `--mmproj`: the ViT + merge + projector on one tile and on nine (a 2x4 grid + global
//! view, the paper's Figure 7 setting) at each `--vit-batch` size: milliseconds per tile and
//! per 14x14 patch. With `--image` too: the end-to-end numbers of the paper's Table 5 for this
//! machine (model load, image processing, LLM prefill, decode speed), the prefill time of the
//! same image prompt at each `--chunk` size (the paper's Figure 8), the image's processing time
//! sequential and pipelined, and time-to-first-token with and without encoding ahead while a
//! user types for `--typing-s` seconds.

use crate::bench::Stats;
use anyhow::Context;
use clap::Args;
use edgevl_kernels::{Kernels, ThreadPool};
use edgevl_model::vision::{VisionEncoder, VitWeightOptions};
use edgevl_runtime::{ImageConfig, Sampler, SamplerConfig, Session, SessionConfig, TurnStats, MAX_VIT_BATCH};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Image options of `edgevl bench`.
#[derive(Args, Debug, Clone)]
pub struct VisionBenchArgs {
    /// A vision tower + projector: adds the ViT rows (and, with --image, the end-to-end run).
    #[arg(long, value_name = "FILE")]
    pub mmproj: Option<PathBuf>,
    /// ViT batch sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,6")]
    pub vit_batch: Vec<usize>,
    /// Repetitions of each ViT measurement (a nine-tile so400m run takes tens of seconds).
    #[arg(long, default_value_t = 1)]
    pub vit_reps: usize,
    /// An image for the end-to-end run (needs --mmproj; the LLM is -m): one run of load, image,
    /// prefill and -n decoded tokens, in place of the pp/tg tests, so -p, -d and -r do not apply
    /// (scripts/bench-e2e-vs-base.sh repeats it).
    #[arg(long, value_name = "FILE")]
    pub image: Option<PathBuf>,
    /// Prefill chunk sizes of the end-to-end run's sweep.
    #[arg(long, value_delimiter = ',', default_value = "32,64,128,256,512")]
    pub chunk: Vec<usize>,
    /// Seconds the simulated user types after attaching the image (encoding-ahead comparison).
    #[arg(long, default_value_t = 5.0)]
    pub typing_s: f64,
    /// The question asked about the image.
    #[arg(long, default_value = "Describe this image in detail.")]
    pub question: String,
    /// Requantise the ViT's F16/F32 matrices to Q8_0 at load (as `run --vit-int8`).
    #[arg(long)]
    pub vit_int8: bool,
}

/// Nine views: a 2x4 grid plus the global view.
const GRID_VIEWS: usize = 9;

/// One ViT measurement.
struct VitRow {
    tiles: usize,
    batch: usize,
    /// Milliseconds per tile of each repetition.
    ms_per_tile: Stats,
}

/// Normalised tiles with values in -1..1 (the speed does not depend on them).
fn synthetic_tiles(n: usize, tile_len: usize) -> Vec<f32> {
    let mut state = 0x2545_f491u32;
    (0..n * tile_len)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

/// Times the encoder on one tile and on nine at each batch size.
fn vit_rows(
    enc: &VisionEncoder,
    batches: &[usize],
    reps: usize,
    pool: &ThreadPool,
) -> anyhow::Result<Vec<VitRow>> {
    let tl = enc.hparams().tile_len();
    let tiles = synthetic_tiles(GRID_VIEWS, tl);
    eprintln!("bench: ViT warm-up (one tile)");
    enc.encode_tiles(&tiles[..tl], 1, 1, pool)?;
    let mut cases = vec![(1, 1)];
    cases.extend(batches.iter().map(|&b| (GRID_VIEWS, b)));
    let mut rows = Vec::new();
    for (n, batch) in cases {
        let mut samples = Vec::new();
        for r in 0..reps {
            let t0 = Instant::now();
            enc.encode_tiles(&tiles[..n * tl], n, batch, pool)?;
            let ms = t0.elapsed().as_secs_f64() * 1e3 / n as f64;
            eprintln!("bench: ViT {n} tile(s), batch {batch}, run {}/{reps}: {ms:.0} ms per tile", r + 1);
            samples.push(ms);
        }
        rows.push(VitRow { tiles: n, batch, ms_per_tile: Stats::of(&samples) });
    }
    Ok(rows)
}

/// Prints the ViT table (or returns it as JSON).
pub fn vit_bench(
    mmproj: &Path,
    kernels: &Kernels,
    v: &VisionBenchArgs,
    threads: usize,
    json: bool,
) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(v.vit_reps > 0, "--vit-reps must be at least 1");
    anyhow::ensure!(
        v.vit_batch.iter().all(|b| (1..=MAX_VIT_BATCH).contains(b)),
        "--vit-batch sizes must be in 1..={MAX_VIT_BATCH}"
    );
    let enc = VisionEncoder::open_with(mmproj, kernels, VitWeightOptions { int8: v.vit_int8 })
        .with_context(|| format!("cannot load mmproj {}", mmproj.display()))?;
    let pool = ThreadPool::new(threads);
    let rows = vit_rows(&enc, &v.vit_batch, v.vit_reps, &pool)?;
    // Patches a view, from the file (so400m at 384: 27 x 27 = 729; InternViT 1024; SmolVLM 1024).
    let patches = enc.hparams().n_patches() as f64;
    let name = mmproj.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if !json {
        println!("| mmproj | threads | views | ViT batch | ms per tile (median ± sd) | ms per patch |");
        println!("|---|---:|---:|---:|---:|---:|");
        for r in &rows {
            println!(
                "| {name} | {} | {} | {} | {:.0} ± {:.0} | {:.2} |",
                pool.n_threads(),
                r.tiles,
                r.batch,
                r.ms_per_tile.median,
                r.ms_per_tile.stddev,
                r.ms_per_tile.median / patches
            );
        }
        println!();
    }
    Ok(serde_json::Value::Array(
        rows.iter()
            .map(|r| {
                serde_json::json!({
                    "views": r.tiles, "vit_batch": r.batch, "ms_per_tile": r.ms_per_tile.json(),
                    "ms_per_patch": r.ms_per_tile.median / patches,
                })
            })
            .collect(),
    ))
}

fn greedy() -> Sampler {
    Sampler::new(SamplerConfig { temp: 0.0, ..SamplerConfig::default() })
}

/// Prefill milliseconds of a turn (image waits excluded).
fn prefill_ms(t: &TurnStats) -> f64 {
    if t.prefill_tok_s > 0.0 {
        t.prefilled_tokens as f64 / t.prefill_tok_s * 1e3
    } else {
        0.0
    }
}

/// Runs the end-to-end benchmark of `model` + `mmproj` on `image` and prints its tables.
pub fn e2e_bench(
    model: &Path,
    mmproj: &Path,
    image: &Path,
    base: &SessionConfig,
    v: &VisionBenchArgs,
    n_gen: usize,
    json: bool,
) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(v.chunk.iter().all(|&c| c > 0), "--chunk sizes must be at least 1");
    let vit_batch = v.vit_batch.iter().copied().max().unwrap_or(4);
    let cfg = |cache_mb: usize, encode_ahead: bool, pipelined: bool| SessionConfig {
        mmproj: Some(mmproj.to_path_buf()),
        image: ImageConfig {
            vit_batch,
            cache_mb,
            encode_ahead,
            pipelined,
            vit_int8: v.vit_int8,
            ..ImageConfig::default()
        },
        ..base.clone()
    };
    let load = |c: &SessionConfig| {
        Session::load(model, c)
            .with_context(|| format!("cannot load {} with {}", model.display(), mmproj.display()))
    };

    // Table 5: load, image processing, prefill, decode; the image encoded ahead with no wait
    // for typing, so the turn waits for all of it.
    eprintln!("bench: end-to-end run (load, encode, prefill, decode {n_gen} tokens)");
    let mut s = load(&cfg(512, true, false))?;
    let t_attach = Instant::now();
    let info = s.add_image(image)?;
    let attach_ms = t_attach.elapsed().as_secs_f64() * 1e3;
    let turn = s.ask(&v.question, n_gen, &mut greedy(), |_| true)?;
    let session = s.stats();
    let image_ms = attach_ms + session.image_encode_ms;

    // Figure 8: the same prompt (image from the cache) at each chunk size.
    let mut chunks = Vec::new();
    for &c in &v.chunk {
        s.reset();
        s.set_chunk(c)?;
        s.add_image(image)?;
        let t = s.ask(&v.question, 1, &mut greedy(), |_| true)?;
        eprintln!("bench: chunk {c}: prefill {:.0} ms", prefill_ms(&t));
        chunks.push((s.chunk(), t));
    }
    drop(s);

    // Decoupled encoding: the user types for `typing_s` after attaching the image.
    let mut ttft = Vec::new();
    for ahead in [false, true] {
        let mut s = load(&cfg(0, ahead, false))?;
        s.add_image(image)?;
        std::thread::sleep(Duration::from_secs_f64(v.typing_s.max(0.0)));
        let t = s.ask(&v.question, 1, &mut greedy(), |_| true)?;
        eprintln!(
            "bench: encode ahead {ahead}: ttft {:.0} ms after {:.1} s of typing",
            t.ttft_ms, v.typing_s
        );
        ttft.push((ahead, t));
    }

    // Pipelining: the image alone (no prefill), encoded sequentially and pipelined.
    let mut pipelining = Vec::new();
    for pipelined in [false, true] {
        let mut s = load(&cfg(0, true, pipelined))?;
        let t0 = Instant::now();
        s.add_image(image)?;
        s.raw_prompt_segments("")?;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        eprintln!("bench: image processing, pipelined {pipelined}: {ms:.0} ms");
        pipelining.push((pipelined, ms));
    }

    let plan = &info.plan;
    if !json {
        println!(
            "image {}: {} -> {} grid {}{}, {} image tokens; prompt {} tokens; {} threads; ViT batch {vit_batch}",
            image.display(),
            plan.image,
            plan.strategy.name(),
            plan.grid,
            if plan.global_view() { " + global view" } else { "" },
            info.n_tokens,
            turn.prompt_tokens,
            turn.threads
        );
        println!();
        println!("| model load (LLM + mmproj) | image processing | LLM prefill | decode |");
        println!("|---:|---:|---:|---:|");
        println!(
            "| {:.2} s | {:.2} s ({} views) | {:.2} s ({} tokens, {:.1} tok/s) | {:.1} tok/s ({} tokens) |",
            session.load_ms / 1e3,
            image_ms / 1e3,
            plan.views(),
            prefill_ms(&turn) / 1e3,
            turn.prefilled_tokens,
            turn.prefill_tok_s,
            turn.decode_tok_s,
            turn.generated_tokens
        );
        println!();
        println!("| prefill chunk | prefill (image cached) | tok/s |");
        println!("|---:|---:|---:|");
        for (c, t) in &chunks {
            println!("| {c} | {:.2} s | {:.1} |", prefill_ms(t) / 1e3, t.prefill_tok_s);
        }
        println!();
        println!("| image processing (decode, tile, ViT, projector) | time |");
        println!("|---|---:|");
        for (pipelined, ms) in &pipelining {
            let how =
                if *pipelined { "pipelined (next batch rendered during the ViT)" } else { "sequential" };
            println!("| {how} | {:.2} s |", ms / 1e3);
        }
        println!();
        println!("| image encoding | typing | waited for the image | time to first token |");
        println!("|---|---:|---:|---:|");
        for (ahead, t) in &ttft {
            println!(
                "| {} | {:.1} s | {:.2} s | {:.2} s |",
                if *ahead { "ahead (on attach)" } else { "on demand (after the question)" },
                v.typing_s,
                t.image_wait_ms / 1e3,
                t.ttft_ms / 1e3
            );
        }
        println!();
    }
    Ok(serde_json::json!({
        "image": image.display().to_string(),
        "grid": plan.grid.to_string(),
        "views": plan.views(),
        "image_tokens": info.n_tokens,
        "load_ms": session.load_ms,
        "image_ms": image_ms,
        "turn": turn,
        "chunks": chunks.iter().map(|(c, t)| serde_json::json!({"chunk": c, "prefill_ms": prefill_ms(t), "prefill_tok_s": t.prefill_tok_s})).collect::<Vec<_>>(),
        "pipelining": pipelining.iter().map(|(p, ms)| serde_json::json!({"pipelined": p, "image_ms": ms})).collect::<Vec<_>>(),
        "ttft": ttft.iter().map(|(a, t)| serde_json::json!({"encode_ahead": a, "typing_s": v.typing_s, "image_wait_ms": t.image_wait_ms, "ttft_ms": t.ttft_ms})).collect::<Vec<_>>(),
    }))
}
