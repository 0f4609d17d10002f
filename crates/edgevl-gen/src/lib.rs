//! Random-weight GGUF models with exact shapes: the BlueLM-V-3B-shaped LLaMA decoder, SmolLM2,
//! SigLIP-so400m + projector, and tiny shapes for tests. Weights are seeded so a file is the same
//! bytes every time, and files follow llama.cpp's names and keys so both engines read them.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod image_tokens;
pub mod llm;
mod tensors;
pub mod vision;

pub use tensors::{add_random_tensors, random_tensor, GenError, TensorSpec};
