//! edgevl-arch: the one table of architecture knowledge.
//!
//! Every GGUF tensor name and metadata key edgevl reads or writes is spelled here once — the
//! decoder's (llama.cpp's `llama-arch.cpp` conventions), the tokenizer's, the vision towers' and
//! projectors' (llama.cpp's `tools/mtmd/clip-impl.h`) and edgevl's own — and shared by the
//! loader, the random-model generator and the converter. [`family`] says which vision families
//! exist and what distinguishes them.
//!
//! ```
//! use edgevl_arch::{clip, llm};
//! assert_eq!(llm::Block::AttnQ.name(3), "blk.3.attn_q.weight");
//! assert_eq!(llm::LlmKey::EmbeddingLength.of("qwen2"), "qwen2.embedding_length");
//! assert_eq!(clip::VitTensor::Ln1.weight(0), "v.blk.0.ln1.weight");
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod clip;
pub mod family;
pub mod general;
pub mod hf;
pub mod llm;
pub mod tokenizer;
