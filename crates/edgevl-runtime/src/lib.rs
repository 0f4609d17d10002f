//! The edgevl runtime: loads a model once and drives it — a [`Session`] holding a conversation
//! whose KV cache is kept across turns (a follow-up prefills only its new tokens), chunked
//! prefill, generation with sampling, streaming and cancellation, perplexity — for the CLI and,
//! later, the server and bindings.
//!
//! ```
//! use edgevl_runtime::{Finish, Sampler, SamplerConfig, Session, SessionConfig};
//!
//! # fn main() -> Result<(), edgevl_runtime::RuntimeError> {
//! let model = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/tiny-qwen2/model.gguf");
//! let cfg = SessionConfig { n_threads: 1, chunk: 128, ..SessionConfig::default() };
//! let mut session = Session::load(model, &cfg)?;
//! let mut sampler = Sampler::new(SamplerConfig { temp: 0.0, ..SamplerConfig::default() });
//!
//! let mut answer = String::new();
//! let first = session.ask("Hello!", 8, &mut sampler, |piece| {
//!     answer.push_str(piece); // stream it; return false to stop
//!     true
//! })?;
//! assert_eq!(first.reused_tokens, 0);
//!
//! // The follow-up finds the first turn in the KV cache and prefills only what is new (up to
//! // the first position where the re-rendered reply tokenises differently from what was sampled).
//! let second = session.ask("Tell me more.", 8, &mut sampler, |_| true)?;
//! assert!(second.reused_tokens > 0 && second.reused_tokens <= first.n_past);
//! assert_eq!(second.prefilled_tokens, second.prompt_tokens - second.reused_tokens);
//! assert_eq!(session.stats().turns, 2);
//! assert!(matches!(second.finish, Finish::Eog | Finish::Length));
//!
//! session.reset();
//! assert_eq!(session.n_past(), 0);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod error;
mod image;
mod perplexity;
mod progress;
mod sampler;
mod segment;
mod session;
mod stats;
mod system;

pub use edgevl_arch::family::VisionFamily;
pub use edgevl_model::{KvType, ModelError};
pub use edgevl_tokenizer::ChatMessage;
pub use error::RuntimeError;
pub use image::{
    ImageConfig, ImageEncoderHandle, ImageInfo, ImageTiling, PendingImage, PreparedImage, TileBudget,
    TilingChoice, MAX_VIT_BATCH, MEDIA_MARKER,
};
pub use perplexity::{perplexity, ModelRef, PerplexityResult, PASS_POSITIONS};
pub use progress::{Progress, ProgressFn};
pub use sampler::{argmax, random_seed, requested_seed, Sampler, SamplerConfig};
pub use segment::{Cell, EmbeddingBlock, Segment};
pub use session::{
    Generation, PrefillReport, Session, SessionConfig, SiblingMaker, DEFAULT_MAX_CTX, MAX_CTX,
};
pub use stats::{Finish, SessionStats, TurnStats};
pub use system::{check_threads, peak_rss_mb, physical_cores, MAX_THREADS};
