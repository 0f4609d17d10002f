//! The vision side of the model: a SigLIP ViT, the 2x2 token merge and the projector, computed
//! from an mmproj GGUF file with llama.cpp's CLIP names and keys (spec sections 1 and 2b).
//!
//! ```no_run
//! # fn main() -> Result<(), edgevl_model::vision::MmprojError> {
//! use edgevl_model::vision::VisionEncoder;
//! let kernels = edgevl_kernels::Kernels::detect();
//! let enc = VisionEncoder::open("mmproj.gguf", &kernels)?;
//! let pool = edgevl_kernels::ThreadPool::new(2);
//! let tiles = vec![0f32; 2 * enc.hparams().tile_len()];
//! let emb = enc.encode_tiles(&tiles, 2, 4, &pool)?; // [2 * 196, projection_dim]
//! assert_eq!(emb.len(), 2 * enc.tokens_per_tile() * enc.n_embd_out());
//! # Ok(()) }
//! ```

mod attention;
mod encoder;
mod error;
mod hparams;
mod merge;
mod patch;
mod weights;

pub use encoder::{VisionEncoder, PROJECTOR_NORM_EPS};
pub use error::MmprojError;
pub use hparams::*;
pub use weights::VitWeightOptions;
