//! A loaded text model with its tokenizer, thread pool, KV cache and scratch: chunked prefill
//! and streamed generation.

use crate::{peak_rss_mb, RuntimeError, Sampler};
use edgevl_gguf::GgufFile;
use edgevl_kernels::ThreadPool;
use edgevl_model::{Decoder, DecoderInput, KvCache, KvType, LogitsWanted, RunState};
use edgevl_tokenizer::{ChatMessage, ChatTemplate, StreamDecoder, Tokenizer};
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Default context cap when the user gives none (the model's own length, at most this).
pub const DEFAULT_MAX_CTX: usize = 4096;

/// How to load and run a model.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Worker threads (the calling thread included).
    pub n_threads: usize,
    /// Context size; `None` = the model's training context capped at [`DEFAULT_MAX_CTX`].
    pub n_ctx: Option<usize>,
    /// Prefill chunk size (tokens per forward pass), 128 as BlueLM-V-3B.
    pub chunk: usize,
    /// Element type of the KV cache.
    pub kv_type: KvType,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig { n_threads: crate::physical_cores(), n_ctx: None, chunk: 128, kv_type: KvType::F16 }
    }
}

/// Timings and counts of one generation, as written by `--stats-json`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GenStats {
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub generated_tokens: usize,
    /// Model load time.
    pub load_ms: f64,
    /// Time from the start of prefill to the first generated token.
    pub ttft_ms: f64,
    /// Prefill speed.
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
}

/// A loaded model, ready to prefill and generate.
pub struct Engine {
    decoder: Decoder,
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
    pool: ThreadPool,
    kv: KvCache,
    state: RunState,
    chunk: usize,
    load_ms: f64,
}

impl Engine {
    /// Open `path`, build the decoder, tokenizer and chat template, and allocate the cache.
    pub fn load(path: impl AsRef<Path>, cfg: &EngineConfig) -> Result<Self, RuntimeError> {
        let t0 = Instant::now();
        if cfg.chunk == 0 || cfg.n_threads == 0 {
            return Err(RuntimeError::BadSetting("threads and chunk size must be at least 1".into()));
        }
        let file = Arc::new(GgufFile::open(path)?);
        let decoder = Decoder::load(file.clone())?;
        let tokenizer = Tokenizer::from_gguf(file.metadata())?;
        let template = ChatTemplate::from_gguf(file.metadata())?;
        let n_ctx_train = decoder.hparams().n_ctx_train;
        let n_ctx = cfg.n_ctx.unwrap_or(n_ctx_train.min(DEFAULT_MAX_CTX));
        if n_ctx == 0 || n_ctx > (1 << 20) {
            return Err(RuntimeError::BadSetting(format!("context size {n_ctx} is outside 1..=1048576")));
        }
        let kv = decoder.new_cache(n_ctx, cfg.kv_type);
        let state = decoder.new_state(cfg.chunk.min(n_ctx), n_ctx);
        let pool = ThreadPool::new(cfg.n_threads);
        let load_ms = t0.elapsed().as_secs_f64() * 1e3;
        Ok(Engine { decoder, tokenizer, template, pool, kv, state, chunk: cfg.chunk, load_ms })
    }

    /// The decoder.
    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Element type of the KV cache.
    pub fn kv_type(&self) -> KvType {
        self.kv.kv_type()
    }

    /// The thread pool.
    pub fn pool(&self) -> &ThreadPool {
        &self.pool
    }

    /// True when the file has a chat template (otherwise ChatML is used).
    pub fn has_chat_template(&self) -> bool {
        self.template.is_some()
    }

    /// Context size in positions.
    pub fn n_ctx(&self) -> usize {
        self.kv.n_ctx()
    }

    /// Milliseconds it took to load.
    pub fn load_ms(&self) -> f64 {
        self.load_ms
    }

