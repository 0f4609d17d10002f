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

use edgevl_arch::family::{PromptLayout, Resample, Tiling, VisionFamily};
use edgevl_model::vision::MmprojHparams;
use edgevl_vision::{
    Filter, GlobalPosition, LoadLimits, Normalization, Plan, Preprocess, Size, Strategy, TilingParams,
    VisionError,
};
use std::fmt;
use std::str::FromStr;

/// Where an image goes in a user message (llama.cpp's default marker). A message without one
/// gets its attached images in front of its text.
pub const MEDIA_MARKER: &str = "<__media__>";

/// Which tiling rule images get: the mmproj family's own (`family`, the default) or one of the
/// strategies by name, at the family's tile size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TilingChoice {
    /// The family's rule: relaxed for this project's layout, InternVL's for InternVL, Idefics3's
    /// for SmolVLM.
    #[default]
    Family,
    /// This strategy, whatever the family.
    Strategy(Strategy),
}

impl TilingChoice {
    /// The strategy this choice gives for `family`.
    pub fn strategy(self, family: VisionFamily) -> Strategy {
        match self {
            TilingChoice::Strategy(s) => s,
            TilingChoice::Family => match family.tiling() {
                Tiling::Relaxed => Strategy::Relaxed,
                Tiling::InternVl => Strategy::InternVl,
                Tiling::Idefics3 => Strategy::Idefics3,
            },
        }
    }
}

impl fmt::Display for TilingChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TilingChoice::Family => f.write_str("family"),
            TilingChoice::Strategy(s) => s.fmt(f),
        }
    }
}

impl FromStr for TilingChoice {
    type Err = String;

    /// `family`, or a strategy name (`relaxed`, `llava-next`, `internvl`, `idefics3`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "family" {
            return Ok(TilingChoice::Family);
        }
        s.parse().map(TilingChoice::Strategy).map_err(|e: String| format!("{e}, or family"))
    }
}

/// The largest `ImageConfig::vit_batch`: 64 views (more than any tiling makes of one image) of
/// so400m's 729 patches are 47k rows a matrix product.
pub const MAX_VIT_BATCH: usize = 64;

/// How images are tiled, encoded and cached.
#[derive(Clone, Debug)]
pub struct ImageConfig {
    /// Tiling rule (the mmproj family's own by default).
    pub strategy: TilingChoice,
    /// Relaxed matching's tolerance on effective resolution.
    pub alpha: f64,
    /// Tile budget; `None` = the rule's default (the file's for InternVL and SmolVLM).
    pub max_tiles: Option<u32>,
    /// Views per ViT batch (each matrix product has `vit_batch * patches` rows), 1..=`MAX_VIT_BATCH`.
    pub vit_batch: usize,
    /// Bound of the in-memory embedding cache, in MiB (0 = no cache).
    pub cache_mb: usize,
    /// Render and normalise the next batch of views on a second thread while the ViT runs.
    pub pipelined: bool,
    /// Start encoding when an image is attached (in the background), not when the turn needs it.
    pub encode_ahead: bool,
    /// Requantise the ViT's float matrices to Q8_0 at load (the paper's INT8 ViT weights; see
    /// [`edgevl_model::vision::VitWeightOptions::int8`]): about a third less ViT time on so400m, whose F16
    /// `ffn_down` otherwise runs on the float GEMM, at the cost of Q8_0 rounding of those weights.
    pub vit_int8: bool,
    /// Limits checked before an image is decoded.
    pub limits: LoadLimits,
}

