//! `edgevl.Model`: a loaded LLM (and mmproj), stateless chat over OpenAI-style messages, new
//! sessions, and image embeddings.

use crate::images::ImageInput;
use crate::session::{Session, TextStream};
use crate::slot::{callable, interruptible, lock, run_turn, GenOptions, ProgressRelay, Slot, Started};
use crate::tiles::parse_strategy;
use crate::{count, load_error, runtime_error};
use edgevl_runtime::{
    ChatMessage, ImageConfig, ImageEncoderHandle, KvType, RuntimeError, Session as RtSession, SessionConfig,
    SiblingMaker, TileBudget, MEDIA_MARKER,
};
use pyo3::exceptions::{PyKeyError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyString};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

/// What a `Model` shares with its sessions and streams.
pub(crate) struct ModelInner {
    /// The loaded session: `chat`'s first slot.
    primary: Arc<Slot>,
    /// Makes the other slots and sessions (without waiting for a turn on `primary`, which a lock on
    /// it to make a sibling did: a second thread's chat waited out the first one's prefill).
    siblings: SiblingMaker,
    /// `chat`'s slots not in use (a new one is made when all are busy).
    free: Mutex<Vec<Arc<Slot>>>,
    /// The image encoder (None without an mmproj).
    pub(crate) vision: Option<ImageEncoderHandle>,
    path: PathBuf,
    mmproj: Option<PathBuf>,
    n_ctx: usize,
    /// The model's training context (named in context errors).
    n_ctx_train: usize,
    threads: usize,
    load_ms: f64,
}

impl ModelInner {
    /// A new conversation on the loaded model (sharing its weights, thread pool and image
    /// encoder; with a KV cache of its own).
    pub(crate) fn new_slot(&self) -> Result<Arc<Slot>, RuntimeError> {
        Ok(Arc::new(Slot::new(self.siblings.make()?)))
    }

    /// The image encoder, or the runtime's "no vision encoder" error.
    pub(crate) fn vision(&self) -> PyResult<&ImageEncoderHandle> {
        self.vision.as_ref().ok_or_else(|| runtime_error(RuntimeError::NoVision))
    }

    /// A free `chat` slot, preferring the one whose conversation shares the most leading
    /// messages with `messages` (its KV cache then holds the longest prefix); made when none is
    /// free.
    fn checkout(self: &Arc<Self>, messages: &[ChatMessage]) -> Result<Lease, RuntimeError> {
        let best = {
            let mut free = lock(&self.free);
            let shared = |slot: &Arc<Slot>| {
                let st = slot.lock();
                st.session.messages().iter().zip(messages).take_while(|(a, b)| a == b).count()
            };
            let pick = (0..free.len()).max_by_key(|&i| (shared(&free[i]), std::cmp::Reverse(i)));
            pick.map(|i| free.swap_remove(i))
        };
        let slot = match best {
            Some(slot) => slot,
            None => self.new_slot()?,
        };
        Ok(Lease { model: self.clone(), slot })
    }
}

/// The most idle `chat` slots a model keeps: each holds a whole KV cache, so a burst of
/// concurrent chats would otherwise keep its peak memory for the model's life (20 streams left
/// 2 GB behind on SmolLM2 at its 4096 context).
const MAX_IDLE_SLOTS: usize = 4;

/// A `chat` slot in use; back to the free list when dropped (or freed, if enough are idle).
pub(crate) struct Lease {
    model: Arc<ModelInner>,
    slot: Arc<Slot>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut free = lock(&self.model.free);
        // The model's first slot is kept whatever the count (the model holds it anyway).
        if free.len() < MAX_IDLE_SLOTS || Arc::ptr_eq(&self.slot, &self.model.primary) {
            free.push(self.slot.clone());
            if free.len() > MAX_IDLE_SLOTS {
                if let Some(i) = free.iter().position(|s| !Arc::ptr_eq(s, &self.model.primary)) {
                    free.swap_remove(i);
                }
            }
        }
    }
}

