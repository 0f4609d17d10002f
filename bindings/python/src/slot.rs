//! One conversation of a loaded model (a runtime `Session`) and the reply being generated in
//! it, stepped one token at a time under a short lock, so that other Python threads, other
//! conversations and `stats()` are never kept waiting for a whole reply; and the runner that
//! lets a Ctrl-C in the main thread stop a generation running with the GIL released.

use crate::EdgevlError;
use edgevl_runtime::{
    Finish, Generation, Progress, ProgressFn, RuntimeError, Sampler, SamplerConfig, Session,
};
use parking_lot::MutexGuard as FairGuard;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How often a thread waiting for a generation looks for a Ctrl-C.
const SIGNAL_POLL: Duration = Duration::from_millis(20);

/// A conversation slot: the session and its turn in progress, if any.
pub(crate) struct Slot {
    /// A fair lock: a step hands it to a waiting thread ([`Slot::step`]); std's mutex let the
    /// stepping thread take it back first, keeping another thread's call waiting for many tokens.
    state: parking_lot::Mutex<SlotState>,
    /// The session's cancel flag (stops the turn between two prefill chunks or two tokens).
    cancel: Arc<AtomicBool>,
    /// A turn to close the next time the slot is locked (0: none), for a stream dropped while
    /// another thread held the slot.
    close_requested: AtomicU64,
    /// Last, so it is dropped after the session: gives the freed KV cache back to the system.
    _trim: TrimOnDrop,
}

/// Returns the memory freed before it to the system when dropped (see
/// [`edgevl_kernels::heap::return_freed_memory`]): without it a burst of concurrent `chat` calls
/// left the process at its peak after the extra slots were freed (1.37 GB against 0.53 GB).
struct TrimOnDrop;

impl Drop for TrimOnDrop {
    fn drop(&mut self) {
        edgevl_kernels::heap::return_freed_memory();
    }
}

pub(crate) struct SlotState {
    /// The runtime session.
    pub(crate) session: Session,
    turn: Option<Turn>,
    next_id: u64,
}

/// A reply in progress.
struct Turn {
    id: u64,
    generation: Generation,
    sampler: Sampler,
    /// True for a session's turn: the reply becomes an assistant message when it ends.
    /// `Model.chat` replies are not kept (the next request carries the whole conversation).
    keep_reply: bool,
}

/// What one step of a turn gave.
pub(crate) struct Step {
    /// The text the step completed (may be empty).
    pub(crate) text: String,
    /// Why the turn ended, once it has (the turn is then closed).
    pub(crate) finish: Option<Finish>,
    /// The turn was no longer the slot's: closed, or replaced by another call's turn.
    pub(crate) superseded: bool,
}

