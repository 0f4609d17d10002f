//! Model code of edgevl: the LLaMA-family decoder (and, later, the SigLIP vision tower and the
//! projector) computed from GGUF weights with `edgevl-kernels`. Model code computes; scheduling
//! (chunking, caching, threading policy) belongs to `edgevl-runtime`.
#![warn(missing_docs)]

mod causal_attention;
mod decoder;
mod error;
mod head_attention;
mod hparams;
mod kv_cache;
mod parallel;
pub mod vision;
mod weights;

pub use decoder::{Decoder, DecoderInput, LogitsWanted, RunState};
pub use error::ModelError;
pub use hparams::{Architecture, DecoderHparams};
pub use kv_cache::{KvCache, KvType};
pub use weights::dtype_of;
