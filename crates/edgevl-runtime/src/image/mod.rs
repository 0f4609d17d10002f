//! Images in a session: the vision encoder's settings, preparation (load, plan, key), the
//! background encoder and the embedding cache (spec section 3: decoupled image encoding).

mod background;
mod cache;
mod encoder;
mod handle;

pub(crate) use background::BackgroundEncoder;
pub use background::{ImageInfo, PendingImage};
pub(crate) use encoder::ImageEncoder;
pub use encoder::PreparedImage;
pub use handle::ImageEncoderHandle;

use edgevl_vision::{
    Fill, Grid, LoadLimits, Offset, Plan, Size, Strategy, TilingParams, VisionError, TILE_SIZE,
};

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

/// A per-image tile budget, overriding the session's (a server's `detail` / `max_tiles`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TileBudget {
    /// The session's settings ([`ImageConfig::max_tiles`]).
    #[default]
    Default,
    /// The global view alone: the whole image stretched to one 384x384 view (one view's tokens).
    GlobalOnly,
    /// The session's strategy with at most this many tiles (1..=256).
    MaxTiles(u32),
}

impl ImageConfig {
    /// The tiling plan for an image of `size` under `budget`: the one place where a per-image
    /// budget overrides the session's strategy settings.
    pub fn plan(&self, size: Size, budget: TileBudget) -> Result<Plan, VisionError> {
        let max_tiles = match budget {
            TileBudget::Default => self.max_tiles,
            TileBudget::MaxTiles(n) => Some(n),
            TileBudget::GlobalOnly => {
                if size.width == 0 || size.height == 0 {
                    return Err(VisionError::InvalidSize {
                        width: size.width.into(),
                        height: size.height.into(),
                        reason: "width and height must be at least 1",
                    });
                }
                let view = Size::new(TILE_SIZE, TILE_SIZE);
                return Ok(Plan {
                    strategy: self.strategy,
                    image: size,
                    grid: Grid { cols: 1, rows: 1 },
                    canvas: view,
                    resize: view,
                    offset: Offset { x: 0, y: 0 },
                    fill: Fill::Stretch,
                    global_view: false,
                });
            }
        };
        self.strategy.plan(size, &TilingParams { alpha: self.alpha, max_tiles })
    }
}
