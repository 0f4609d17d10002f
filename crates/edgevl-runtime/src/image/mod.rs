//! Images in a session: the vision encoder's settings, preparation (load, plan, key), the
//! background encoder and the embedding cache (spec section 3: decoupled image encoding).

mod background;
mod cache;
mod encoder;

pub(crate) use background::BackgroundEncoder;
pub use background::{ImageInfo, PendingImage};
pub(crate) use encoder::ImageEncoder;
pub use encoder::PreparedImage;

use edgevl_vision::{LoadLimits, Strategy};

/// Where an image goes in a user message (llama.cpp's default marker). A message without one
/// gets its attached images in front of its text.
pub const MEDIA_MARKER: &str = "<__media__>";

/// How images are tiled, encoded and cached.
#[derive(Clone, Debug)]
pub struct ImageConfig {
    /// Tiling strategy (relaxed aspect-ratio matching by default).
    pub strategy: Strategy,
    /// Relaxed matching's tolerance on effective resolution.
    pub alpha: f64,
    /// Tile budget; `None` = the strategy's published default.
    pub max_tiles: Option<u32>,
    /// Views per ViT batch (each matrix product has `vit_batch * 729` rows).
    pub vit_batch: usize,
    /// Bound of the in-memory embedding cache, in MiB (0 = no cache).
    pub cache_mb: usize,
    /// Render and normalise the next batch of views on a second thread while the ViT runs.
    pub pipelined: bool,
    /// Start encoding when an image is attached (in the background), not when the turn needs it.
    pub encode_ahead: bool,
    /// Limits checked before an image is decoded.
    pub limits: LoadLimits,
}

impl Default for ImageConfig {
    fn default() -> Self {
        ImageConfig {
            strategy: Strategy::Relaxed,
            alpha: 0.1,
            max_tiles: None,
            vit_batch: 4,
            cache_mb: 512,
            pipelined: false,
            encode_ahead: true,
            limits: LoadLimits::default(),
        }
    }
}
