//! Model code of edgevl: the LLaMA-family decoder and the vision towers with their projectors,
//! computed from GGUF weights with `edgevl-kernels`. Model code computes; scheduling
//! (chunking, caching, threading policy) belongs to `edgevl-runtime`.
#![warn(missing_docs)]
#![warn(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

#[cfg(test)]
mod attention_reference;
mod causal_attention;
mod compute;
mod decoder;
mod error;
mod head_attention;
mod hook;
mod hparams;
mod kv_cache;
mod parallel;
mod split_attention;
pub mod vision;
mod weights;

pub use decoder::{Decoder, DecoderInput, LogitsWanted, RunState};
pub use error::ModelError;
pub use hook::{Activation, ActivationHook, ActivationRecorder, Hook, ACTIVATION_NAMES};
pub use hparams::{Architecture, DecoderHparams, MAX_DIM, MAX_HEAD_DIM};
pub use kv_cache::{KvCache, KvType};
pub use weights::dtype_of;