/// A loaded model: an LLM (GGUF) and, with `mmproj`, its vision encoder. Every default is
/// `edgevl run`'s.
///
/// Model(path, mmproj=None, threads=None, ctx=None, cache_type="f16", *, chunk=128,
///       strategy="family", alpha=0.1, max_tiles=None, vit_batch=4, image_cache_mb=512,
///       pipelined=False, encode_ahead=True)
///
/// `threads`: compute threads (default: the physical cores). `ctx`: context size (default: the
/// model's, capped at 4096). `cache_type`: "f16", "f32" or "q8_0". `chunk`: prompt positions per
/// prefill pass. Image settings (with `mmproj`): `strategy` ("family" = the mmproj family's own
/// rule, or "relaxed", "llava-next", "internvl", "idefics3"), `alpha`, `max_tiles`, `vit_batch`
/// (views per ViT batch), `image_cache_mb` (embedding cache; 0 = off), `pipelined`,
/// `encode_ahead` (start encoding an image as soon as it is added); given without `mmproj`, which
/// they would not change, they are a ValueError (as `edgevl run` refuses them).
///
/// Raises ModelFileError for a missing or bad file, ValueError for a bad setting. Thread-safe:
/// `chat` from several threads runs on separate KV caches.
#[pyclass(frozen, module = "edgevl")]
pub struct Model {
    inner: Arc<ModelInner>,
}

