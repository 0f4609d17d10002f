//! `edgevl perplexity`: llama-perplexity's measure on a text file.

use crate::run::{KvTypeArg, ModelArgs};
use anyhow::Context;
use clap::Args;
use edgevl_kernels::KernelConfig;
use std::io::IsTerminal;
use std::path::PathBuf;

/// Arguments of `edgevl perplexity`.
#[derive(Args, Debug)]
pub struct PerplexityArgs {
    /// The LLM (GGUF).
    #[arg(short = 'm', long = "model")]
    model: PathBuf,
    /// The text file to score.
    #[arg(short = 'f', long = "file")]
    file: PathBuf,
    /// Tokens per chunk.
    #[arg(short = 'c', long = "ctx-size", default_value_t = 512, value_parser = crate::counts::context)]
    ctx: usize,
    /// Threads (default: the number of physical cores).
    #[arg(short = 't', long = "threads", value_parser = crate::counts::threads)]
    threads: Option<usize>,
    /// KV cache element type (llama-perplexity's `-ctk` / `-ctv`).
    #[arg(long = "cache-type", value_enum, default_value_t = KvTypeArg::F16)]
    kv_type: KvTypeArg,
    /// Score at most this many chunks (llama-perplexity's `--chunks`; default: all).
    #[arg(long)]
    chunks: Option<usize>,
    /// Print `{"ppl": .., "ppl_stderr": .., "n_chunks": .., "n_tokens": ..}` on stdout.
    #[arg(long)]
    json: bool,
}

/// The largest text file read (256 MiB: wikitext-103's test split is 1.3 MB).
const MAX_TEXT_BYTES: u64 = 256 << 20;

/// Run `edgevl perplexity`.
pub fn run(a: &PerplexityArgs, kernels: KernelConfig) -> anyhow::Result<()> {
    let text = edgevl_gguf::read_text_or_stream(&a.file, MAX_TEXT_BYTES)
        .with_context(|| format!("cannot read text file {}", a.file.display()))?;
    // llama-perplexity drops exactly one trailing newline of the file; do the same.
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let model = ModelArgs {
        model: a.model.clone(),
        threads: a.threads,
        ctx: Some(a.ctx),
        // A chunk of the text is evaluated in passes of at most this many positions, as llama-perplexity's
        // micro-batches: the scratch and the logits of a pass stay bounded whatever `-c` is.
        chunk: a.ctx.min(edgevl_runtime::PASS_POSITIONS),
        kv_type: a.kv_type,
    };
    let mut session = model.load(kernels)?;
    // The running estimate is redrawn on a terminal only: logs and pipes get the result alone.
    let on_terminal = std::io::stderr().is_terminal();
    let res = session.perplexity(text, a.chunks, |done, total, ppl| {
        if on_terminal {
            eprint!("\redgevl: chunk {done}/{total}, ppl {ppl:.4}   ")
        }
    })?;
    if on_terminal {
        eprintln!();
    }
    if a.json {
        println!(
            "{}",
            serde_json::json!({"ppl": res.ppl, "ppl_stderr": res.ppl_stderr, "n_chunks": res.n_chunks,
                               "n_tokens": res.n_tokens})
        );
    } else {
        let pm = res.ppl_stderr.map(|e| format!(" +/- {e:.5}")).unwrap_or_default();
        println!("Final estimate: PPL = {:.4}{pm} ({} chunks of {} tokens)", res.ppl, res.n_chunks, a.ctx);
    }
    Ok(())
}
