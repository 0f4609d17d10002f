//! From an image file to projected embeddings: load (limits checked), plan the tiles, key the
//! result, and run the vision encoder in batches — sequentially, or pipelined so the next batch
//! is rendered and normalised while the ViT works on the current one.

use super::{ImageConfig, ImageTiling, TileBudget, TilingChoice, MAX_VIT_BATCH};
use crate::RuntimeError;
use edgevl_arch::family::VisionFamily;
use edgevl_kernels::{Kernels, ThreadPool};
use edgevl_model::vision::{VisionEncoder, VitWeightOptions};
use edgevl_vision::{load_image, make_tiles, normalize_views, render_views, Plan, RgbImage, Size};
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, LazyLock};

/// The hash of image and mmproj keys: SipHash with keys drawn once per process. With the fixed
/// keys of `DefaultHasher::new()` anyone could search offline for two images of one key (2^32
/// tries for a 64-bit one) and, on a shared server, have one taken for the other from the
/// embedding cache; the keys only ever meet others of the same process.
static KEY_HASHER: LazyLock<RandomState> = LazyLock::new(RandomState::new);

/// A decoded image with its tiling plan and cache key, ready to encode.
#[derive(Debug)]
pub struct PreparedImage {
    /// Names the image in messages (its path).
    pub label: String,
    /// The pixels after EXIF rotation, as RGB.
    pub image: RgbImage,
    /// The tiles the strategy chose.
    pub plan: Plan,
    /// Hash of the pixels, the plan and the projector file: equal keys mean equal embeddings.
    pub key: u64,
}

/// The vision encoder of a session with its image settings.
pub(crate) struct ImageEncoder {
    encoder: VisionEncoder,
    cfg: ImageConfig,
    tiling: ImageTiling,
    /// Most tiles a side the LLM's vocabulary names (SmolVLM's `<row_i_col_j>` tokens).
    max_grid_side: Option<u32>,
    /// Identifies the mmproj file (path, size, modification time) inside cache keys.
    mmproj_id: u64,
}

