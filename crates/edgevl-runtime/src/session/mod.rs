//! A conversation with a loaded model: the model, tokenizer, chat template, thread pool, KV
//! cache and scratch, plus the messages so far and a per-position record of what the cache
//! holds. Each turn renders the whole conversation with the chat template, reuses the longest
//! prefix already in the cache and prefills only the rest, in chunks. With an mmproj, attached
//! images are encoded in the background and enter the prompt as embedding blocks.

mod images;
mod layout;
mod prefill;
mod sibling;
mod turn;

pub use prefill::PrefillReport;
pub use sibling::SiblingMaker;
pub use turn::Generation;

use crate::image::{BackgroundEncoder, ImageConfig, ImageEncoder, PendingImage};
use crate::segment::Cell;
use crate::{ProgressFn, RuntimeError, SessionStats, TurnStats};
use edgevl_gguf::GgufFile;
use edgevl_kernels::{KernelConfig, Kernels, ThreadPool};
use edgevl_model::{Decoder, Hook, KvCache, KvType, RunState};
use edgevl_tokenizer::{ChatMessage, ChatTemplate, Tokenizer};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

/// Default context cap when the user gives none (the model's own length, at most this).
pub const DEFAULT_MAX_CTX: usize = 4096;

/// The largest context a session takes (2^20 positions).
pub const MAX_CTX: usize = 1 << 20;

/// How to load and run a model.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Worker threads (the calling thread included).
    pub n_threads: usize,
    /// Context size; `None` = the model's training context capped at [`DEFAULT_MAX_CTX`].
    pub n_ctx: Option<usize>,
    /// Prefill chunk size (positions per forward pass), 128 as BlueLM-V-3B.
    pub chunk: usize,
    /// Element type of the KV cache.
    pub kv_type: KvType,
    /// The vision tower + projector (mmproj GGUF) for images; `None` = text only.
    pub mmproj: Option<PathBuf>,
    /// How images are tiled, encoded and cached (used with `mmproj`).
    pub image: ImageConfig,
    /// How the kernel table is built (SIMD level cap, repacking): the front end fills it from the
    /// `EDGEVL_*` overrides; the default is the best this CPU has.
    pub kernels: KernelConfig,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            n_threads: crate::physical_cores(),
            n_ctx: None,
            chunk: 128,
            kv_type: KvType::F16,
            mmproj: None,
            image: ImageConfig::default(),
            kernels: KernelConfig::default(),
        }
    }
}

/// Running totals since load or the last [`Session::reset`].
#[derive(Clone, Debug, Default)]
struct Totals {
    turns: usize,
    prefilled: usize,
    generated: usize,
    last_turn: Option<TurnStats>,
}

/// A loaded model holding one conversation; see the crate docs for an example.
pub struct Session {
    /// Shared with the session's siblings ([`Session::sibling`]).
    decoder: Arc<Decoder>,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    has_template: bool,
    pool: Arc<ThreadPool>,
    kv: KvCache,
    state: RunState,
    chunk: usize,
    load_ms: f64,
    messages: Vec<ChatMessage>,
    /// What each KV-cache position holds; always as long as the cache.
    cells: Vec<Cell>,
    cancel: Arc<AtomicBool>,
    /// Told of the image views and prefill chunks of each turn ([`Session::set_progress`]).
    progress: Option<ProgressFn>,
    totals: Totals,
    /// Images attached but not yet bound to a user message.
    pending_images: Vec<PendingImage>,
    /// Images of the conversation, in the order of their markers in the rendered messages.
    images: Vec<PendingImage>,
    /// Whether the chat template renders content parts with the family's image text (vision
    /// models' templates do; text templates get the image text in the message string).
    image_parts: bool,
    /// Whether the chat template reads contents only as parts (SmolVLM's): text is then given to it
    /// as one text part (as a string its text was dropped when no mmproj was loaded).
    content_parts: bool,
    /// The background image encoder, shared with siblings (declared last: dropped after the
    /// images that refer to it).
    vision: Option<Arc<BackgroundEncoder>>,
}

