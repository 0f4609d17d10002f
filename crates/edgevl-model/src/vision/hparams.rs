//! Typed hyper-parameters of an mmproj file, read from llama.cpp's CLIP metadata keys.

use super::MmprojError;
use edgevl_arch::clip as keys;
use edgevl_gguf::{Metadata, Value};

/// Keys an mmproj file must have.
pub const REQUIRED_KEYS: [&str; 14] = [
    keys::PROJECTOR_TYPE,
    keys::IMAGE_SIZE,
    keys::PATCH_SIZE,
    keys::EMBEDDING_LENGTH,
    keys::FEED_FORWARD_LENGTH,
    keys::BLOCK_COUNT,
    keys::HEAD_COUNT,
    keys::LAYER_NORM_EPS,
    keys::PROJECTION_DIM,
    keys::IMAGE_MEAN,
    keys::IMAGE_STD,
    keys::SCALE_FACTOR,
    keys::USE_GELU,
    keys::HAS_VISION_ENCODER,
];

/// Side in pixels of the tiles an lfm2 encoder takes: spec section 2's 384x384 tiles. llama.cpp
/// runs lfm2 at any resolution: its converter writes `clip.vision.image_size = 256` whatever the
/// model (the resolution of LFM2-VL's 16x16 position grid at patch 16), and `clip.cpp` resizes the
/// learned position embeddings (bilinear, antialiased) to each image's patch grid. edgevl does the
/// same once, at load, for this tile size (see [`MmprojHparams::image_size`]).
pub const LFM2_TILE_SIZE: usize = 384;

/// Largest width, MLP width, block count or projection width accepted.
const MAX_DIM: u64 = 1 << 16;
/// Largest tile side in pixels accepted.
const MAX_IMAGE_SIZE: u64 = 4096;
/// Widest attention head supported.
pub const MAX_VISION_HEAD_DIM: usize = 512;

/// The projector after the ViT. The match on it is exhaustive: a new projector is a new variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Projector {
    /// llama.cpp's `lfm2`: 2x2 patch merge, LayerNorm(eps 1e-5), Linear, tanh-GELU, Linear.
    Lfm2,
}

impl Projector {
    /// Parse `clip.projector_type`.
    pub fn from_name(name: &str) -> Result<Self, MmprojError> {
        match name {
            "lfm2" => Ok(Projector::Lfm2),
            other => Err(MmprojError::UnknownProjector { found: other.to_string() }),
        }
    }

    /// The name written in `clip.projector_type`.
    pub fn name(self) -> &'static str {
        match self {
            Projector::Lfm2 => "lfm2",
        }
    }
}

/// How an image's embeddings are laid out in the prompt (spec 2b).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageLayout {
    /// The global view's tokens, then each tile's, tiles row-major; no separators.
    GlobalFirst,
}

impl ImageLayout {
    /// Parse `edgevl.vision.layout`.
    pub fn from_name(name: &str) -> Result<Self, MmprojError> {
        match name {
            "global-first" => Ok(ImageLayout::GlobalFirst),
            other => Err(MmprojError::UnknownLayout { found: other.to_string() }),
        }
    }

    /// The name written in `edgevl.vision.layout`.
    pub fn name(self) -> &'static str {
        match self {
            ImageLayout::GlobalFirst => "global-first",
        }
    }
}

/// Hyper-parameters of a SigLIP vision tower with its projector.
#[derive(Clone, Debug, PartialEq)]
pub struct MmprojHparams {
    /// Projector type.
    pub projector: Projector,
    /// Prompt layout of an image.
    pub layout: ImageLayout,
    /// Side in pixels of the tiles the encoder takes: [`LFM2_TILE_SIZE`] for the lfm2 projector,
    /// whatever `clip.vision.image_size` says (that key only has to be at least the patch size;
    /// the position embeddings of the file are resized to this tile's patch grid if their grid
    /// differs).
    pub image_size: usize,
    /// Patch side in pixels (14).
    pub patch_size: usize,
    /// ViT width (1152).
    pub n_embd: usize,
    /// ViT MLP width (4304).
    pub n_ff: usize,
    /// ViT blocks (27).
    pub n_layer: usize,
    /// Attention heads (16).
    pub n_head: usize,
    /// ViT LayerNorm epsilon.
    pub eps: f32,
    /// Projector output width (the LLM's embedding width).
    pub projection_dim: usize,
    /// Per-channel normalisation mean.
    pub image_mean: [f32; 3],
    /// Per-channel normalisation standard deviation.
    pub image_std: [f32; 3],
    /// Side of a merged block of patches (2).
    pub scale_factor: usize,
}

impl MmprojHparams {
    /// Patches per side of a tile (27; a stride-`patch_size` convolution drops the remainder pixels).
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Patches per tile (729).
    pub fn n_patches(&self) -> usize {
        self.grid() * self.grid()
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }

    /// Merged tokens per side of a tile (14: the grid padded up to a multiple of the scale).
    pub fn merged_grid(&self) -> usize {
        self.grid().div_ceil(self.scale_factor)
    }

    /// Output tokens per tile (196).
    pub fn tokens_per_tile(&self) -> usize {
        self.merged_grid() * self.merged_grid()
    }

    /// Width of a merged token before the projector (4 x 1152 = 4608).
    pub fn merged_width(&self) -> usize {
        self.n_embd * self.scale_factor * self.scale_factor
    }

    /// Values of one input tile, `3 * image_size^2`.
    pub fn tile_len(&self) -> usize {
        3 * self.image_size * self.image_size
    }

    /// Values of one unfolded patch, `3 * patch_size^2`.
    pub fn patch_len(&self) -> usize {
        3 * self.patch_size * self.patch_size
    }
}