impl ImageEncoder {
    /// Loads the mmproj at `path` for the kernels of `kernels` and checks it fits an LLM whose
    /// embeddings are `llm_width` wide; grids are kept to `max_grid_side` tiles a side when the
    /// LLM's vocabulary limits them.
    pub(crate) fn open(
        path: &Path,
        kernels: &Kernels,
        cfg: ImageConfig,
        llm_width: usize,
        max_grid_side: Option<u32>,
    ) -> Result<Self, RuntimeError> {
        if !(1..=MAX_VIT_BATCH).contains(&cfg.vit_batch) {
            return Err(RuntimeError::BadSetting(format!(
                "the ViT batch size {} is outside 1..={MAX_VIT_BATCH}",
                cfg.vit_batch
            )));
        }
        let encoder = VisionEncoder::open_with(path, kernels, VitWeightOptions { int8: cfg.vit_int8 })?;
        let hp = encoder.hparams();
        if encoder.n_embd_out() != llm_width {
            return Err(RuntimeError::WidthMismatch {
                mmproj: path.display().to_string(),
                projector: encoder.n_embd_out(),
                llm: llm_width,
            });
        }
        let tiling = ImageTiling::of_mmproj(&cfg, hp, max_grid_side);
        // The tiling settings (alpha, the tile budget) checked now, as the vision crate checks
        // them for every image: a bad one is a setting to refuse at load, not an error per image.
        tiling
            .plan(Size { width: 1, height: 1 }, TileBudget::Default)
            .map_err(|e| RuntimeError::BadSetting(e.to_string()))?;
        let mut h = KEY_HASHER.build_hasher();
        std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()).hash(&mut h);
        if let Ok(meta) = std::fs::metadata(path) {
            meta.len().hash(&mut h);
            meta.modified().ok().hash(&mut h);
        }
        // INT8 weights give other embeddings.
        cfg.vit_int8.hash(&mut h);
        Ok(ImageEncoder { encoder, cfg, tiling, max_grid_side, mmproj_id: h.finish() })
    }

    /// The tiling and preprocessing images get.
    pub(crate) fn tiling(&self) -> &ImageTiling {
        &self.tiling
    }

    /// The tiling images get under `choice` instead of the configured rule (same family, tile
    /// size, limits and preprocessing).
    pub(crate) fn tiling_for(&self, choice: TilingChoice) -> ImageTiling {
        let cfg = ImageConfig { strategy: choice, ..self.cfg.clone() };
        ImageTiling::of_mmproj(&cfg, self.encoder.hparams(), self.max_grid_side)
    }

    /// Embedding rows per view (196 for this project's 384x384 tiles).
    pub(crate) fn tokens_per_view(&self) -> usize {
        self.encoder.tokens_per_tile()
    }

    /// Width of the projected embeddings (the LLM's embedding width).
    pub(crate) fn n_embd(&self) -> usize {
        self.encoder.n_embd_out()
    }

    /// The mmproj's vision family.
    pub(crate) fn family(&self) -> VisionFamily {
        self.encoder.hparams().family
    }

    /// The settings in use.
    pub(crate) fn config(&self) -> &ImageConfig {
        &self.cfg
    }

    /// Reads, decodes and plans the image at `path`.
    pub(crate) fn prepare(&self, path: &Path) -> Result<PreparedImage, RuntimeError> {
        let image = load_image(path, &self.cfg.limits)?;
        self.prepare_decoded(path.display().to_string(), image)
    }

    /// Plans and keys an already decoded image.
    pub(crate) fn prepare_decoded(
        &self,
        label: String,
        image: RgbImage,
    ) -> Result<PreparedImage, RuntimeError> {
        self.prepare_with_budget(label, image, &self.tiling, TileBudget::Default)
    }

    /// Plans (with `tiling`, one of this encoder's: [`ImageEncoder::tiling`] or
    /// [`ImageEncoder::tiling_for`], under `budget`) and keys an already decoded image.
    pub(crate) fn prepare_with_budget(
        &self,
        label: String,
        image: RgbImage,
        tiling: &ImageTiling,
        budget: TileBudget,
    ) -> Result<PreparedImage, RuntimeError> {
        let plan = tiling.plan(image.size(), budget)?;
        let mut h = KEY_HASHER.build_hasher();
        self.mmproj_id.hash(&mut h);
        self.tiling.family.hash(&mut h);
        plan.hash(&mut h);
        image.pixels().hash(&mut h);
        // InternVL's and SmolVLM's processors paint it white first: the same pixels with another
        // transparent colour (a PNG's tRNS, a GIF's transparent index) are another image.
        image.transparent_colour().hash(&mut h);
        Ok(PreparedImage { label, image, plan, key: h.finish() })
    }

    /// The embeddings `[views * 196, d]` of a prepared image, global view first, computed
    /// `vit_batch` views at a time; `stop` is checked between batches, and `encoded(views)` is
    /// called after each with the views encoded so far.
    pub(crate) fn encode(
        &self,
        p: &PreparedImage,
        pool: &ThreadPool,
        stop: &AtomicBool,
        encoded: &dyn Fn(usize),
    ) -> Result<Vec<f32>, RuntimeError> {
        let batch = self.cfg.vit_batch;
        let mut out = Vec::new();
        let mut views = 0;
        let mut encode_batch = |tiles: &[f32], n: usize| -> Result<(), RuntimeError> {
            if stop.load(Ordering::Relaxed) {
                return Err(RuntimeError::Cancelled);
            }
            out.extend(self.encoder.encode_tiles(tiles, n, n, pool)?);
            views += n;
            encoded(views);
            Ok(())
        };
        if !self.cfg.pipelined {
            let tiles = make_tiles(&p.image, &p.plan, &self.tiling.preprocess)?;
            let tl = tiles.tile_len();
            for chunk in tiles.data().chunks(batch * tl) {
                encode_batch(chunk, chunk.len() / tl)?;
            }
            return Ok(out);
        }
        // Pipelined: a second thread renders and normalises batch k + 1 while the ViT runs
        // batch k. The encoder's rows do not depend on how the views are split into batches.
        std::thread::scope(|s| {
            let (tx, rx) = mpsc::sync_channel(1);
            s.spawn(move || {
                let views = match render_views(&p.image, &p.plan, &self.tiling.preprocess) {
                    Ok(v) => v,
                    Err(e) => {
                        let _ = tx.send(Err(RuntimeError::from(e)));
                        return;
                    }
                };
                for group in views.chunks(batch) {
                    if tx
                        .send(
                            normalize_views(group, &self.tiling.preprocess.norm).map_err(RuntimeError::from),
                        )
                        .is_err()
                    {
                        return;
                    }
                }
            });
            for tiles in rx {
                let tiles = tiles?;
                encode_batch(tiles.data(), tiles.n_tiles())?;
            }
            Ok::<(), RuntimeError>(())
        })?;
        Ok(out)
    }
}