#[pymethods]
impl Model {
    #[new]
    #[pyo3(signature = (path, mmproj = None, threads = None, ctx = None, cache_type = "f16", *, chunk = 128,
        strategy = None, alpha = None, max_tiles = None, vit_batch = None, image_cache_mb = None,
        pipelined = None, encode_ahead = None),
        text_signature = "(path, mmproj=None, threads=None, ctx=None, cache_type='f16', *, chunk=128, strategy='family', alpha=0.1, max_tiles=None, vit_batch=4, image_cache_mb=512, pipelined=False, encode_ahead=True)")]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        mmproj: Option<PathBuf>,
        threads: Option<i64>,
        ctx: Option<i64>,
        cache_type: &str,
        chunk: i64,
        strategy: Option<&str>,
        alpha: Option<f64>,
        max_tiles: Option<i64>,
        vit_batch: Option<i64>,
        image_cache_mb: Option<i64>,
        pipelined: Option<bool>,
        encode_ahead: Option<bool>,
    ) -> PyResult<Self> {
        if mmproj.is_none() {
            let given = [
                ("strategy", strategy.is_some()),
                ("alpha", alpha.is_some()),
                ("max_tiles", max_tiles.is_some()),
                ("vit_batch", vit_batch.is_some()),
                ("image_cache_mb", image_cache_mb.is_some()),
                ("pipelined", pipelined.is_some()),
                ("encode_ahead", encode_ahead.is_some()),
            ];
            if let Some((name, _)) = given.iter().find(|(_, set)| *set) {
                return Err(PyValueError::new_err(format!(
                    "{name} is an image setting: it needs mmproj= (the vision encoder's file)"
                )));
            }
        }
        let defaults = ImageConfig::default();
        // Counts are read as signed integers: a negative one is a ValueError, not an OverflowError.
        let threads = threads.map(|t| count::<usize>("threads", t)).transpose()?;
        let ctx = ctx.map(|c| count::<usize>("ctx", c)).transpose()?;
        let max_tiles = max_tiles.map(|m| count::<u32>("max_tiles", m)).transpose()?;
        let chunk = count::<usize>("chunk", chunk)?;
        let vit_batch =
            vit_batch.map(|v| count::<usize>("vit_batch", v)).transpose()?.unwrap_or(defaults.vit_batch);
        let image_cache_mb = image_cache_mb
            .map(|v| count::<usize>("image_cache_mb", v))
            .transpose()?
            .unwrap_or(defaults.cache_mb);
        let kv_type = [KvType::F16, KvType::F32, KvType::Q8_0]
            .into_iter()
            .find(|t| t.name() == cache_type)
            .ok_or_else(|| {
            PyValueError::new_err(format!("cache_type {cache_type:?}: expected f16, f32 or q8_0"))
        })?;
        // The kernel overrides the CLI reads (EDGEVL_MAX_SIMD, EDGEVL_FORCE_SCALAR, EDGEVL_NO_PACK),
        // read here, at the binding's edge, when a model is made (they were ignored).
        let kernels = edgevl_kernels::KernelConfig::from_vars(|name| std::env::var(name).ok())
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        let mut cfg = SessionConfig {
            n_ctx: ctx,
            chunk,
            kv_type,
            kernels,
            mmproj: mmproj.clone(),
            image: ImageConfig {
                strategy: strategy.map(parse_strategy).transpose()?.unwrap_or(defaults.strategy),
                alpha: alpha.unwrap_or(defaults.alpha),
                max_tiles,
                vit_batch,
                cache_mb: image_cache_mb,
                pipelined: pipelined.unwrap_or(defaults.pipelined),
                encode_ahead: encode_ahead.unwrap_or(defaults.encode_ahead),
                ..defaults
            },
            ..SessionConfig::default()
        };
        if let Some(t) = threads {
            cfg.n_threads = t;
        }
        let what = match &mmproj {
            Some(mm) => format!("model {} with mmproj {}", path.display(), mm.display()),
            None => format!("model {}", path.display()),
        };
        let session = py.detach(|| RtSession::load(&path, &cfg)).map_err(|e| load_error(&what, e))?;
        let (vision, n_ctx, load_ms) = (session.image_encoder(), session.n_ctx(), session.load_ms());
        let n_ctx_train = session.n_ctx_train();
        let siblings = session.sibling_maker();
        let primary = Arc::new(Slot::new(session));
        let inner = ModelInner {
            free: Mutex::new(vec![primary.clone()]),
            primary,
            siblings,
            vision,
            path,
            mmproj,
            n_ctx,
            n_ctx_train,
            threads: cfg.n_threads,
            load_ms,
        };
        Ok(Model { inner: Arc::new(inner) })
    }

    /// Answer a conversation: `messages` are OpenAI-style dicts, `{"role": "system" | "developer"
    /// | "user" | "assistant", "content": str}` (content may also be a list of `{"type": "text",
    /// "text": ...}` parts). `images` (paths, bytes of image files, numpy HxWx3 uint8 arrays or
    /// PIL images; needs an mmproj) bind to the last user message, at its `<__media__>` markers
    /// (one per image) or, without any, in front of its text.
    ///
    /// Keyword options, defaults as `edgevl run`'s: `max_tokens` (128; None = up to the end of
    /// the context), `temperature` (0.8; 0 = greedy), `top_p` (0.95), `top_k` (40), `min_p`
    /// (0.05), `repeat_penalty` (1.0), `frequency_penalty` and `presence_penalty` (0.0, as
    /// OpenAI's), `seed`, `stream` (False), `progress` (None, or a callable
    /// taking `(step, done, total)`, called on this thread while the images are encoded ("image",
    /// views) and the prompt is prefilled ("prefill", positions); an exception it raises stops the
    /// reply as Ctrl-C does). Returns the reply, or with `stream=True` a `TextStream` iterating
    /// over its pieces. The KV cache is kept between calls: a follow-up that repeats the
    /// conversation so far prefills only what is new. Generation releases the GIL; Ctrl-C stops
    /// it (the KeyboardInterrupt is raised once it has stopped).
    #[pyo3(signature = (messages, images = None, **options),
        text_signature = "($self, messages, images=None, *, max_tokens=128, temperature=0.8, top_p=0.95, top_k=40, min_p=0.05, repeat_penalty=1.0, frequency_penalty=0.0, presence_penalty=0.0, seed=None, stream=False, progress=None)")]
    fn chat(
        &self,
        py: Python<'_>,
        messages: &Bound<'_, PyAny>,
        images: Option<&Bound<'_, PyAny>>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let GenOptions { n_predict, sampler, stream, progress } = GenOptions::from_kwargs("chat", options)?;
        let mut messages = parse_messages(messages)?;
        let inputs = match images {
            None => Vec::new(),
            Some(one)
                if one.is_instance_of::<PyString>()
                    || one.is_instance_of::<PyBytes>()
                    || one.is_instance_of::<PyDict>()
                    || one.hasattr("__fspath__")?
                    || one.hasattr("__array_interface__")? =>
            {
                return Err(PyTypeError::new_err(
                    "images is a list of images (e.g. images=[path]), not one image",
                ));
            }
            Some(list) => list
                .try_iter()?
                .enumerate()
                .map(|(i, im)| ImageInput::from_py(&im?, &format!("images[{i}]")))
                .collect::<PyResult<Vec<_>>>()?,
        };
        bind_images(&mut messages, inputs.len())?;
        let pending = if inputs.is_empty() {
            Vec::new()
        } else {
            let vision = self.inner.vision()?;
            let limits = vision.config().limits;
            let (n_ctx, n_ctx_train) = (self.inner.n_ctx, self.inner.n_ctx_train);
            py.detach(|| {
                let decoded =
                    inputs.into_iter().map(|input| input.decode(&limits)).collect::<Result<Vec<_>, _>>()?;
                // Images whose tokens alone pass the context are refused before any is encoded
                // (a refused chat's images would otherwise go on encoding in the background).
                let mut at_least = 0;
                for (_, image) in &decoded {
                    at_least += vision.plan(image.size(), TileBudget::Default)?.image_tokens() as usize;
                }
                if at_least > n_ctx {
                    return Err(RuntimeError::PromptTooLong { at_least, n_ctx, n_ctx_train });
                }
                decoded
                    .into_iter()
                    .map(|(label, image)| vision.prepare(&label, image, TileBudget::Default))
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(runtime_error)?
        };
        let lease = py.detach(|| self.inner.checkout(&messages)).map_err(runtime_error)?;
        let slot = lease.slot.clone();
        let started = run_turn(py, &slot, sampler, false, (stream, progress), |s, sampler| {
            s.set_conversation(messages, pending)?;
            // Stated as the server states it (`RuntimeError::against_whole_context`).
            s.start_reply(n_predict, sampler).map_err(RuntimeError::against_whole_context)
        })?;
        match started {
            Started::Stream(id) => Ok(Py::new(py, TextStream::new(slot, id, Some(lease)))?.into_any()),
            Started::Done(reply) => Ok(PyString::new(py, &reply).into_any().unbind()),
        }
    }

    /// A new multi-turn conversation (its own KV cache of `n_ctx` positions, sharing the
    /// weights, threads and image embedding cache), optionally starting with a system message.
    #[pyo3(signature = (system = None))]
    fn session(&self, py: Python<'_>, system: Option<String>) -> PyResult<Session> {
        // With an mmproj a marker is an image's place, and a system message gets none: every ask
        // would then fail on the count of markers and images.
        if self.inner.vision.is_some() && system.as_deref().is_some_and(|t| t.contains(MEDIA_MARKER)) {
            return Err(PyValueError::new_err(format!(
                "the system message holds a {MEDIA_MARKER} marker: a session's images go with add_image, \
                 and their markers in the ask that follows"
            )));
        }
        let slot = py.detach(|| self.inner.new_slot()).map_err(runtime_error)?;
        if let Some(text) = system {
            py.detach(|| slot.lock().session.add_text("system", &text));
        }
        Ok(Session::new(self.inner.clone(), slot))
    }

    /// The projected embeddings of `image` (a path, bytes of an image file, a numpy HxWx3 uint8
    /// array or a PIL image) as the prompt gets them: a float32 numpy array `[tokens, d]`, its
    /// views in the family's order (this project's global view first), equal bit for bit to
    /// `edgevl encode-image --npy` at the same threads, ViT batch and SIMD level. `strategy`:
    /// "family" or a strategy name; `max_tiles`: the tile budget (default: the model's).
    /// Embeddings are cached: the same pixels and plan are not encoded again. `progress`: a
    /// callable `("image", done, total)` called on this thread as the views are encoded (not for
    /// cached embeddings); an exception it raises is raised once the encoding has ended.
    #[pyo3(signature = (image, strategy = "family", max_tiles = None, progress = None))]
    fn encode_image(
        &self,
        py: Python<'_>,
        image: &Bound<'_, PyAny>,
        strategy: &str,
        max_tiles: Option<i64>,
        progress: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let input = ImageInput::from_py(image, "image")?;
        let choice = parse_strategy(strategy)?;
        let budget = match max_tiles {
            None => TileBudget::Default,
            Some(m) => TileBudget::MaxTiles(count("max_tiles", m)?),
        };
        let vision = self.inner.vision()?;
        let relay = ProgressRelay::new(callable("progress", progress)?);
        let observer = relay.observer();
        // An encoding is not cancelled: a Ctrl-C (or the callable's exception) is raised once it ends.
        let (rows, interrupted) =
            interruptible(py, &AtomicBool::new(false), &mut |py| relay.deliver(py), || {
                let (label, image) = input.decode(&vision.config().limits)?;
                let pending = vision.prepare_with_strategy(&label, image, choice, budget)?;
                vision.embeddings_reporting(&pending, &mut |p| {
                    if let Some(f) = &observer {
                        f(p);
                    }
                })
            });
        if let Some(e) = interrupted {
            return Err(e);
        }
        let rows = rows?.map_err(runtime_error)?;
        let d = vision.n_embd();
        let bytes: Vec<u8> = rows.iter().flat_map(|v| v.to_ne_bytes()).collect();
        let np = py.import("numpy")?;
        let array = np.call_method1("frombuffer", (PyByteArray::new(py, &bytes), np.getattr("float32")?))?;
        Ok(array.call_method1("reshape", (rows.len() / d.max(1), d))?.unbind())
    }

    /// The LLM file.
    #[getter]
    fn path(&self) -> String {
        self.inner.path.display().to_string()
    }

    /// The mmproj file (None for a text model).
    #[getter]
    fn mmproj(&self) -> Option<String> {
        self.inner.mmproj.as_ref().map(|p| p.display().to_string())
    }

    /// The vision family of the mmproj ("edgevl", "internvl" or "idefics3"; None without one).
    #[getter]
    fn family(&self) -> Option<&'static str> {
        self.inner.vision.as_ref().map(|v| v.tiling().family.name())
    }

    /// Context size in positions (of each conversation).
    #[getter]
    fn n_ctx(&self) -> usize {
        self.inner.n_ctx
    }

    /// Compute threads.
    #[getter]
    fn threads(&self) -> usize {
        self.inner.threads
    }

    /// Milliseconds the load took.
    #[getter]
    fn load_ms(&self) -> f64 {
        self.inner.load_ms
    }

    fn __repr__(&self) -> String {
        let mmproj = self.mmproj().map_or(String::new(), |m| format!(", mmproj={m:?}"));
        format!(
            "edgevl.Model({:?}{mmproj}, threads={}, ctx={})",
            self.path(),
            self.inner.threads,
            self.inner.n_ctx
        )
    }
}

