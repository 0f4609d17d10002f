//! `edgevl.Session` (a multi-turn conversation kept in its KV cache) and `edgevl.TextStream`
//! (a reply's pieces, one token's text per step).

use crate::images::ImageInput;
use crate::model::{Lease, ModelInner};
use crate::slot::{run_turn, GenOptions, Slot, Started};
use crate::{runtime_error, EdgevlError};
use edgevl_runtime::{Finish, ImageInfo};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};
use std::sync::{Arc, Mutex};

/// A conversation with a loaded model (from `Model.session()`): each `ask` adds a user message
/// and the reply, and the KV cache keeps the conversation, so a follow-up prefills only its new
/// tokens. Images added with `add_image` go into the next `ask`'s message, at its `<__media__>`
/// markers or in front of its text. A new `ask` ends a stream still open on this session.
#[pyclass(frozen, module = "edgevl")]
pub struct Session {
    model: Arc<ModelInner>,
    slot: Arc<Slot>,
}

impl Session {
    pub(crate) fn new(model: Arc<ModelInner>, slot: Arc<Slot>) -> Self {
        Session { model, slot }
    }
}

#[pymethods]
impl Session {
    /// Attach an image (a path, bytes of an image file, a numpy HxWx3 uint8 array or a PIL
    /// image) to the next `ask`. It is decoded and planned now (a bad image raises ImageError
    /// here) and encoded in the background at once; an image whose pixels and plan were seen
    /// before is not encoded again. Returns what it puts in the prompt: `label`, `strategy`,
    /// `grid` [cols, rows], `tiles`, `thumbnail`, `tokens`, `cached`.
    fn add_image<'py>(&self, py: Python<'py>, image: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
        let input = ImageInput::from_py(image, "image")?;
        let limits = self.model.vision()?.config().limits;
        let info = py
            .detach(|| {
                let (label, image) = input.decode(&limits)?;
                self.slot.lock().session.add_image_decoded(&label, image)
            })
            .map_err(runtime_error)?;
        info_dict(py, &info)
    }

    /// Ask `text` (a user message, with the images added since the last turn) and generate the
    /// reply; keyword options as `Model.chat`'s (defaults as `edgevl run`'s). Returns the reply, or with
    /// `stream=True` a `TextStream`. Generation releases the GIL; Ctrl-C stops it (the turn
    /// keeps the reply so far; stopped before its first token, the question is taken back, its
    /// images attached again). A prompt past the context raises ContextFullError and leaves
    /// the conversation as it was.
    #[pyo3(signature = (text, **options),
        text_signature = "($self, text, *, max_tokens=128, temperature=0.8, top_p=0.95, top_k=40, min_p=0.05, repeat_penalty=1.0, frequency_penalty=0.0, presence_penalty=0.0, seed=None, stream=False, progress=None)")]
    fn ask(&self, py: Python<'_>, text: String, options: Option<&Bound<'_, PyDict>>) -> PyResult<Py<PyAny>> {
        let GenOptions { n_predict, sampler, stream, progress } = GenOptions::from_kwargs("ask", options)?;
        let started = run_turn(py, &self.slot, sampler, true, (stream, progress), |s, sampler| {
            s.start_turn(&text, n_predict, sampler)
        })?;
        match started {
            Started::Stream(id) => Ok(Py::new(py, TextStream::new(self.slot.clone(), id, None))?.into_any()),
            Started::Done(reply) => Ok(PyString::new(py, &reply).into_any().unbind()),
        }
    }

    /// Forget the conversation and its images (the image embedding cache keeps its entries).
    fn reset(&self, py: Python<'_>) {
        py.detach(|| {
            let mut st = self.slot.lock();
            st.end_turn();
            st.session.reset();
        })
    }

    /// The session's counts as a dict, the fields of `/stats` in `edgevl chat`: `turns`,
    /// `n_ctx`, `n_past`, `tokens_left`, `prefilled_tokens_total`, `generated_tokens_total`,
    /// `load_ms`, `images`, `pending_images`, `vit_tiles_encoded`, `image_cache_hits`,
    /// `image_encode_ms`, `image_cache_entries`, `image_cache_mb`, `last_turn` (None or a dict:
    /// `prompt_tokens`, `reused_tokens`, `prefilled_tokens`, `generated_tokens`, `ttft_ms`,
    /// `prefill_tok_s`, `decode_tok_s`, `image_tokens`, `image_wait_ms`, `finish`, ...).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let stats = py.detach(|| self.slot.lock().session.stats());
        let json = serde_json::to_string(&stats).map_err(|e| EdgevlError::new_err(e.to_string()))?;
        py.import("json")?.call_method1("loads", (json,))
    }

    /// The conversation so far: a list of {"role", "content"} dicts (images are `<__media__>`
    /// markers in the text).
    #[getter]
    fn messages<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let messages = py.detach(|| self.slot.lock().session.messages().to_vec());
        let list = PyList::empty(py);
        for m in messages {
            let d = PyDict::new(py);
            d.set_item("role", m.role)?;
            d.set_item("content", m.content)?;
            list.append(d)?;
        }
        Ok(list)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let (n_past, n_ctx) = py.detach(|| {
            let st = self.slot.lock();
            (st.session.n_past(), st.session.n_ctx())
        });
        format!("edgevl.Session({n_past}/{n_ctx} positions used)")
    }
}

