//! Image options shared by `run`, `chat` and `serve`: the mmproj, tiling and the encoder's
//! batching, pipelining, encoding ahead and cache (each refused without `--mmproj`, which it
//! would not change).

use clap::Args;
use edgevl_runtime::{ImageConfig, SessionConfig, TilingChoice, MAX_VIT_BATCH};
use std::path::PathBuf;

/// Vision options.
#[derive(Args, Debug, Clone)]
pub struct VisionArgs {
    /// The vision tower + projector (mmproj GGUF as llama.cpp's converter writes it): this
    /// project's lfm2 layout, InternVL 2.5/3 (internvl) or SmolVLM (idefics3).
    #[arg(long, value_name = "FILE")]
    pub mmproj: Option<PathBuf>,
    /// Tiling rule: family (the mmproj family's own: relaxed for this project's layout, InternVL's
    /// closest aspect ratio, SmolVLM's longest edge), relaxed, llava-next, internvl or idefics3.
    #[arg(long, default_value = "family", requires = "mmproj")]
    pub strategy: TilingChoice,
    /// Relaxed matching's tolerance on effective resolution.
    #[arg(long, default_value_t = 0.1, requires = "mmproj")]
    pub alpha: f64,
    /// Tile budget (default: the rule's own; for idefics3 the longest edge becomes
    /// tile x floor(sqrt(N))).
    #[arg(long, value_name = "N", requires = "mmproj")]
    pub max_tiles: Option<u32>,
    /// Views per ViT batch (each matrix product has batch x patches-a-view rows).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=MAX_VIT_BATCH as i64), requires = "mmproj")]
    pub vit_batch: u32,
    /// Bound of the in-memory image embedding cache, in MiB (0 = off).
    #[arg(long, default_value_t = 512, requires = "mmproj")]
    pub image_cache_mb: usize,
    /// Render the next ViT batch on a second thread while the current one is encoded.
    #[arg(long, requires = "mmproj")]
    pub pipelined: bool,
    /// Encode an image only when a turn needs it, not as soon as it is attached.
    #[arg(long, requires = "mmproj")]
    pub no_encode_ahead: bool,
    /// Requantise the ViT's F16/F32 matrices to Q8_0 at load (the paper's INT8 ViT): so400m's
    /// ffn_down, kept F16 by llama.cpp's converter, then runs on the int8 GEMM (about a third less
    /// ViT time) at the cost of Q8_0 rounding of those weights.
    #[arg(long, requires = "mmproj")]
    pub vit_int8: bool,
}

impl VisionArgs {
    /// Puts these options into `cfg`.
    pub fn apply(&self, cfg: &mut SessionConfig) {
        cfg.mmproj = self.mmproj.clone();
        cfg.image = ImageConfig {
            strategy: self.strategy,
            alpha: self.alpha,
            max_tiles: self.max_tiles,
            vit_batch: self.vit_batch as usize,
            cache_mb: self.image_cache_mb,
            pipelined: self.pipelined,
            encode_ahead: !self.no_encode_ahead,
            vit_int8: self.vit_int8,
            ..ImageConfig::default()
        };
    }
}

/// One line about an attached image, for stderr.
pub fn describe(info: &edgevl_runtime::ImageInfo) -> String {
    format!(
        "image {}: {} {} grid {}{} -> {} tokens{}",
        info.label,
        info.plan.image,
        info.plan.strategy.name(),
        info.plan.grid,
        if info.plan.global_view() { " + global view" } else { "" },
        info.n_tokens,
        if info.cached { " (cached)" } else { "" }
    )
}