impl Session {
    /// Open `path`, build the decoder, tokenizer and chat template, and allocate the cache.
    pub fn load(path: impl AsRef<Path>, cfg: &SessionConfig) -> Result<Self, RuntimeError> {
        let t0 = Instant::now();
        crate::check_threads(cfg.n_threads).map_err(RuntimeError::BadSetting)?;
        if cfg.chunk == 0 {
            return Err(RuntimeError::BadSetting("the prefill chunk size must be at least 1".into()));
        }
        let file = Arc::new(GgufFile::open(path)?);
        // The one kernel table of the session: the decoder and the vision encoder hold it.
        let kernels = Kernels::new(cfg.kernels);
        let decoder = Decoder::load(file.clone(), &kernels)?;
        let tokenizer = Tokenizer::from_gguf(file.metadata())?;
        // A logit past the tokenizer would be sampled as a token that prints nothing and never ends
        // the reply; one past the embedding could not be looked up.
        if decoder.n_vocab() != tokenizer.n_vocab() {
            return Err(RuntimeError::VocabMismatch {
                model: decoder.n_vocab(),
                tokenizer: tokenizer.n_vocab(),
            });
        }
        let template = ChatTemplate::from_gguf_with_tokenizer(file.metadata(), &tokenizer)?;
        let has_template = template.is_some();
        let template = template.unwrap_or_else(ChatTemplate::chatml);
        let n_ctx_train = decoder.hparams().n_ctx_train;
        let n_ctx = cfg.n_ctx.unwrap_or(n_ctx_train.min(DEFAULT_MAX_CTX));
        if n_ctx == 0 || n_ctx > MAX_CTX {
            return Err(RuntimeError::BadSetting(format!("context size {n_ctx} is outside 1..={MAX_CTX}")));
        }
        let kv = decoder.try_new_cache(n_ctx, cfg.kv_type)?;
        let chunk = cfg.chunk.min(n_ctx);
        let pool = ThreadPool::new(cfg.n_threads);
        let vision = match &cfg.mmproj {
            Some(mmproj) => {
                let grid_side = layout::row_col_grid_side(&tokenizer);
                let width = decoder.hparams().n_embd;
                let enc = ImageEncoder::open(mmproj, &kernels, cfg.image.clone(), width, Some(grid_side))?;
                Some(Arc::new(BackgroundEncoder::start(enc, cfg.n_threads)))
            }
            None => None,
        };
        let image_parts = vision
            .as_ref()
            .and_then(|v| v.encoder().family().prompt().part_text())
            .is_some_and(|part| template.renders_image_parts(part));
        let content_parts = template.wants_content_parts();
        let load_ms = t0.elapsed().as_secs_f64() * 1e3;
        let parts = SiblingMaker {
            decoder: Arc::new(decoder),
            tokenizer,
            template,
            has_template,
            pool: Arc::new(pool),
            n_ctx,
            kv_type: cfg.kv_type,
            chunk,
            load_ms,
            image_parts,
            content_parts,
            vision,
        };
        Ok(parts.with_cache(kv))
    }

    /// Sets the decoder's activation hook (see `edgevl_model::ActivationHook`); fails once the
    /// decoder is shared with a sibling.
    pub fn set_decoder_hook(&mut self, hook: Hook) -> Result<(), RuntimeError> {
        let decoder = Arc::get_mut(&mut self.decoder)
            .ok_or_else(|| RuntimeError::BadSetting("the decoder is shared with a sibling session".into()))?;
        decoder.set_hook(hook);
        Ok(())
    }

    /// The decoder.
    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The thread pool.
    pub fn pool(&self) -> &ThreadPool {
        &self.pool
    }

    /// Element type of the KV cache.
    pub fn kv_type(&self) -> KvType {
        self.kv.kv_type()
    }

    /// True when the file has a chat template (otherwise ChatML is used).
    pub fn has_chat_template(&self) -> bool {
        self.has_template
    }

    /// Context size in positions.
    pub fn n_ctx(&self) -> usize {
        self.kv.n_ctx()
    }

    /// The context the model was trained with (`llama.context_length`).
    pub fn n_ctx_train(&self) -> usize {
        self.decoder.hparams().n_ctx_train
    }

    /// Positions in the KV cache.
    pub fn n_past(&self) -> usize {
        self.kv.len()
    }

    /// Prefill chunk size in use (the configured one, at most the context size).
    pub fn chunk(&self) -> usize {
        self.chunk
    }

    /// Change the prefill chunk size (at most the context size); the cache is kept.
    pub fn set_chunk(&mut self, chunk: usize) -> Result<(), RuntimeError> {
        if chunk == 0 {
            return Err(RuntimeError::BadSetting("the chunk size must be at least 1".into()));
        }
        self.chunk = chunk.min(self.kv.n_ctx());
        self.state = self.decoder.new_state(self.chunk, self.kv.n_ctx());
        Ok(())
    }

    /// Milliseconds it took to load.
    pub fn load_ms(&self) -> f64 {
        self.load_ms
    }

    /// What each KV-cache position holds.
    pub fn cells(&self) -> &[Cell] {
        &self.cells
    }

    /// The conversation so far.
    pub fn messages(&self) -> &[ChatMessage] {
        &self.messages
    }

