//! Typed hyper-parameters of an mmproj file, read from llama.cpp's CLIP metadata keys; the
//! family (`edgevl_arch::family`) decides what the keys do not say.

use super::MmprojError;
use edgevl_arch::clip as keys;
use edgevl_arch::family::{TileSize, VisionFamily};
use edgevl_gguf::{Metadata, Value};

/// Keys an mmproj file must have.
pub const REQUIRED_KEYS: [&str; 13] = [
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

/// Largest width, MLP width, block count or projection width accepted.
const MAX_DIM: u64 = 1 << 16;
/// Largest merge factor (pixel shuffle / downsampling) accepted.
pub const MAX_SCALE_FACTOR: u64 = 16;
/// Largest tile side in pixels accepted.
const MAX_IMAGE_SIZE: u64 = 4096;
/// Largest normalised pixel value accepted from `image_mean` / `image_std` (published files give
/// about ±2).
const MAX_NORMALISED: f32 = 1000.0;
/// Widest attention head supported.
pub const MAX_VISION_HEAD_DIM: usize = 512;
/// Largest tile count InternVL's `preproc_max_tiles` may ask for.
const MAX_PREPROC_TILES: u64 = 256;
/// Largest patch grid side of a tile (64: 4096 patches; published towers have 27 or 32). The
/// tower's attention and buffers grow with the patches, so the grid is bounded before anything
/// is sized from it.
pub const MAX_PATCH_GRID: usize = 64;
/// Largest activation of one tile in one buffer of the encoder, in values (2^24, 64 MiB of f32):
/// the tile's rows times the widest width at that stage (tower width or MLP width; merged width,
/// projector hidden width or output width). Published towers need at most 13.1M
/// (InternViT-6B); a file asking for more is refused at load, before anything is sized from it.
pub const MAX_TILE_VALUES: usize = 1 << 24;

/// Hyper-parameters of a vision tower with its projector.
#[derive(Clone, Debug, PartialEq)]
pub struct MmprojHparams {
    /// The family (tower variant, merge, projector, preprocessing, prompt layout).
    pub family: VisionFamily,
    /// Side in pixels of the tiles the encoder takes: 384 for this project's layout whatever
    /// `clip.vision.image_size` says (llama.cpp writes 256 into every `lfm2` file; the position
    /// embeddings are resized to the tile's patch grid when their grid differs), the file's
    /// `clip.vision.image_size` for the other families.
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
    /// ViT norm epsilon.
    pub eps: f32,
    /// Projector output width (the LLM's embedding width).
    pub projection_dim: usize,
    /// Per-channel normalisation mean.
    pub image_mean: [f32; 3],
    /// Per-channel normalisation standard deviation.
    pub image_std: [f32; 3],
    /// Side of a merged block of patches (2; SmolVLM 4).
    pub scale_factor: usize,
    /// InternVL's tile count range (`clip.vision.preproc_min_tiles`, `preproc_max_tiles`), when
    /// the file has it.
    pub preproc_tiles: (Option<u32>, Option<u32>),
    /// SmolVLM's longest edge before tiling (`clip.vision.preproc_image_size`), when present.
    pub preproc_image_size: Option<u32>,
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

    /// Rows the tower computes per tile: the patches, plus the class token when the family has one.
    pub fn n_tokens(&self) -> usize {
        self.n_patches() + usize::from(self.family.class_token())
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

    /// Reads the family ([`VisionFamily::detect`]) and [`REQUIRED_KEYS`]; the optional
    /// `clip.vision.attention.head_count_kv`, `clip.vision.attention.head_dim` and `clip.use_silu`
    /// are checked for consistency, InternVL's `preproc_min_tiles` / `preproc_max_tiles` and
    /// SmolVLM's `preproc_image_size` read when present.
    fn try_from(md: &Metadata) -> Result<Self, MmprojError> {
        let family = VisionFamily::detect(md)?;
        for key in REQUIRED_KEYS {
            md.require(key)?;
        }
        require_flag(md, keys::HAS_VISION_ENCODER, true, "the file must hold a vision encoder")?;
        // llama.cpp's switch away from gelu_quick; which GELU the family decides.
        require_flag(md, keys::USE_GELU, true, "the vision MLP uses GELU")?;
        require_flag(md, keys::USE_SILU, false, "the vision MLP uses GELU")?;
        let file_image_size = dim(md, keys::IMAGE_SIZE, MAX_IMAGE_SIZE)?;
        let patch_size = dim(md, keys::PATCH_SIZE, MAX_IMAGE_SIZE)?;
        if patch_size > file_image_size {
            return Err(bad(
                keys::PATCH_SIZE,
                format!("{patch_size} is larger than the image size {file_image_size}"),
            ));
        }
        let image_size = match family.tile_size() {
            TileSize::Fixed(size) => size,
            TileSize::FromFile => file_image_size,
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
        // A normalised pixel, (v - mean) / std for v in [0, 1], must stay a plain number: a tiny std or a
        // huge mean would give infinities, then NaN embeddings (published files map to about [-2, 2]).
        let normalised_ok =
            |m: f32, s: f32| [0.0f32, 1.0].iter().all(|v| ((v - m) / s).abs() <= MAX_NORMALISED);
        let sane =
            image_std.iter().zip(&image_mean).all(|(&s, &m)| s > 0.0 && m.is_finite() && normalised_ok(m, s));
        if !sane {
            return Err(bad(
                keys::IMAGE_STD,
                format!(
                    "mean {image_mean:?} / std {image_std:?}: std must be > 0 and (v - mean) / std within \
                     ±{MAX_NORMALISED} for pixel values v in [0, 1]"
                ),
            ));
        }
        let scale_factor = dim(md, keys::SCALE_FACTOR, MAX_SCALE_FACTOR)?;
        let grid = image_size / patch_size;
        match family.fixed_scale_factor() {
            Some(s) if s != scale_factor => {
                return Err(bad(
                    keys::SCALE_FACTOR,
                    format!("{scale_factor}, the {} layout merges {s}x{s} (spec 2b)", family.name()),
                ))
            }
            Some(_) => {}
            // Pixel shuffle needs whole blocks (transformers refuses other grids).
            None if grid % scale_factor != 0 => {
                return Err(bad(
                    keys::SCALE_FACTOR,
                    format!("{scale_factor} does not divide the {grid}x{grid} patch grid"),
                ))
            }
            None => {}
        }
        if grid > MAX_PATCH_GRID {
            return Err(bad(
                keys::PATCH_SIZE,
                format!("{patch_size} cuts {image_size}-pixel tiles into a {grid}x{grid} grid, over the limit of {MAX_PATCH_GRID}"),
            ));
        }
        let merged_grid = grid.div_ceil(scale_factor);
        let rows = grid * grid + usize::from(family.class_token());
        let merged_width = n_embd * scale_factor * scale_factor;
        for (what, values) in [
            ("tower activations", rows * n_embd.max(n_ff)),
            ("merged tokens", merged_grid * merged_grid * merged_width.max(projection_dim)),
        ] {
            if values > MAX_TILE_VALUES {
                return Err(bad(
                    keys::EMBEDDING_LENGTH,
                    format!("the {what} of one tile would hold {values} values, over the limit of {MAX_TILE_VALUES}"),
                ));
            }
        }
        let preproc_tiles =
            (opt_count(md, keys::PREPROC_MIN_TILES)?, opt_count(md, keys::PREPROC_MAX_TILES)?);
        if let (Some(lo), Some(hi)) = preproc_tiles {
            if lo > hi {
                return Err(bad(keys::PREPROC_MIN_TILES, format!("{lo} is above preproc_max_tiles {hi}")));
            }
        }
        let preproc_image_size = match md.get(keys::PREPROC_IMAGE_SIZE) {
            None => None,
            Some(_) => Some(dim(md, keys::PREPROC_IMAGE_SIZE, 2 * MAX_IMAGE_SIZE)? as u32),
        };
        Ok(MmprojHparams {
            family,
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
            preproc_tiles,
            preproc_image_size,
        })
    }
}

/// An optional tile count in 1..=[`MAX_PREPROC_TILES`].
fn opt_count(md: &Metadata, key: &str) -> Result<Option<u32>, MmprojError> {
    match md.get(key) {
        None => Ok(None),
        Some(_) => Ok(Some(dim(md, key, MAX_PREPROC_TILES)? as u32)),
    }
}