impl Default for ImageConfig {
    fn default() -> Self {
        ImageConfig {
            strategy: TilingChoice::Family,
            alpha: 0.1,
            max_tiles: None,
            vit_batch: 4,
            cache_mb: 512,
            pipelined: false,
            encode_ahead: true,
            vit_int8: false,
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
    /// One view: the session's rule with a budget of one tile (no global view beside it).
    GlobalOnly,
    /// The session's rule with at most this many tiles (1..=256).
    MaxTiles(u32),
}

/// The tiling and pixel preprocessing resolved for one vision family (and its mmproj file):
/// the strategy, its parameters (tile size, tokens a view, the family's limits) and how views
/// are resampled, normalised and ordered.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ImageTiling {
    /// The family.
    pub family: VisionFamily,
    /// The strategy images are planned with.
    pub strategy: Strategy,
    /// Its parameters, `max_tiles` as configured.
    pub params: TilingParams,
    /// Resampling, normalisation and view order.
    pub preprocess: Preprocess,
}

impl ImageTiling {
    /// The family's published processor settings, for planning without an mmproj file: tile
    /// size, tokens a view, normalisation and limits of the public models (this project: 384,
    /// 196; InternVL: 448, 256, 1..12 tiles; SmolVLM: 512, 64, longest edge 2048, 6x6 grid).
    pub fn family_defaults(cfg: &ImageConfig, family: VisionFamily) -> Self {
        let (base, preprocess) = match family {
            VisionFamily::EdgeVl => (TilingParams::BLUELM, Preprocess::BLUELM),
            VisionFamily::InternVl => (TilingParams::INTERNVL, Preprocess::INTERNVL),
            VisionFamily::Idefics3 => (TilingParams::SMOLVLM, Preprocess::SMOLVLM),
        };
        let params = TilingParams { alpha: cfg.alpha, max_tiles: cfg.max_tiles, ..base };
        ImageTiling { family, strategy: cfg.strategy.strategy(family), params, preprocess }
    }

    /// The tiling of an mmproj file: tile size, tokens a view and mean/std from the file,
    /// InternVL's tile range (`clip.vision.preproc_min_tiles` / `preproc_max_tiles`) and
    /// SmolVLM's longest edge (`clip.vision.preproc_image_size`) when present, and at most
    /// `max_grid_side` tiles a side (the `<row_i_col_j>` tokens the LLM's vocabulary holds).
    pub fn of_mmproj(cfg: &ImageConfig, hp: &MmprojHparams, max_grid_side: Option<u32>) -> Self {
        let family = hp.family;
        let defaults = Self::family_defaults(cfg, family);
        let (min_tiles, file_max) = hp.preproc_tiles;
        let strategy = defaults.strategy;
        // The file's budget is InternVL's own default; other rules keep theirs.
        let max_tiles = cfg.max_tiles.or(if strategy == Strategy::InternVl { file_max } else { None });
        let params = TilingParams {
            max_tiles,
            tile_size: u32::try_from(hp.image_size).unwrap_or(u32::MAX),
            tokens_per_view: hp.tokens_per_tile() as u64,
            min_tiles: min_tiles.unwrap_or(1),
            longest_edge: hp.preproc_image_size.or(defaults.params.longest_edge),
            // Only the Idefics3 layout names tile positions with tokens.
            max_grid_side: match family.prompt() {
                PromptLayout::Idefics3 { .. } => max_grid_side,
                PromptLayout::EmbeddingsOnly | PromptLayout::InternVl { .. } => None,
            },
            ..defaults.params
        };
        let filter = match family.resample() {
            Resample::Bicubic => Filter::Bicubic,
            Resample::Lanczos => Filter::Lanczos,
        };
        let preprocess = Preprocess {
            filter,
            norm: Normalization { mean: hp.image_mean, std: hp.image_std },
            global_position: if family.global_view_last() {
                GlobalPosition::Last
            } else {
                GlobalPosition::First
            },
            composite_transparent: family.composites_transparency(),
        };
        ImageTiling { family, strategy, params, preprocess }
    }

    /// The tiling plan for an image of `size` under `budget`: the one place where a per-image
    /// budget overrides the session's settings.
    pub fn plan(&self, size: Size, budget: TileBudget) -> Result<Plan, VisionError> {
        let max_tiles = match budget {
            TileBudget::Default => self.params.max_tiles,
            TileBudget::GlobalOnly => Some(1),
            TileBudget::MaxTiles(n) => Some(n),
        };
        self.strategy.plan(size, &TilingParams { max_tiles, ..self.params })
    }
}

impl ImageConfig {
    /// The plan this project's layout gives an image of `size` under `budget` (no mmproj
    /// loaded: 384-pixel tiles, 196 tokens a view); see [`ImageTiling::plan`].
    pub fn plan(&self, size: Size, budget: TileBudget) -> Result<Plan, VisionError> {
        ImageTiling::family_defaults(self, VisionFamily::EdgeVl).plan(size, budget)
    }
}