    /// Set this flag (from any thread, e.g. a Ctrl-C handler) to stop the current generation
    /// between two prefill chunks or two generated tokens; each generation clears it when it
    /// starts.
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    /// Tells `observer` (or, with `None`, no one) how the long steps of the turns from now on
    /// advance, always on this session's thread: while a turn waits for an image's embeddings,
    /// the views encoded so far and then each ViT batch, and each prefill chunk.
    pub fn set_progress(&mut self, observer: Option<ProgressFn>) {
        self.progress = observer;
    }

    /// Use `flag` as the cancel flag from now on (see [`Session::cancel_flag`]), e.g. one per
    /// request in a server, so that whoever holds it can stop that request's prefill.
    pub fn set_cancel_flag(&mut self, flag: Arc<AtomicBool>) {
        self.cancel = flag;
    }

    /// The last position's logits after the latest prefill or generated token (empty before
    /// any forward pass).
    pub fn logits(&self) -> &[f32] {
        self.state.logits(self.decoder.n_vocab())
    }

    /// Append a message (`system`, `user`, `assistant`, ...) without generating; it is
    /// prefilled with the next turn.
    pub fn add_text(&mut self, role: &str, content: &str) {
        self.messages.push(ChatMessage::new(role, content));
    }

    /// Tokens of the whole conversation rendered with the chat template, ending with the header
    /// of the assistant's reply (text only: an image marker stays text here; see
    /// [`Session::conversation_segments`]).
    pub fn conversation_tokens(&self) -> Result<Vec<u32>, RuntimeError> {
        let rendered = self.render_text(&self.messages)?;
        Ok(self.tokenizer.encode(&rendered, self.wants_bos(&rendered), true))
    }

    /// `messages` rendered with the chat template, their contents as text (a marker is text here):
    /// as strings, or as one text part each for a template that reads only parts.
    fn render_text(&self, messages: &[ChatMessage]) -> Result<String, RuntimeError> {
        Ok(match self.content_parts {
            true => self.template.render_content(messages, true, edgevl_tokenizer::ContentForm::TextPart)?,
            false => self.template.render(messages, true)?,
        })
    }

    /// Whether `rendered` needs a BOS token in front: a template that writes the BOS text
    /// itself must not get a second one.
    fn wants_bos(&self, rendered: &str) -> bool {
        !self
            .tokenizer
            .bos()
            .and_then(|b| self.tokenizer.token_text(b))
            .is_some_and(|t| rendered.starts_with(t))
    }

    /// Forget the conversation, its images and its totals (the KV cache stays allocated, and
    /// the image embedding cache keeps its entries).
    pub fn reset(&mut self) {
        self.kv.truncate(0);
        self.cells.clear();
        self.messages.clear();
        self.pending_images.clear();
        self.images.clear();
        self.totals = Totals::default();
    }

    /// Perplexity of `text` by llama-perplexity's method ([`crate::perplexity`]) with chunks of the session's
    /// context size, in the session's own KV cache (no second cache is allocated), each chunk evaluated in
    /// passes of the session's prefill chunk size, over at most `max_chunks` chunks (`None`: all). The text is
    /// checked first (long enough for two chunks); then the conversation is reset.
    pub fn perplexity(
        &mut self,
        text: &str,
        max_chunks: Option<usize>,
        progress: impl FnMut(usize, usize, f64),
    ) -> Result<crate::PerplexityResult, RuntimeError> {
        let chunks = crate::perplexity::Chunks::of(&self.tokenizer, text, self.kv.n_ctx(), max_chunks)?;
        self.reset();
        let model = crate::perplexity::ModelRef {
            decoder: &self.decoder,
            tokenizer: &self.tokenizer,
            pool: &self.pool,
        };
        let res = chunks.score(model, &mut self.kv, &mut self.state, progress);
        // The cache holds the last chunk's positions, which no conversation message accounts for.
        self.kv.truncate(0);
        res
    }

    /// Counts of the session since load or the last reset.
    pub fn stats(&self) -> SessionStats {
        SessionStats {
            turns: self.totals.turns,
            n_ctx: self.n_ctx(),
            n_past: self.n_past(),
            tokens_left: self.n_ctx() - self.n_past(),
            prefilled_tokens_total: self.totals.prefilled,
            generated_tokens_total: self.totals.generated,
            load_ms: self.load_ms,
            images: self.images.len(),
            pending_images: self.pending_images.len(),
            vit_tiles_encoded: self.vision.as_ref().map_or(0, |v| v.tiles_encoded()),
            image_cache_hits: self.vision.as_ref().map_or(0, |v| v.cache_hits()),
            image_encode_ms: self.vision.as_ref().map_or(0.0, |v| v.encode_ms()),
            image_cache_entries: self.vision.as_ref().map_or(0, |v| v.cache_usage().0),
            image_cache_mb: self.vision.as_ref().map_or(0.0, |v| v.cache_usage().1 as f64 / (1 << 20) as f64),
            last_turn: self.totals.last_turn.clone(),
        }
    }
}