fn bad(key: &str, reason: String) -> MmprojError {
    MmprojError::BadHparam { key: key.to_string(), reason }
}

fn dim(md: &Metadata, key: &str, max: u64) -> Result<usize, MmprojError> {
    let v = md.get_u64(key)?;
    if v == 0 || v > max {
        return Err(bad(key, format!("{v} is outside 1..={max}")));
    }
    usize::try_from(v).map_err(|_| bad(key, format!("{v} does not fit in memory sizes")))
}

fn triple(md: &Metadata, key: &str) -> Result<[f32; 3], MmprojError> {
    match md.get_f32_array(key)? {
        [a, b, c, ..] => Ok([*a, *b, *c]),
        short => Err(bad(key, format!("needs 3 values, found {}", short.len()))),
    }
}

fn require_flag(md: &Metadata, key: &str, want: bool, why: &str) -> Result<(), MmprojError> {
    let found = match md.get(key) {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => md.get_bool(key)?,
    };
    if found != want {
        return Err(bad(key, format!("is {found}, must be {want}: {why}")));
    }
    Ok(())
}

impl TryFrom<&Metadata> for MmprojHparams {
    type Error = MmprojError;

    /// Reads [`REQUIRED_KEYS`]; the optional `clip.vision.attention.head_count_kv`,
    /// `clip.vision.attention.head_dim` and `clip.use_silu` are checked for consistency.
    fn try_from(md: &Metadata) -> Result<Self, MmprojError> {
        for key in REQUIRED_KEYS {
            md.require(key)?;
        }
        let projector = Projector::from_name(md.get_str(keys::PROJECTOR_TYPE)?)?;
        // Files written by llama.cpp's converters have no layout key: they get spec 2b's
        // global-first layout; a value edgevl does not know is refused.
        let layout = ImageLayout::from_name(
            md.opt_str(keys::EDGEVL_LAYOUT)?.unwrap_or(ImageLayout::GlobalFirst.name()),
        )?;
        require_flag(md, keys::HAS_VISION_ENCODER, true, "the file must hold a vision encoder")?;
        require_flag(md, keys::USE_GELU, true, "the SigLIP MLP uses tanh-GELU")?;
        require_flag(md, keys::USE_SILU, false, "the SigLIP MLP uses tanh-GELU")?;
        let file_image_size = dim(md, keys::IMAGE_SIZE, MAX_IMAGE_SIZE)?;
        let patch_size = dim(md, keys::PATCH_SIZE, MAX_IMAGE_SIZE)?;
        if patch_size > file_image_size {
            return Err(bad(
                keys::PATCH_SIZE,
                format!("{patch_size} is larger than the image size {file_image_size}"),
            ));
        }
        let image_size = match projector {
            Projector::Lfm2 => LFM2_TILE_SIZE,
        };
        if patch_size > image_size {
            return Err(bad(
                keys::PATCH_SIZE,
                format!("{patch_size} is larger than the tile size {image_size}"),
            ));
        }
        let n_embd = dim(md, keys::EMBEDDING_LENGTH, MAX_DIM)?;
        let n_ff = dim(md, keys::FEED_FORWARD_LENGTH, MAX_DIM)?;
        let n_layer = dim(md, keys::BLOCK_COUNT, 1024)?;
        let n_head = dim(md, keys::HEAD_COUNT, 1024)?;
        if n_embd % n_head != 0 || n_embd / n_head > MAX_VISION_HEAD_DIM {
            return Err(bad(
                keys::HEAD_COUNT,
                format!("{n_head} heads do not split the width {n_embd} into heads of at most {MAX_VISION_HEAD_DIM}"),
            ));
        }
        if md.get(keys::HEAD_COUNT_KV).is_some() && dim(md, keys::HEAD_COUNT_KV, 1024)? != n_head {
            return Err(bad(keys::HEAD_COUNT_KV, format!("must equal the head count {n_head}")));
        }
        if md.get(keys::HEAD_DIM).is_some() && dim(md, keys::HEAD_DIM, 1024)? != n_embd / n_head {
            return Err(bad(keys::HEAD_DIM, format!("must equal width / heads = {}", n_embd / n_head)));
        }
        let eps = md.get_f32(keys::LAYER_NORM_EPS)?;
        if !(eps.is_finite() && eps > 0.0) {
            return Err(bad(keys::LAYER_NORM_EPS, format!("{eps} must be a positive number")));
        }
        let projection_dim = dim(md, keys::PROJECTION_DIM, MAX_DIM)?;
        let image_mean = triple(md, keys::IMAGE_MEAN)?;
        let image_std = triple(md, keys::IMAGE_STD)?;
        if image_std.iter().any(|s| !(s.is_finite() && *s > 0.0)) || image_mean.iter().any(|m| !m.is_finite())
        {
            return Err(bad(
                keys::IMAGE_STD,
                format!("mean {image_mean:?} / std {image_std:?} must be finite, std > 0"),
            ));
        }
        let scale_factor = dim(md, keys::SCALE_FACTOR, 16)?;
        match projector {
            Projector::Lfm2 if scale_factor != 2 => {
                return Err(bad(
                    keys::SCALE_FACTOR,
                    format!("{scale_factor}, the lfm2 projector merges 2x2 (spec 2b)"),
                ))
            }
            Projector::Lfm2 => {}
        }
        Ok(MmprojHparams {
            projector,
            layout,
            image_size,
            patch_size,
            n_embd,
            n_ff,
            n_layer,
            n_head,
            eps,
            projection_dim,
            image_mean,
            image_std,
            scale_factor,
        })
    }
}
