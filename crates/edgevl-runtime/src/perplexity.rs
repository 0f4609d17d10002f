//! Perplexity by llama-perplexity's method, so the numbers compare: the text is tokenised
//! without special-token parsing (BOS per the file's add_bos), cut into chunks of `n_ctx`
//! tokens; when add_bos is set the first token of every chunk is replaced by BOS; each chunk is
//! evaluated from an empty cache and only the second half of its positions is scored.

use crate::RuntimeError;
use edgevl_kernels::ThreadPool;
use edgevl_model::{Decoder, DecoderInput, KvCache, KvType, LogitsWanted, RunState};
use edgevl_tokenizer::Tokenizer;
use serde::Serialize;

/// The outcome of a perplexity run.
#[derive(Clone, Debug, Serialize)]
pub struct PerplexityResult {
    /// Final estimate over all scored tokens.
    pub ppl: f64,
    /// Its standard error, as llama-perplexity's `+/-`: `ppl` times the standard error of the mean
    /// token NLL (`None` with fewer than two scored tokens or no spread).
    pub ppl_stderr: Option<f64>,
    /// Chunks evaluated.
    pub n_chunks: usize,
    /// Tokens in the text.
    pub n_tokens: usize,
    /// Running estimate after each chunk (as llama-perplexity prints them).
    pub chunk_ppl: Vec<f64>,
}

/// The most positions one forward pass of [`perplexity`] evaluates (llama-perplexity's micro-batch):
/// a chunk longer than this is evaluated in several passes, so the scratch, and the logits of a pass
/// (`n_vocab` floats a position), stay bounded whatever the chunk size.
pub const PASS_POSITIONS: usize = 512;

/// Perplexity of `text` with chunks of `n_ctx`, over at most `max_chunks` chunks (llama-perplexity's
/// `--chunks`; `None`: all); `progress(done, total, running_ppl)` is called after every chunk. The text is
/// tokenised and found long enough before anything is allocated; then a KV cache of `n_ctx` positions
/// and scratch for [`PASS_POSITIONS`] (a [`crate::Session`] uses its own instead:
/// [`crate::Session::perplexity`]).
pub fn perplexity(
    model: ModelRef,
    text: &str,
    n_ctx: usize,
    kv_type: KvType,
    max_chunks: Option<usize>,
    progress: impl FnMut(usize, usize, f64),
) -> Result<PerplexityResult, RuntimeError> {
    let chunks = Chunks::of(model.tokenizer, text, n_ctx, max_chunks)?;
    let mut kv = model.decoder.try_new_cache(n_ctx, kv_type)?;
    let mut state = model.decoder.new_state(n_ctx.min(PASS_POSITIONS), n_ctx);
    chunks.score(model, &mut kv, &mut state, progress)
}

/// What a perplexity run reads: the model, its tokenizer and the threads to run on.
#[derive(Clone, Copy)]
pub struct ModelRef<'a> {
    /// The language model.
    pub decoder: &'a Decoder,
    /// Its tokenizer.
    pub tokenizer: &'a Tokenizer,
    /// The threads.
    pub pool: &'a ThreadPool,
}

/// A text's tokens and how many chunks of `n_ctx` of them are scored.
pub(crate) struct Chunks {
    tokens: Vec<u32>,
    n_ctx: usize,
    n_chunks: usize,
}

impl Chunks {
    /// Tokenises `text` and checks the settings: a context of at least 4, at least one chunk, a
    /// text of at least two chunks (llama-perplexity's rule).
    pub(crate) fn of(
        tokenizer: &Tokenizer,
        text: &str,
        n_ctx: usize,
        max_chunks: Option<usize>,
    ) -> Result<Self, RuntimeError> {
        if n_ctx < 4 {
            return Err(RuntimeError::BadSetting(format!(
                "context {n_ctx} is too small for perplexity: it needs at least 4 tokens (-c 4)"
            )));
        }
        if max_chunks == Some(0) {
            return Err(RuntimeError::BadSetting("perplexity needs at least one chunk (--chunks 0)".into()));
        }
        let tokens = tokenizer.encode(text, true, false);
        if tokens.len() < 2 * n_ctx {
            return Err(RuntimeError::TextTooShort { n_tokens: tokens.len(), n_ctx, needed: 2 * n_ctx });
        }
        let n_chunks = (tokens.len() / n_ctx).min(max_chunks.unwrap_or(usize::MAX));
        Ok(Chunks { tokens, n_ctx, n_chunks })
    }

    /// Evaluates each chunk from an empty `kv` (of `n_ctx` positions), in passes of at most
    /// `state.max_batch()` positions, and scores the second half of its positions.
    pub(crate) fn score(
        &self,
        model: ModelRef,
        kv: &mut KvCache,
        state: &mut RunState,
        mut progress: impl FnMut(usize, usize, f64),
    ) -> Result<PerplexityResult, RuntimeError> {
        let ModelRef { decoder, tokenizer, pool } = model;
        let Chunks { ref tokens, n_ctx, n_chunks } = *self;
        let (n_vocab, pass) = (decoder.n_vocab(), state.max_batch());
        let first = n_ctx / 2;
        // The first token of every chunk, when the file asks for a BOS.
        let bos = tokenizer.bos().filter(|_| tokenizer.add_bos());
        let mut chunk_tokens = vec![0u32; n_ctx];
        let (mut nll, mut nll2, mut count) = (0f64, 0f64, 0usize);
        let mut chunk_ppl = Vec::with_capacity(n_chunks);
        for c in 0..n_chunks {
            chunk_tokens.copy_from_slice(&tokens[c * n_ctx..(c + 1) * n_ctx]);
            if let Some(bos) = bos {
                chunk_tokens[0] = bos;
            }
            kv.truncate(0);
            for start in (0..n_ctx).step_by(pass) {
                let end = (start + pass).min(n_ctx);
                let input = DecoderInput::Tokens(&chunk_tokens[start..end]);
                let logits = decoder.forward(input, kv, state, pool, LogitsWanted::All)?;
                for j in first.max(start)..end.min(n_ctx - 1) {
                    let row = &logits[(j - start) * n_vocab..(j - start + 1) * n_vocab];
                    // The original token (not the BOS substitute) is the target, as llama.cpp scores it.
                    let target = tokens[c * n_ctx + j + 1] as usize;
                    let token_nll = -log_softmax_at(row, target);
                    nll += token_nll;
                    nll2 += token_nll * token_nll;
                    count += 1;
                }
            }
            let ppl = (nll / count as f64).exp();
            chunk_ppl.push(ppl);
            progress(c + 1, n_chunks, ppl);
        }
        let ppl = (nll / count as f64).exp();
        let ppl_stderr = mean_stderr(nll, nll2, count).map(|e| e * ppl);
        Ok(PerplexityResult { ppl, ppl_stderr, n_chunks, n_tokens: tokens.len(), chunk_ppl })
    }
}

/// The standard error of the mean of `count` values whose sum is `sum` and sum of squares
/// `sum2`, as llama-perplexity computes it: the square root of (mean of squares - squared mean)
/// over `count - 1`; `None` when it is not defined or zero.
fn mean_stderr(sum: f64, sum2: f64, count: usize) -> Option<f64> {
    if count < 2 {
        return None;
    }
    let n = count as f64;
    let (mean, mean2) = (sum / n, sum2 / n);
    let var = mean2 - mean * mean;
    (var > 0.0).then(|| (var / (n - 1.0)).sqrt())
}

fn log_softmax_at(row: &[f32], target: usize) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
    row[target] as f64 - max - sum.ln()
}