/// OpenAI-style messages as the runtime takes them (roles as `edgevl serve` maps them).
fn parse_messages(messages: &Bound<'_, PyAny>) -> PyResult<Vec<ChatMessage>> {
    if messages.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(
            "messages is a list of {\"role\": ..., \"content\": ...} dicts, not a string",
        ));
    }
    let mut out = Vec::new();
    for (i, m) in messages.try_iter()?.enumerate() {
        let m = m?;
        let field = |name: &str| -> PyResult<Option<Bound<'_, PyAny>>> {
            match m.get_item(name) {
                Ok(v) if !v.is_none() => Ok(Some(v)),
                Ok(_) => Ok(None),
                Err(e) if e.is_instance_of::<pyo3::exceptions::PyKeyError>(m.py()) => Ok(None),
                Err(_) => Err(PyTypeError::new_err(format!(
                    "messages[{i}] is a dict with \"role\" and \"content\", not {}",
                    m.get_type().name()?
                ))),
            }
        };
        let role: String = match field("role")? {
            // A str that is not UTF-8 (a lone surrogate) raises UnicodeEncodeError, as the content does.
            Some(r) if r.is_instance_of::<PyString>() => r.extract()?,
            Some(r) => {
                return Err(PyTypeError::new_err(format!(
                    "messages[{i}].role must be a str, not {}",
                    type_name(&r)
                )))
            }
            None => return Err(PyValueError::new_err(format!("messages[{i}] has no \"role\""))),
        };
        let role = match role.as_str() {
            "system" | "developer" => "system",
            "user" => "user",
            "assistant" => "assistant",
            other => {
                return Err(PyValueError::new_err(format!(
                    "messages[{i}].role {other:?} is not supported (system, developer, user or assistant)"
                )))
            }
        };
        let content = match field("content")? {
            None => String::new(),
            Some(c) if c.is_instance_of::<PyString>() => c.extract()?,
            Some(parts) => text_parts(&parts, i)?,
        };
        out.push(ChatMessage::new(role, content));
    }
    if out.is_empty() {
        return Err(PyValueError::new_err("messages is empty"));
    }
    Ok(out)
}

