//! What the handlers share: settings, the loaded model's facts (once loaded), the job channel
//! to the engine, the admission bound and the image gate, the upload registry and the metrics.

use crate::engine::Job;
use crate::error::ApiError;
use crate::images::{ImageLimits, Uploads};
use crate::metrics::Metrics;
use edgevl_runtime::{ImageConfig, ImageEncoderHandle};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use tokio::sync::Semaphore;

/// Facts about the loaded model, published by the engine thread once it has loaded.
pub struct Ready {
    /// The model's id in `/v1/models` (its file name without `.gguf`).
    pub model_id: String,
    /// The image encoder (with an mmproj).
    pub vision: Option<ImageEncoderHandle>,
    /// Vocabulary size (bounds `logit_bias` ids).
    pub n_vocab: usize,
    /// Context size of each slot.
    pub n_ctx: usize,
}

/// The limits on request bodies.
pub struct BodyLimits {
    /// Largest body.
    pub max_bytes: usize,
    /// Longest time a body may take to arrive.
    pub timeout: std::time::Duration,
    /// Bytes of bodies held at once, all requests together.
    pub buffered_bytes: usize,
}

/// State shared by the handlers.
pub struct AppState {
    /// Set once the model is loaded.
    pub ready: Arc<OnceLock<Ready>>,
    /// Requests to the engine.
    pub jobs: mpsc::Sender<Job>,
    /// Places for requests in flight (slots + queue): a request that finds none gets a 503.
    pub admit: Arc<Semaphore>,
    /// One request's images are decoded and encoded at a time (bounds pixel memory).
    pub image_gate: Arc<Semaphore>,
    /// `POST /v1/images` ids.
    pub uploads: Arc<Uploads>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Image limits.
    pub limits: ImageLimits,
    /// Image settings (for `/v1/edgevl/tiles` without an mmproj).
    pub image_config: ImageConfig,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Longest time a request body may take to arrive.
    pub body_timeout: std::time::Duration,
    /// Room for request bodies, in bytes, all requests together.
    pub body_budget: Arc<Semaphore>,
    /// Required bearer token.
    pub api_key: Option<String>,
    /// Slots.
    pub parallel: usize,
    /// Seconds since the epoch at start (`created` of the model).
    pub started: u64,
    next_id: AtomicU64,
    /// The cancel flags of the requests sent to the engine, set all at once when the server
    /// stops waiting for them (a prefill in progress then ends at its next chunk).
    cancels: std::sync::Mutex<Vec<std::sync::Weak<std::sync::atomic::AtomicBool>>>,
}

impl AppState {
    /// State around the engine's job channel.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ready: Arc<OnceLock<Ready>>,
        jobs: mpsc::Sender<Job>,
        metrics: Arc<Metrics>,
        limits: ImageLimits,
        image_config: ImageConfig,
        body: BodyLimits,
        api_key: Option<String>,
        parallel: usize,
        queue: usize,
    ) -> Self {
        AppState {
            ready,
            jobs,
            admit: Arc::new(Semaphore::new(parallel + queue)),
            image_gate: Arc::new(Semaphore::new(1)),
            uploads: Arc::new(Uploads::new(4096)),
            metrics,
            limits,
            image_config,
            max_body_bytes: body.max_bytes,
            body_timeout: body.timeout,
            // At least one body of the largest size fits, so a body never waits for room that
            // cannot come (each takes its room at once); at most what a semaphore counts.
            body_budget: Arc::new(Semaphore::new(
                body.buffered_bytes.max(body.max_bytes).min(Semaphore::MAX_PERMITS),
            )),
            api_key,
            parallel,
            started: unix_now(),
            next_id: AtomicU64::new(1),
            cancels: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The loaded model, or a 503 while it loads.
    pub fn ready(&self) -> Result<&Ready, ApiError> {
        self.ready.get().ok_or_else(|| ApiError::unavailable("the model is still loading"))
    }

    /// Keeps `cancel` (a request's flag) to be set by [`AppState::cancel_all`].
    pub fn track_cancel(&self, cancel: &Arc<std::sync::atomic::AtomicBool>) {
        let mut cancels = self.cancels.lock().unwrap_or_else(|e| e.into_inner());
        cancels.retain(|w| w.strong_count() > 0);
        cancels.push(Arc::downgrade(cancel));
    }

    /// Sets the cancel flag of every request still in flight.
    pub fn cancel_all(&self) {
        for flag in self.cancels.lock().unwrap_or_else(|e| e.into_inner()).iter().filter_map(|w| w.upgrade())
        {
            flag.store(true, Ordering::Relaxed);
        }
    }

    /// A fresh completion id.
    pub fn completion_id(&self) -> String {
        format!("chatcmpl-{:x}{:06x}", self.started, self.next_id.fetch_add(1, Ordering::Relaxed))
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
