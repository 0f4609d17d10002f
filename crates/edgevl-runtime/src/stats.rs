//! Counts and timings of a turn and of a whole session, as `--stats-json` and `/stats` print
//! them.

use serde::Serialize;

/// Why a generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    /// The model produced an end-of-generation token.
    Eog,
    /// `n_predict` tokens were generated.
    Length,
    /// The context is full.
    ContextFull,
    /// The caller cancelled (flag or callback).
    Cancelled,
}

/// One generation: its prompt (the whole conversation so far), what of it was reused from the
/// KV cache, what was prefilled, and what was generated.
#[derive(Clone, Debug, Serialize)]
pub struct TurnStats {
    /// Tokens of the prompt (the rendered conversation up to the reply).
    pub prompt_tokens: usize,
    /// Prompt positions found already in the KV cache.
    pub reused_tokens: usize,
    /// Prompt positions run through the decoder this turn.
    pub prefilled_tokens: usize,
    /// Tokens generated.
    pub generated_tokens: usize,
    /// Model load time.
    pub load_ms: f64,
    /// Time from the start of the turn to the first generated token (waiting for images included).
    pub ttft_ms: f64,
    /// Prefill speed over the positions prefilled this turn (waiting for images excluded).
    pub prefill_tok_s: f64,
    /// Decode speed (tokens after the first, over their time).
    pub decode_tok_s: f64,
    /// Peak resident memory of the process.
    pub peak_rss_mb: f64,
    /// Threads used.
    pub threads: usize,
    /// Context size.
    pub n_ctx: usize,
    /// Prefill chunk size.
    pub chunk: usize,
    /// Positions in the KV cache after the turn.
    pub n_past: usize,
    /// Prompt positions holding image embeddings.
    pub image_tokens: usize,
    /// Time the turn waited for image embeddings (encoding not finished ahead).
    pub image_wait_ms: f64,
    /// Why generation stopped.
    pub finish: Finish,
}

/// The session as a whole, printed by `/stats`.
#[derive(Clone, Debug, Serialize)]
pub struct SessionStats {
    /// Completed generations since load or the last reset.
    pub turns: usize,
    /// Context size.
    pub n_ctx: usize,
    /// Positions in the KV cache.
    pub n_past: usize,
    /// Positions left in the context.
    pub tokens_left: usize,
    /// Positions prefilled since load or the last reset.
    pub prefilled_tokens_total: usize,
    /// Tokens generated since load or the last reset.
    pub generated_tokens_total: usize,
    /// Model load time.
    pub load_ms: f64,
    /// Images in the conversation.
    pub images: usize,
    /// Images attached and not yet sent with a message.
    pub pending_images: usize,
    /// Views (tiles and global views) run through the ViT since load.
    pub vit_tiles_encoded: usize,
    /// Attached images whose embeddings were already cached or being computed, since load.
    pub image_cache_hits: usize,
    /// Wall time spent encoding images since load (in the background).
    pub image_encode_ms: f64,
    /// Images in the embedding cache.
    pub image_cache_entries: usize,
    /// Size of the embedding cache.
    pub image_cache_mb: f64,
    /// The last turn, if any.
    pub last_turn: Option<TurnStats>,
}
