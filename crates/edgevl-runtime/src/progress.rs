//! Progress of a turn's long steps, for a front end to show while the user waits: the image's
//! views through the ViT and the prompt's positions through the decoder.

use std::sync::Arc;

/// One step of a long turn, as [`crate::Session::set_progress`]'s observer receives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// `done` of an image's `total` views encoded, while a turn waits for the image (first the views encoded so
    /// far, 0 if none, then after each ViT batch; nothing for an image whose embeddings are ready).
    ImageViews {
        /// Views encoded so far.
        done: usize,
        /// The image's views.
        total: usize,
    },
    /// `done` of a prefill's `total` positions through the decoder (at 0 when it starts, then after each chunk;
    /// positions reused from the KV cache are not counted).
    Prefill {
        /// Positions computed so far.
        done: usize,
        /// Positions this prefill computes.
        total: usize,
    },
}

impl Progress {
    /// The step's name as the front ends give it (`"image"` or `"prefill"`), and its `done` and `total`.
    pub fn parts(self) -> (&'static str, usize, usize) {
        match self {
            Progress::ImageViews { done, total } => ("image", done, total),
            Progress::Prefill { done, total } => ("prefill", done, total),
        }
    }
}

/// Receives [`Progress`], on the session's thread.
pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;
