//! Image encoding off the conversation's thread: a worker with its own thread pool encodes
//! attached images while the user types and the text is prefilled; results land in the
//! embedding cache, so an image attached again is not encoded again.

use super::cache::EmbeddingCache;
use super::encoder::{ImageEncoder, PreparedImage};
use crate::{Progress, RuntimeError};
use edgevl_kernels::ThreadPool;
use edgevl_vision::Plan;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

/// What an attached image will put in the prompt.
#[derive(Clone, Debug)]
pub struct ImageInfo {
    /// The image's label (its path).
    pub label: String,
    /// The tiling plan.
    pub plan: Plan,
    /// Prompt positions it occupies (views x 196).
    pub n_tokens: usize,
    /// Content key (pixels + plan + projector).
    pub key: u64,
    /// True when its embeddings were already cached (or being computed) when it was attached.
    pub cached: bool,
}

/// The outcome of one encoding, shared between the worker and the images waiting for it.
type Outcome = Result<Arc<[f32]>, String>;

/// One encoding's result slot, and how far the encoding has got.
#[derive(Default)]
struct Slot {
    state: Mutex<SlotState>,
    changed: Condvar,
}

/// What a [`Slot`] holds: the outcome once there is one, and the views encoded after each ViT batch so far.
#[derive(Default)]
struct SlotState {
    outcome: Option<Outcome>,
    batches: Vec<usize>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere cannot leave these plain containers half-updated.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Slot {
    fn finish(&self, outcome: Outcome) {
        lock(&self.state).outcome = Some(outcome);
        self.changed.notify_all();
    }

    /// Records that `views` views are encoded (after a ViT batch).
    fn advance(&self, views: usize) {
        lock(&self.state).batches.push(views);
        self.changed.notify_all();
    }

    /// Blocks until the outcome is there. Unless it already is, first tells `on_views` the views encoded so far
    /// (0 before the first batch) and runs `started` (which may queue the job), then tells it of each batch
    /// after that one, in order, the last before returning. `on_views` runs on this thread with no lock held.
    fn wait(&self, on_views: &mut dyn FnMut(usize), started: impl FnOnce()) -> Outcome {
        let mut st = lock(&self.state);
        if let Some(o) = &st.outcome {
            return o.clone();
        }
        let (mut seen, so_far) = (st.batches.len(), st.batches.last().copied().unwrap_or(0));
        drop(st);
        on_views(so_far);
        started();
        st = lock(&self.state);
        loop {
            if st.batches.len() > seen {
                let new = st.batches[seen..].to_vec();
                seen = st.batches.len();
                drop(st);
                new.into_iter().for_each(&mut *on_views);
                st = lock(&self.state);
            } else if let Some(o) = &st.outcome {
                return o.clone();
            } else {
                st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        }
    }
}

/// A request for the worker.
struct Job {
    image: PreparedImage,
    slot: Arc<Slot>,
}

/// Counters and caches shared with the worker.
struct Shared {
    cache: Mutex<EmbeddingCache>,
    in_flight: Mutex<HashMap<u64, Arc<Slot>>>,
    tiles_encoded: AtomicUsize,
    cache_hits: AtomicUsize,
    /// Wall time of the worker's encodings, in microseconds.
    encode_us: AtomicUsize,
    /// Set when the session goes away: the worker stops between two ViT batches.
    stop: AtomicBool,
}

/// True (and the job dropped from the in-flight map) when nothing holds the job's result slot
/// but the job and that map: every image that would wait for it was dropped (a refused turn, a
/// reset, a client that left), so it is not encoded. Checked with the map locked, where a new
/// request for the same image would take the slot.
fn abandoned(job: &Job, shared: &Shared) -> bool {
    let mut in_flight = lock(&shared.in_flight);
    let in_map = in_flight.get(&job.image.key).is_some_and(|s| Arc::ptr_eq(s, &job.slot));
    if Arc::strong_count(&job.slot) > 1 + usize::from(in_map) {
        return false;
    }
    if in_map {
        in_flight.remove(&job.image.key);
    }
    true
}

/// An attached image whose embeddings may still be on their way.
pub struct PendingImage {
    info: ImageInfo,
    slot: Arc<Slot>,
    /// Set when encoding ahead is off: the job is sent when the embeddings are first needed.
    deferred: Mutex<Option<Job>>,
}

impl PendingImage {
    /// What the image puts in the prompt.
    pub fn info(&self) -> &ImageInfo {
        &self.info
    }
}

/// The worker thread and its queue.
pub(crate) struct BackgroundEncoder {
    encoder: Arc<ImageEncoder>,
    shared: Arc<Shared>,
    tx: Option<mpsc::Sender<Job>>,
    worker: Option<JoinHandle<()>>,
    /// The process the worker thread runs in: a child forked from it has no such thread, and
    /// its images would wait forever.
    pid: u32,
}

impl BackgroundEncoder {
    /// Starts the worker with a pool of `n_threads`.
    pub(crate) fn start(encoder: ImageEncoder, n_threads: usize) -> Self {
        let encoder = Arc::new(encoder);
        let cache = EmbeddingCache::new(encoder.config().cache_mb.saturating_mul(1 << 20));
        let shared = Arc::new(Shared {
            cache: Mutex::new(cache),
            in_flight: Mutex::new(HashMap::new()),
            tiles_encoded: AtomicUsize::new(0),
            cache_hits: AtomicUsize::new(0),
            encode_us: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let (tx, rx) = mpsc::channel::<Job>();
        let (enc, sh) = (encoder.clone(), shared.clone());
        let worker = std::thread::Builder::new()
            .name("edgevl-image".into())
            .spawn(move || {
                let pool = ThreadPool::new(n_threads);
                for job in rx {
                    let key = job.image.key;
                    if abandoned(&job, &sh) {
                        continue;
                    }
                    // The same image may have been queued twice while encoding ahead was off (its waiter may
                    // have been told 0 views: all are done).
                    if let Some(rows) = lock(&sh.cache).get(key) {
                        lock(&sh.in_flight).remove(&key);
                        job.slot.advance(job.image.plan.views() as usize);
                        job.slot.finish(Ok(rows));
                        continue;
                    }
                    let t0 = Instant::now();
                    let total = job.image.plan.views() as usize;
                    let encoded = |views| job.slot.advance(views);
                    let outcome = enc.encode(&job.image, &pool, &sh.stop, &encoded).map(Arc::<[f32]>::from);
                    sh.encode_us.fetch_add(t0.elapsed().as_micros() as usize, Ordering::Relaxed);
                    if let Ok(rows) = &outcome {
                        sh.tiles_encoded.fetch_add(total, Ordering::Relaxed);
                        lock(&sh.cache).insert(key, rows.clone());
                    }
                    lock(&sh.in_flight).remove(&key);
                    job.slot.finish(outcome.map_err(|e| e.to_string()));
                }
            })
            .ok();
        BackgroundEncoder { encoder, shared, tx: Some(tx), worker, pid: std::process::id() }
    }

    /// An error in a process forked after the encoder started (its worker thread is not there).
    fn check_process(&self) -> Result<(), RuntimeError> {
        if std::process::id() == self.pid {
            return Ok(());
        }
        Err(RuntimeError::BadSetting(
            "this process was forked after the model was loaded, and the image encoder's thread \
             exists only in its parent; load the model in the process that uses images"
                .into(),
        ))
    }

    /// The encoder (for preparing images on the caller's thread).
    pub(crate) fn encoder(&self) -> &ImageEncoder {
        &self.encoder
    }

    /// Queues `image` (at once when `ahead`, else when first waited for) unless its embeddings
    /// are cached or already being computed.
    pub(crate) fn submit(&self, image: PreparedImage, ahead: bool) -> Result<PendingImage, RuntimeError> {
        self.check_process()?;
        let n_tokens = image.plan.views() as usize * self.encoder.tokens_per_view();
        let mut info = ImageInfo {
            label: image.label.clone(),
            plan: image.plan,
            n_tokens,
            key: image.key,
            cached: true,
        };
        let in_flight = match self.find_locked(&info) {
            Ok(found) => return Ok(found),
            Err(in_flight) => in_flight,
        };
        let (Some(tx), true) = (&self.tx, self.worker.is_some()) else {
            return Err(RuntimeError::ImageEncode {
                image: image.label,
                message: "the image encoder thread could not be started".into(),
            });
        };
        info.cached = false;
        let slot = Arc::new(Slot::default());
        let job = Job { image, slot: slot.clone() };
        let mut in_flight = in_flight;
        // Only queued work is "in flight": a deferred job may never be sent.
        let deferred = if ahead {
            in_flight.insert(info.key, slot.clone());
            drop(in_flight);
            send(tx, job);
            None
        } else {
            Some(job)
        };
        Ok(PendingImage { info, slot, deferred: Mutex::new(deferred) })
    }

    /// The image `info` describes (its key), when its embeddings are cached or being computed;
    /// counts a cache hit when found.
    pub(crate) fn find(&self, info: &ImageInfo) -> Option<PendingImage> {
        self.find_locked(info).ok()
    }

    /// [`BackgroundEncoder::find`], or the locked in-flight map when not found (so a caller
    /// can queue the image without a race).
    fn find_locked(&self, info: &ImageInfo) -> Result<PendingImage, MutexGuard<'_, HashMap<u64, Arc<Slot>>>> {
        let info = ImageInfo { cached: true, ..info.clone() };
        if let Some(rows) = lock(&self.shared.cache).get(info.key) {
            self.shared.cache_hits.fetch_add(1, Ordering::Relaxed);
            let slot = Arc::new(Slot::default());
            slot.finish(Ok(rows));
            return Ok(PendingImage { info, slot, deferred: Mutex::new(None) });
        }
        let in_flight = lock(&self.shared.in_flight);
        match in_flight.get(&info.key) {
            Some(slot) => {
                self.shared.cache_hits.fetch_add(1, Ordering::Relaxed);
                Ok(PendingImage { info, slot: slot.clone(), deferred: Mutex::new(None) })
            }
            None => Err(in_flight),
        }
    }

    /// Blocks until the embeddings of `image` are ready (first queueing it if it was deferred), telling
    /// `on_progress` of the views encoded ([`Progress::ImageViews`]) as [`Slot::wait`] does (nothing when they are
    /// ready at once).
    pub(crate) fn wait(
        &self,
        image: &PendingImage,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<Arc<[f32]>, RuntimeError> {
        self.check_process()?;
        // A deferred image whose embeddings another job has put in the cache since: ready, nothing to tell.
        let mut deferred = lock(&image.deferred);
        if deferred.is_some() {
            if let Some(rows) = lock(&self.shared.cache).get(image.info.key) {
                *deferred = None;
                image.slot.finish(Ok(rows));
            }
        }
        drop(deferred);
        let queue = || {
            if let Some(job) = lock(&image.deferred).take() {
                match &self.tx {
                    Some(tx) => send(tx, job),
                    None => job.slot.finish(Err("the image encoder has stopped".into())),
                }
            }
        };
        let total = image.info.plan.views() as usize;
        image
            .slot
            .wait(&mut |done| on_progress(Progress::ImageViews { done, total }), queue)
            .map_err(|message| RuntimeError::ImageEncode { image: image.info.label.clone(), message })
    }

    /// Views run through the ViT so far.
    pub(crate) fn tiles_encoded(&self) -> usize {
        self.shared.tiles_encoded.load(Ordering::Relaxed)
    }

    /// Attached images whose embeddings were found cached or in flight.
    pub(crate) fn cache_hits(&self) -> usize {
        self.shared.cache_hits.load(Ordering::Relaxed)
    }

    /// Total wall time of the worker's encodings, in milliseconds.
    pub(crate) fn encode_ms(&self) -> f64 {
        self.shared.encode_us.load(Ordering::Relaxed) as f64 / 1e3
    }

    /// Images and bytes in the embedding cache.
    pub(crate) fn cache_usage(&self) -> (usize, usize) {
        let c = lock(&self.shared.cache);
        (c.len(), c.used_bytes())
    }
}

/// Queues `job`, failing its slot if the worker is gone.
fn send(tx: &mpsc::Sender<Job>, job: Job) {
    if let Err(mpsc::SendError(job)) = tx.send(job) {
        job.slot.finish(Err("the image encoder has stopped".into()));
    }
}

impl Drop for BackgroundEncoder {
    fn drop(&mut self) {
        // Closing the queue ends the worker; the stop flag cuts the job in hand short.
        self.shared.stop.store(true, Ordering::Relaxed);
        self.tx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}