/// The text of a list of `{"type": "text", "text": ...}` parts, joined by newlines.
fn text_parts(parts: &Bound<'_, PyAny>, i: usize) -> PyResult<String> {
    let not_parts = || {
        PyTypeError::new_err(format!(
            "messages[{i}].content must be a str or a list of {{\"type\": \"text\", \"text\": str}} parts, not {}",
            type_name(parts)
        ))
    };
    // Any iterable of mappings (a list, a tuple, a generator), but not bytes or one dict.
    if parts.is_instance_of::<PyBytes>() || parts.is_instance_of::<PyDict>() {
        return Err(not_parts());
    }
    let mut texts = Vec::new();
    for (j, part) in parts.try_iter().map_err(|_| not_parts())?.enumerate() {
        let part = part?;
        let get = |key: &str| -> PyResult<String> {
            match part.get_item(key) {
                Ok(v) if v.is_instance_of::<PyString>() => v.extract(),
                Ok(v) => v.extract().map_err(|_| {
                    PyTypeError::new_err(format!(
                        "messages[{i}].content[{j}].{key} must be a str, not {}",
                        type_name(&v)
                    ))
                }),
                Err(e) if e.is_instance_of::<PyKeyError>(part.py()) => {
                    Err(PyValueError::new_err(format!("messages[{i}].content[{j}] has no {key:?}")))
                }
                Err(_) => Err(not_parts()),
            }
        };
        let kind = get("type")?;
        if kind != "text" {
            return Err(PyValueError::new_err(format!(
                "messages[{i}].content[{j}] is a {kind:?} part; only text parts are read here (pass images with images=)"
            )));
        }
        texts.push(get("text")?);
    }
    Ok(texts.join("\n"))
}

/// The name of `v`'s type, for messages.
fn type_name(v: &Bound<'_, PyAny>) -> String {
    v.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into())
}

/// Binds `n` images to the last user message: at its markers when it has one per image, else
/// (none) with the markers put in front of its text.
fn bind_images(messages: &mut [ChatMessage], n: usize) -> PyResult<()> {
    if n == 0 {
        return Ok(());
    }
    let last =
        messages.iter_mut().rev().find(|m| m.role == "user").ok_or_else(|| {
            PyValueError::new_err("images bind to the last user message, and there is none")
        })?;
    match last.content.matches(MEDIA_MARKER).count() {
        0 => last.content = format!("{}{}", MEDIA_MARKER.repeat(n), last.content),
        k if k == n => {}
        k => {
            return Err(PyValueError::new_err(format!(
                "the last user message has {k} {MEDIA_MARKER} marker(s) but {n} image(s) are given"
            )))
        }
    }
    Ok(())
}