    /// Tokens of a user prompt: with `raw`, the text as is (BOS per the file's add_bos, special
    /// tokens parsed, as llama-completion -no-cnv); otherwise wrapped in the chat template.
    pub fn prompt_tokens(&self, text: &str, raw: bool) -> Result<Vec<u32>, RuntimeError> {
        if raw {
            return Ok(self.tokenizer.encode(text, true, true));
        }
        let messages = [ChatMessage { role: "user".into(), content: text.into() }];
        let rendered = match &self.template {
            Some(t) => t.render(&messages, true)?,
            None => ChatTemplate::chatml().render(&messages, true)?,
        };
        // A template that writes the BOS text itself must not get a second BOS.
        let bos_in_text = self
            .tokenizer
            .bos()
            .and_then(|b| self.tokenizer.token_text(b))
            .map(|t| rendered.starts_with(t))
            .unwrap_or(false);
        Ok(self.tokenizer.encode(&rendered, !bos_in_text, true))
    }

    /// Forget the conversation (the cache is kept allocated).
    pub fn reset(&mut self) {
        self.kv.truncate(0);
    }

    /// Run `tokens` through the decoder in chunks and return the last position's logits.
    pub fn prefill(&mut self, tokens: &[u32]) -> Result<&[f32], RuntimeError> {
        let used = self.kv.len();
        if tokens.is_empty() || used + tokens.len() > self.kv.n_ctx() {
            return Err(RuntimeError::PromptTooLong {
                n_prompt: used + tokens.len(),
                n_ctx: self.kv.n_ctx(),
                n_ctx_train: self.decoder.hparams().n_ctx_train,
            });
        }
        let n_chunks = tokens.len().div_ceil(self.chunk);
        for (i, chunk) in tokens.chunks(self.chunk).enumerate() {
            let want = if i + 1 == n_chunks { LogitsWanted::Last } else { LogitsWanted::None };
            self.decoder.forward(
                DecoderInput::Tokens(chunk),
                &mut self.kv,
                &mut self.state,
                &self.pool,
                want,
            )?;
        }
        // The last chunk asked for `Last`, so the run state holds its logits.
        Ok(self.state.logits(self.decoder.n_vocab()))
    }

    /// Prefill `prompt`, then sample up to `n_predict` tokens, passing each piece of text to
    /// `on_text` as soon as it is complete UTF-8; stops at an end-of-generation token, at the
    /// context's end, or when `on_text` returns false.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        n_predict: usize,
        sampler: &mut Sampler,
        mut on_text: impl FnMut(&str) -> bool,
    ) -> Result<(Vec<u32>, GenStats), RuntimeError> {
        let t0 = Instant::now();
        sampler.accept(prompt);
        let mut next = sampler.sample(self.prefill(prompt)?);
        let t_first = Instant::now();
        let mut out = Vec::new();
        let mut stream = StreamDecoder::new();
        while out.len() < n_predict && !self.tokenizer.is_eog(next) {
            out.push(next);
            sampler.accept(&[next]);
            let piece = stream.push(&self.tokenizer, next);
            if !piece.is_empty() && !on_text(&piece) {
                break;
            }
            if out.len() == n_predict || self.kv.len() >= self.kv.n_ctx() {
                break;
            }
            let logits = self.decoder.forward(
                DecoderInput::Tokens(&[next]),
                &mut self.kv,
                &mut self.state,
                &self.pool,
                LogitsWanted::Last,
            )?;
            next = sampler.sample(logits);
        }
        let rest = stream.finish();
        if !rest.is_empty() {
            on_text(&rest);
        }
        let t_end = Instant::now();
        let prefill_s = (t_first - t0).as_secs_f64();
        let decode_s = (t_end - t_first).as_secs_f64();
        let n_decoded = out.len().saturating_sub(1);
        let stats = GenStats {
            prompt_tokens: prompt.len(),
            generated_tokens: out.len(),
            load_ms: self.load_ms,
            ttft_ms: prefill_s * 1e3,
            prefill_tok_s: prompt.len() as f64 / prefill_s.max(1e-9),
            decode_tok_s: if n_decoded > 0 { n_decoded as f64 / decode_s.max(1e-9) } else { 0.0 },
            peak_rss_mb: peak_rss_mb(),
            threads: self.pool.n_threads(),
            n_ctx: self.kv.n_ctx(),
            chunk: self.chunk,
        };
        Ok((out, stats))
    }
}