/// Locks `m`, recovering the data if a thread panicked while holding it (the slot's session is
/// only changed through the runtime's methods, which leave it consistent at every return).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Slot {
    /// A slot for `session`.
    pub(crate) fn new(session: Session) -> Self {
        let cancel = session.cancel_flag();
        let state = parking_lot::Mutex::new(SlotState { session, turn: None, next_id: 0 });
        Slot { state, cancel, close_requested: AtomicU64::new(0), _trim: TrimOnDrop }
    }

    /// The session's cancel flag.
    pub(crate) fn cancel_flag(&self) -> &AtomicBool {
        &self.cancel
    }

    /// Locks the slot (call with the GIL released: another thread may hold it for a step),
    /// closing first a turn whose stream was dropped meanwhile.
    pub(crate) fn lock(&self) -> FairGuard<'_, SlotState> {
        let mut st = self.state.lock();
        st.close_if_requested(&self.close_requested);
        st
    }

    /// Starts a turn with `start` (which prefills and samples the first token), closing the
    /// turn in progress first; returns the new turn's id.
    pub(crate) fn begin(
        &self,
        sampler: SamplerConfig,
        keep_reply: bool,
        start: impl FnOnce(&mut Session, &mut Sampler) -> Result<Generation, RuntimeError>,
    ) -> Result<u64, RuntimeError> {
        let mut st = self.lock();
        st.end_turn();
        let mut sampler = Sampler::new(sampler);
        let generation = start(&mut st.session, &mut sampler)?;
        st.next_id += 1;
        let id = st.next_id;
        st.turn = Some(Turn { id, generation, sampler, keep_reply });
        Ok(id)
    }

    /// One token of turn `id`; a turn that was closed (or replaced) gives an empty, finished
    /// step. The turn is closed when it finishes or fails. The lock goes to a thread waiting for
    /// it, if any, before the next step can take it back.
    pub(crate) fn step(&self, id: u64) -> Result<Step, RuntimeError> {
        let mut st = self.lock();
        let SlotState { session, turn, .. } = &mut *st;
        let Some(t) = turn.as_mut().filter(|t| t.id == id) else {
            return Ok(Step { text: String::new(), finish: Some(Finish::Cancelled), superseded: true });
        };
        let result = session.step(&mut t.generation, &mut t.sampler);
        let finish = t.generation.finish();
        if result.is_err() || finish.is_some() {
            st.end_turn();
        }
        FairGuard::unlock_fair(st);
        result.map(|text| Step { text, finish, superseded: false })
    }

    /// Closes turn `id` if it is still in progress (its reply, as far as it got, is kept as
    /// for a finished turn).
    pub(crate) fn close(&self, id: u64) {
        self.lock().close(id);
    }

    /// As [`Slot::close`] without waiting: when another thread holds the slot (a prefill may take
    /// seconds), the turn is closed the next time the slot is locked. For a stream's `Drop`, which
    /// runs on whichever thread lets go of it, with the GIL held.
    pub(crate) fn close_soon(&self, id: u64) {
        match self.state.try_lock() {
            Some(mut st) => st.close(id),
            // Ids only grow, and only the newest can be the turn in progress.
            None => {
                self.close_requested.fetch_max(id, Ordering::Relaxed);
            }
        }
    }

    /// Steps turn `id` to its end; returns the reply. An `EdgevlError` if another call ended the
    /// turn first: its reply would be cut short with no sign of it.
    pub(crate) fn finish(&self, id: u64) -> PyResult<String> {
        let mut reply = String::new();
        loop {
            let step = self.step(id).map_err(crate::runtime_error)?;
            if step.superseded {
                return Err(EdgevlError::new_err(
                    "the reply was cut short by another call on this session, from another thread or from \
                     a progress callback (a session runs one turn at a time: use one session per thread, or \
                     Model.chat)",
                ));
            }
            reply.push_str(&step.text);
            if step.finish.is_some() {
                return Ok(reply);
            }
        }
    }
}

impl SlotState {
    /// Closes turn `id` if it is the one in progress.
    fn close(&mut self, id: u64) {
        if self.turn.as_ref().is_some_and(|t| t.id == id) {
            self.end_turn();
        }
    }

    /// Closes the turn `requested` names, if any (see [`Slot::close_soon`]).
    fn close_if_requested(&mut self, requested: &AtomicU64) {
        match requested.swap(0, Ordering::Relaxed) {
            0 => {}
            id => self.close(id),
        }
    }

    /// Closes the turn in progress, if any: counted in the session's totals and, for a
    /// session's turn, its reply added as the assistant message (or, stopped before its first
    /// token, the question taken back: [`edgevl_runtime::Session::end_turn`]).
    pub(crate) fn end_turn(&mut self) {
        if let Some(t) = self.turn.take() {
            if t.keep_reply {
                self.session.end_turn(t.generation);
            } else {
                self.session.end_reply(t.generation);
            }
        }
    }
}

/// How a turn was started by [`run_turn`].
pub(crate) enum Started {
    /// Streaming: the turn's id, to step it.
    Stream(u64),
    /// Run to its end: the reply.
    Done(String),
}

