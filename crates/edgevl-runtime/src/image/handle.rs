//! A session's image encoder seen from other threads: a server decodes and plans an image on
//! the request's thread, starts its encoding at once, and hands the pending image to the thread
//! that owns the sessions ([`crate::Session::set_conversation`]).

use super::background::{BackgroundEncoder, ImageInfo, PendingImage};
use super::{ImageConfig, ImageTiling, TileBudget, TilingChoice};
use crate::{Progress, RuntimeError};
use edgevl_vision::{Plan, RgbImage, Size};
use std::sync::Arc;

/// A cloneable, thread-safe handle on a session's background image encoder and its embedding
/// cache (shared by the session's siblings); from [`crate::Session::image_encoder`].
#[derive(Clone)]
pub struct ImageEncoderHandle {
    inner: Arc<BackgroundEncoder>,
}

impl ImageEncoderHandle {
    pub(crate) fn new(inner: Arc<BackgroundEncoder>) -> Self {
        ImageEncoderHandle { inner }
    }

    /// The image settings of the session.
    pub fn config(&self) -> &ImageConfig {
        self.inner.encoder().config()
    }

    /// Prompt positions one view takes (196 for this project's 2x2 merge).
    pub fn tokens_per_view(&self) -> usize {
        self.inner.encoder().tokens_per_view()
    }

    /// The tiling and preprocessing images get (the mmproj family's, with the session's choices).
    pub fn tiling(&self) -> &ImageTiling {
        self.inner.encoder().tiling()
    }

    /// The plan for an image of `size` under `budget` ([`ImageTiling::plan`]).
    pub fn plan(&self, size: Size, budget: TileBudget) -> Result<Plan, RuntimeError> {
        Ok(self.tiling().plan(size, budget)?)
    }

    /// Plans `image` under `budget`, keys it and starts encoding it in the background at once
    /// (nothing is encoded when its embeddings are cached or already being computed). `label`
    /// names it in errors.
    pub fn prepare(
        &self,
        label: &str,
        image: RgbImage,
        budget: TileBudget,
    ) -> Result<PendingImage, RuntimeError> {
        let enc = self.inner.encoder();
        let prepared = enc.prepare_with_budget(label.to_string(), image, enc.tiling(), budget)?;
        self.inner.submit(prepared, true)
    }

    /// [`ImageEncoderHandle::prepare`] with the tiling rule `strategy` instead of the session's
    /// (at the mmproj family's tile size, limits and preprocessing; `TilingChoice::Family` is
    /// the family's own rule).
    pub fn prepare_with_strategy(
        &self,
        label: &str,
        image: RgbImage,
        strategy: TilingChoice,
        budget: TileBudget,
    ) -> Result<PendingImage, RuntimeError> {
        let enc = self.inner.encoder();
        let prepared =
            enc.prepare_with_budget(label.to_string(), image, &enc.tiling_for(strategy), budget)?;
        self.inner.submit(prepared, true)
    }

    /// The image `info` describes (by its key), if its embeddings are cached or being
    /// computed; `None` once they were evicted.
    pub fn find(&self, info: &ImageInfo) -> Option<PendingImage> {
        self.inner.find(info)
    }

    /// Blocks until the embeddings of `image` are ready; fails when its encoding failed.
    pub fn wait(&self, image: &PendingImage) -> Result<(), RuntimeError> {
        self.inner.wait(image, &mut |_| {}).map(|_| ())
    }

    /// Blocks until the embeddings of `image` are ready and returns them: `[tokens, d]`
    /// row-major, its views in the family's order, as the prompt gets them.
    pub fn embeddings(&self, image: &PendingImage) -> Result<Arc<[f32]>, RuntimeError> {
        self.inner.wait(image, &mut |_| {})
    }

    /// [`ImageEncoderHandle::embeddings`], telling `on_progress` (on this thread) the image's views encoded so far
    /// and then each ViT batch's ([`Progress::ImageViews`]), unless the embeddings are ready at once.
    pub fn embeddings_reporting(
        &self,
        image: &PendingImage,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<Arc<[f32]>, RuntimeError> {
        self.inner.wait(image, on_progress)
    }

    /// Width of the embeddings (the LLM's embedding width).
    pub fn n_embd(&self) -> usize {
        self.inner.encoder().n_embd()
    }

    /// Views run through the ViT since load.
    pub fn tiles_encoded(&self) -> usize {
        self.inner.tiles_encoded()
    }

    /// Images whose embeddings were found cached or in flight, since load.
    pub fn cache_hits(&self) -> usize {
        self.inner.cache_hits()
    }

    /// Images and bytes in the embedding cache.
    pub fn cache_usage(&self) -> (usize, usize) {
        self.inner.cache_usage()
    }
}
