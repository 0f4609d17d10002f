//! Python bindings of edgevl: the module `edgevl` (`pip install ./bindings/python`, see
//! docs/python.md). A [`model::Model`] loads an LLM (and optionally an mmproj) once; `Model.chat`
//! answers OpenAI-style messages with images, whole or streamed; `Model.session()` gives a
//! multi-turn [`session::Session`] whose KV cache is kept between turns; `edgevl.tiles` and
//! `Model.encode_image` expose the tiling plan and the image embeddings.
//!
//! Only `edgevl-runtime`'s and `edgevl-vision`'s public API is used. Generation runs with the
//! GIL released; a Ctrl-C (KeyboardInterrupt) sets the session's cancel flag, so the turn stops
//! between two prefill chunks or two tokens and the session stays usable. Library errors become
//! `edgevl.EdgevlError` subclasses carrying the library's message; no Rust panic reaches Python
//! (a worker thread's panic is reported as an `EdgevlError`).
#![warn(missing_docs)]

mod images;
mod model;
mod session;
mod slot;
mod tiles;

use edgevl_runtime::RuntimeError;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyMemoryError, PyValueError};
use pyo3::prelude::*;

create_exception!(
    edgevl,
    EdgevlError,
    PyException,
    "Base class of the errors edgevl raises; the message is the library's."
);
create_exception!(
    edgevl,
    ModelFileError,
    EdgevlError,
    "A model or mmproj file is missing, unreadable, corrupt or not of a supported kind."
);
create_exception!(
    edgevl,
    ImageError,
    EdgevlError,
    "An image could not be read, decoded, planned or encoded."
);
create_exception!(
    edgevl,
    ContextFullError,
    EdgevlError,
    "The input does not fit what is left of the context (reset the session, shorten it, or load with a larger ctx)."
);

/// The Python exception for a runtime error during use (not loading): images -> `ImageError`,
/// a full context -> `ContextFullError`, a KV cache the memory cannot hold (a new session or chat
/// slot) -> `MemoryError`, the caller's input the library refuses (a marker count, an empty
/// prompt) or a tiling setting out of range -> `ValueError`, the rest -> `EdgevlError`; the
/// message is the library's.
pub(crate) fn runtime_error(e: RuntimeError) -> PyErr {
    let msg = e.to_string();
    match e {
        RuntimeError::ContextFull { .. } | RuntimeError::PromptTooLong { .. } => {
            ContextFullError::new_err(msg)
        }
        // A tile budget or tiling setting out of range is a bad argument, not a bad image.
        RuntimeError::Image(edgevl_vision::VisionError::InvalidParam { .. }) => PyValueError::new_err(msg),
        RuntimeError::Image(_) | RuntimeError::ImageEncode { .. } => ImageError::new_err(msg),
        RuntimeError::BadInput(_) => PyValueError::new_err(msg),
        // A new chat slot's or session's KV cache the memory cannot hold.
        RuntimeError::Model(edgevl_runtime::ModelError::OutOfMemory { .. }) => PyMemoryError::new_err(msg),
        _ => EdgevlError::new_err(msg),
    }
}

/// A count argument `name` (threads, a tile budget, an image side), read as an `i64`, as `T`: a
/// negative value, or one too large for `T`, is a `ValueError` (pyo3's own conversion to an
/// unsigned type raises `OverflowError`; past 64 bits the `i64` read still does).
pub(crate) fn count<T: TryFrom<i64>>(name: &str, v: i64) -> PyResult<T> {
    T::try_from(v).map_err(|_| {
        PyValueError::new_err(format!("{name} must be a non-negative integer in range, not {v}"))
    })
}

/// The Python exception for a failed load of `what` (e.g. "model a.gguf"): a bad setting ->
/// `ValueError`, a KV cache the memory cannot hold -> `MemoryError`, anything else ->
/// `ModelFileError`, each with the library's message.
pub(crate) fn load_error(what: &str, e: RuntimeError) -> PyErr {
    match e {
        RuntimeError::BadSetting(_) => PyValueError::new_err(e.to_string()),
        RuntimeError::Model(edgevl_runtime::ModelError::OutOfMemory { .. }) => {
            PyMemoryError::new_err(format!("cannot load {what}: {e}"))
        }
        _ => ModelFileError::new_err(format!("cannot load {what}: {e}")),
    }
}

/// The `edgevl` module.
#[pymodule]
#[pyo3(name = "edgevl")]
fn edgevl_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("MEDIA_MARKER", edgevl_runtime::MEDIA_MARKER)?;
    m.add("EdgevlError", py.get_type::<EdgevlError>())?;
    m.add("ModelFileError", py.get_type::<ModelFileError>())?;
    m.add("ImageError", py.get_type::<ImageError>())?;
    m.add("ContextFullError", py.get_type::<ContextFullError>())?;
    m.add_class::<model::Model>()?;
    m.add_class::<session::Session>()?;
    m.add_class::<session::TextStream>()?;
    m.add_function(wrap_pyfunction!(tiles::tiles, m)?)?;
    Ok(())
}