/// Starts a turn on `slot` with `start` and, unless `stream`, runs it to its end, with the GIL
/// released and Ctrl-C stopping it ([`interruptible`]); an interrupted stream is closed.
/// `progress` is called on this thread with `(step, done, total)` as the turn waits for its images
/// ("image", views) and prefills ("prefill", positions); an exception it raises stops the turn as a
/// Ctrl-C does and is raised.
pub(crate) fn run_turn(
    py: Python<'_>,
    slot: &Slot,
    sampler: SamplerConfig,
    keep_reply: bool,
    (stream, progress): (bool, Option<Py<PyAny>>),
    start: impl FnOnce(&mut Session, &mut Sampler) -> Result<Generation, RuntimeError> + Send,
) -> PyResult<Started> {
    let relay = ProgressRelay::new(progress);
    let observer = relay.observer();
    let (out, interrupted) = interruptible(py, slot.cancel_flag(), &mut |py| relay.deliver(py), || {
        let id = slot
            .begin(sampler, keep_reply, |session, sampler| {
                session.set_progress(observer);
                let generation = start(session, sampler);
                session.set_progress(None);
                generation
            })
            .map_err(crate::runtime_error)?;
        if stream {
            Ok(Started::Stream(id))
        } else {
            slot.finish(id).map(Started::Done)
        }
    });
    let out = out?;
    if let Some(e) = interrupted {
        if let Ok(Started::Stream(id)) = out {
            slot.close(id);
        }
        return Err(e);
    }
    out
}

/// A Python callable `(step, done, total)` told of a call's [`Progress`] on the calling thread: the
/// observer queues each report (from any thread) and wakes the calling thread, whose wait loop
/// ([`interruptible`]) delivers the queue with the GIL.
pub(crate) struct ProgressRelay {
    callable: Option<Py<PyAny>>,
    queue: Arc<Mutex<Vec<Progress>>>,
}

impl ProgressRelay {
    /// A relay to `callable` (none: nothing is queued or called).
    pub(crate) fn new(callable: Option<Py<PyAny>>) -> Self {
        ProgressRelay { callable, queue: Arc::new(Mutex::new(Vec::new())) }
    }

    /// The observer to give the runtime (`None` without a callable); call from the thread that
    /// will deliver.
    pub(crate) fn observer(&self) -> Option<ProgressFn> {
        self.callable.as_ref()?;
        let (queue, caller) = (self.queue.clone(), std::thread::current());
        Some(Arc::new(move |p| {
            lock(&queue).push(p);
            caller.unpark();
        }))
    }

    /// Calls the callable with each queued report, in order; stops at the first exception.
    pub(crate) fn deliver(&self, py: Python<'_>) -> PyResult<()> {
        let Some(f) = &self.callable else { return Ok(()) };
        // Taken out first: the lock is not held while the callable runs (the turn's thread pushes to it).
        let reports = std::mem::take(&mut *lock(&self.queue));
        for p in reports {
            f.call1(py, p.parts())?;
        }
        Ok(())
    }
}

/// Runs `work` on a helper thread while this thread, with the GIL released, waits for it and
/// looks for a Ctrl-C every few milliseconds (Python runs signal handlers only in the main
/// thread, and only when asked), calling `poll` with the GIL at each look and once more at the end.
/// On a KeyboardInterrupt (or any exception a signal handler or `poll` raises) `cancel` is set
/// until `work` returns, which stops the generation at its next check, and the exception is
/// returned beside `work`'s result (the caller raises it once it has tidied up). A panic of
/// `work` is an `EdgevlError`.
pub(crate) fn interruptible<T: Send>(
    py: Python<'_>,
    cancel: &AtomicBool,
    poll: &mut dyn FnMut(Python<'_>) -> PyResult<()>,
    work: impl FnOnce() -> T + Send,
) -> (PyResult<T>, Option<PyErr>) {
    let mut interrupted: Option<PyErr> = None;
    let caller = std::thread::current();
    let joined = std::thread::scope(|s| {
        let worker = s.spawn(move || {
            let out = work();
            caller.unpark();
            out
        });
        loop {
            let finished = worker.is_finished();
            if interrupted.is_none() {
                interrupted = py.check_signals().and_then(|_| poll(py)).err();
            }
            if finished {
                break;
            }
            if interrupted.is_some() {
                // Set again at every poll: a turn clears the flag when its prefill starts.
                cancel.store(true, Ordering::Relaxed);
            }
            py.detach(|| std::thread::park_timeout(SIGNAL_POLL));
        }
        worker.join()
    });
    let out = joined.map_err(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        EdgevlError::new_err(format!("internal error (a worker thread panicked: {what})"))
    });
    (out, interrupted)
}