/// What an added image puts in the prompt.
fn info_dict<'py>(py: Python<'py>, info: &ImageInfo) -> PyResult<Bound<'py, PyDict>> {
    let d = crate::tiles::plan_dict(py, &info.plan)?;
    d.set_item("label", &info.label)?;
    d.set_item("tokens", info.n_tokens)?;
    d.set_item("cached", info.cached)?;
    Ok(d)
}

/// A reply being generated, as an iterator of text pieces (each token's text once it is
/// complete UTF-8; joined, they are the reply `stream=False` returns). Each step runs with the
/// GIL released. Stop early with `close()` (or a `with` block, or dropping it): a session keeps
/// the reply so far (a stream stopped before its first piece was read takes the question back,
/// its images attached again, to go with the next question). `finish` tells why it ended: "eog", "length", "context_full" or
/// "cancelled" (None while it goes on).
#[pyclass(frozen, module = "edgevl")]
pub struct TextStream {
    slot: Arc<Slot>,
    id: u64,
    /// `Model.chat`'s slot, given back when the stream ends.
    lease: Mutex<Option<Lease>>,
    finish: Mutex<Option<Finish>>,
}

impl TextStream {
    pub(crate) fn new(slot: Arc<Slot>, id: u64, lease: Option<Lease>) -> Self {
        TextStream { slot, id, lease: Mutex::new(lease), finish: Mutex::new(None) }
    }

    /// Records the end and gives the slot back.
    fn ended(&self, finish: Finish) {
        crate::slot::lock(&self.finish).get_or_insert(finish);
        crate::slot::lock(&self.lease).take();
    }
}

#[pymethods]
impl TextStream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<String>> {
        if crate::slot::lock(&self.finish).is_some() {
            return Ok(None);
        }
        loop {
            let step = match py.detach(|| self.slot.step(self.id)) {
                Ok(step) => step,
                Err(e) => {
                    self.ended(Finish::Cancelled);
                    return Err(runtime_error(e));
                }
            };
            if let Some(f) = step.finish {
                self.ended(f);
            }
            if !step.text.is_empty() {
                return Ok(Some(step.text));
            }
            if step.finish.is_some() {
                return Ok(None);
            }
        }
    }

    /// Stop generating (a session keeps the reply so far, or, before the first piece was read,
    /// takes the question back); nothing happens once it has ended.
    fn close(&self, py: Python<'_>) {
        py.detach(|| self.slot.close(self.id));
        self.ended(Finish::Cancelled);
    }

    /// Why the reply ended ("eog", "length", "context_full", "cancelled"), None while it goes on.
    #[getter]
    fn finish(&self) -> Option<&'static str> {
        crate::slot::lock(&self.finish).map(finish_name)
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) {
        self.close(py);
    }
}

impl Drop for TextStream {
    fn drop(&mut self) {
        // Another thread may hold the slot for a whole prefill: waiting for it with the GIL held
        // (a stream is dropped by whichever thread's reference or garbage collection ends it)
        // would stop every Python thread meanwhile, so the close is left to the next lock then.
        self.slot.close_soon(self.id);
    }
}

/// The runtime's name of a finish reason (as `stats()["last_turn"]["finish"]`).
fn finish_name(f: Finish) -> &'static str {
    match f {
        Finish::Eog => "eog",
        Finish::Length => "length",
        Finish::ContextFull => "context_full",
        Finish::Cancelled => "cancelled",
    }
}
