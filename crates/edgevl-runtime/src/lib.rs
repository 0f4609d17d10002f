//! The edgevl runtime: loads a model once and drives it — chunked prefill, generation with
//! sampling and streaming, perplexity — for the CLI and, later, the server and bindings.
#![warn(missing_docs)]

mod engine;
mod error;
mod perplexity;
mod sampler;
mod system;

pub use engine::{Engine, EngineConfig, GenStats};
pub use error::RuntimeError;
pub use perplexity::{perplexity, PerplexityResult};
pub use sampler::{argmax, Sampler, SamplerConfig};
pub use system::{peak_rss_mb, physical_cores};
