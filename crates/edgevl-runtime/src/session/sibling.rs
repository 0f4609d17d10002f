//! What new conversations on a loaded model are made from, without a lock on a session in use.

use super::{Session, Totals};
use crate::image::BackgroundEncoder;
use crate::RuntimeError;
use edgevl_kernels::ThreadPool;
use edgevl_model::{Decoder, KvCache, KvType};
use edgevl_tokenizer::{ChatTemplate, Tokenizer};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The parts a session shares with its siblings (weights, tokenizer, chat template, thread pool,
/// image encoder) and the sizes of their own (context, KV type, chunk): it makes new, empty
/// conversations while the session it came from runs a turn ([`Session::sibling_maker`]).
#[derive(Clone)]
pub struct SiblingMaker {
    pub(super) decoder: Arc<Decoder>,
    pub(super) tokenizer: Tokenizer,
    pub(super) template: ChatTemplate,
    pub(super) has_template: bool,
    pub(super) pool: Arc<ThreadPool>,
    pub(super) n_ctx: usize,
    pub(super) kv_type: KvType,
    pub(super) chunk: usize,
    pub(super) load_ms: f64,
    pub(super) image_parts: bool,
    pub(super) content_parts: bool,
    pub(super) vision: Option<Arc<BackgroundEncoder>>,
}

impl SiblingMaker {
    /// A new, empty conversation, as [`Session::sibling`] makes one.
    pub fn make(&self) -> Result<Session, RuntimeError> {
        let kv = self.decoder.try_new_cache(self.n_ctx, self.kv_type)?;
        Ok(self.clone().with_cache(kv))
    }

    /// The new, empty conversation these parts make on `kv` (of `n_ctx` positions), with scratch
    /// of its own ([`Session::load`] makes the first one so, its cache allocated before the mmproj
    /// is opened).
    pub(super) fn with_cache(self, kv: KvCache) -> Session {
        let state = self.decoder.new_state(self.chunk, self.n_ctx);
        Session {
            decoder: self.decoder,
            tokenizer: self.tokenizer,
            template: self.template,
            has_template: self.has_template,
            pool: self.pool,
            kv,
            state,
            chunk: self.chunk,
            // The model's load: a sibling's stats report it as the session's do.
            load_ms: self.load_ms,
            messages: Vec::new(),
            cells: Vec::new(),
            cancel: Arc::new(AtomicBool::new(false)),
            progress: None,
            totals: Totals::default(),
            pending_images: Vec::new(),
            images: Vec::new(),
            image_parts: self.image_parts,
            content_parts: self.content_parts,
            vision: self.vision,
        }
    }
}

impl Session {
    /// What new conversations on this loaded model are made from: held apart from the session,
    /// it makes siblings while the session itself is busy (a lock on the session would wait out
    /// its turn).
    pub fn sibling_maker(&self) -> SiblingMaker {
        SiblingMaker {
            decoder: self.decoder.clone(),
            tokenizer: self.tokenizer.clone(),
            template: self.template.clone(),
            has_template: self.has_template,
            pool: self.pool.clone(),
            n_ctx: self.kv.n_ctx(),
            kv_type: self.kv.kv_type(),
            chunk: self.chunk,
            load_ms: self.load_ms,
            image_parts: self.image_parts,
            content_parts: self.content_parts,
            vision: self.vision.clone(),
        }
    }

    /// A new, empty conversation on the same loaded model: it shares the weights, tokenizer,
    /// chat template, thread pool and image encoder (with its embedding cache) with `self`, and
    /// has a KV cache and scratch of its own, of the same size and chunk. Siblings are meant to
    /// be driven from one thread, one forward pass at a time (they share the thread pool).
    pub fn sibling(&self) -> Result<Session, RuntimeError> {
        self.sibling_maker().make()
    }
}