/// The generation options `chat` and `ask` take as keyword arguments (defaults as `edgevl
/// run`'s): `max_tokens` (128; None = to the end of the context), `temperature` (0.8; 0 =
/// greedy), `top_p` (0.95), `top_k` (40), `min_p` (0.05), `repeat_penalty` (1.0),
/// `frequency_penalty` and `presence_penalty` (0.0), `seed` (None or -1: a new random seed, as
/// `edgevl run` without `--seed`), `stream` (False),
/// `progress` (None; see [`run_turn`]).
pub(crate) struct GenOptions {
    /// Tokens to generate at most.
    pub(crate) n_predict: usize,
    /// The sampler's settings.
    pub(crate) sampler: SamplerConfig,
    /// Return a `TextStream` instead of the text.
    pub(crate) stream: bool,
    /// Called with the turn's progress.
    pub(crate) progress: Option<Py<PyAny>>,
}

impl GenOptions {
    /// Reads the keyword arguments of `function` (TypeError for an unknown one, ValueError for
    /// a bad value).
    pub(crate) fn from_kwargs(function: &str, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        // Without a `seed`, a new random one (the runtime's default seed is fixed).
        let sampler = SamplerConfig { seed: edgevl_runtime::random_seed(), ..SamplerConfig::default() };
        let mut o = GenOptions { n_predict: 128, sampler, stream: false, progress: None };
        let c = &mut o.sampler;
        for (key, value) in kwargs.into_iter().flat_map(|kw| kw.iter()) {
            let key: String = key.extract()?;
            match key.as_str() {
                "max_tokens" => {
                    o.n_predict = match value.extract::<Option<i64>>()? {
                        None => usize::MAX,
                        Some(n) => usize::try_from(n).map_err(|_| {
                            PyValueError::new_err(format!("max_tokens must be >= 0 or None, got {n}"))
                        })?,
                    }
                }
                "temperature" => c.temp = finite(&key, value.extract()?)?,
                "top_p" => c.top_p = finite(&key, value.extract()?)?,
                "top_k" => c.top_k = crate::count("top_k", value.extract()?)?,
                "min_p" => c.min_p = finite(&key, value.extract()?)?,
                "repeat_penalty" => c.repeat_penalty = finite(&key, value.extract()?)?,
                "frequency_penalty" => c.frequency_penalty = finite(&key, value.extract()?)?,
                "presence_penalty" => c.presence_penalty = finite(&key, value.extract()?)?,
                "seed" => {
                    c.seed =
                        edgevl_runtime::requested_seed(value.extract()?).map_err(PyValueError::new_err)?
                }
                "stream" => o.stream = value.extract()?,
                "progress" => o.progress = callable("progress", Some(&value))?,
                _ => {
                    return Err(PyTypeError::new_err(format!(
                        "{function}() got an unexpected keyword argument '{key}'"
                    )))
                }
            }
        }
        c.check().map_err(PyValueError::new_err)?;
        Ok(o)
    }
}

/// `value` when it is callable, `None` for None, else a TypeError naming the argument `name`.
pub(crate) fn callable(name: &str, value: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Py<PyAny>>> {
    match value {
        None => Ok(None),
        Some(v) if v.is_none() => Ok(None),
        Some(v) if v.is_callable() => Ok(Some(v.clone().unbind())),
        Some(v) => Err(PyTypeError::new_err(format!(
            "{name} must be a callable (step, done, total) or None, got {}",
            v.get_type().name()?
        ))),
    }
}

fn finite(name: &str, v: f32) -> PyResult<f32> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(PyValueError::new_err(format!("{name} must be a finite number, got {v}")))
    }
}
