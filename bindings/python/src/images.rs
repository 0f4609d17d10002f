//! Images from Python: a path (`str` or `os.PathLike`), the bytes of an encoded file, a numpy
//! `HxWx3` uint8 array or a PIL image, taken with the GIL held and decoded without it.

use edgevl_runtime::RuntimeError;
use edgevl_vision::{decode_image, load_image, LoadLimits, RgbImage};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView, PyString};
use std::path::{Path, PathBuf};

/// An image as given, before decoding.
pub(crate) enum ImageInput {
    /// A file, read and decoded as `edgevl run --image` does (EXIF orientation applied).
    Path(PathBuf),
    /// An encoded file in memory (PNG, JPEG, WebP, BMP, GIF), named `label` in errors.
    Encoded { label: String, bytes: Vec<u8> },
    /// Pixels already decoded (numpy, PIL), named `label` in errors.
    Pixels { label: String, image: RgbImage },
}

impl ImageInput {
    /// Reads `obj` (with the GIL held); `what` names it in errors (e.g. "images[1]").
    pub(crate) fn from_py(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Self> {
        let py = obj.py();
        if obj.is_instance_of::<PyString>() || obj.hasattr("__fspath__")? {
            let path: PathBuf = py.import("os")?.call_method1("fspath", (obj,))?.extract()?;
            return Ok(ImageInput::Path(path));
        }
        if let Ok(bytes) = obj.cast::<PyBytes>() {
            return Ok(ImageInput::Encoded {
                label: format!("{what} (bytes)"),
                bytes: bytes.as_bytes().to_vec(),
            });
        }
        // A bytearray or memoryview (an `io.BytesIO().getbuffer()`) holds a file as bytes do.
        if obj.is_instance_of::<PyByteArray>() || obj.is_instance_of::<PyMemoryView>() {
            let bytes = py.get_type::<PyBytes>().call1((obj,))?.cast_into::<PyBytes>()?;
            return Ok(ImageInput::Encoded {
                label: format!("{what} ({})", obj.get_type().name()?),
                bytes: bytes.as_bytes().to_vec(),
            });
        }
        let modules = py.import("sys")?.getattr("modules")?;
        if let Some(pil) = modules.get_item("PIL.Image").ok().filter(|m| !m.is_none()) {
            if obj.is_instance(&pil.getattr("Image")?)? {
                let (w, h): (u32, u32) = obj.getattr("size")?.extract()?;
                check_pixels(what, w, h)?;
                // Pillow reads a file's pixels only now: a truncated or corrupt one fails here.
                let rgb = obj.call_method1("convert", ("RGB",)).map_err(|e| {
                    crate::ImageError::new_err(format!("{what}: Pillow cannot read the image: {e}"))
                })?;
                let pixels: Vec<u8> =
                    rgb.call_method0("tobytes")?.cast_into::<PyBytes>()?.as_bytes().to_vec();
                let label = format!("{what} (PIL image {w}x{h})");
                let image = rgb_image(&label, w, h, pixels)?
                    .with_transparent_colour(pil_transparent_colour(obj, &rgb)?);
                return Ok(ImageInput::Pixels { label, image });
            }
        }
        if let Some(np) = modules.get_item("numpy").ok().filter(|m| !m.is_none()) {
            if obj.is_instance(&np.getattr("ndarray")?)? {
                return numpy_input(obj, &np, what);
            }
        }
        Err(PyTypeError::new_err(format!(
            "{what}: an image is a path, the bytes of an image file, a numpy HxWx3 uint8 array or a PIL image, not {}",
            obj.get_type().name()?
        )))
    }

    /// The decoded image and its label (call without the GIL).
    pub(crate) fn decode(self, limits: &LoadLimits) -> Result<(String, RgbImage), RuntimeError> {
        Ok(match self {
            ImageInput::Path(path) => {
                let image = load_image(&path, limits)?;
                (path.display().to_string(), image)
            }
            ImageInput::Encoded { label, bytes } => {
                let image = decode_image(&bytes, Path::new(&label), limits)?;
                (label, image)
            }
            ImageInput::Pixels { label, image } => (label, image),
        })
    }
}

/// Refuses pixels past the limit image files get ([`LoadLimits`]' 179 MP, Pillow's), before they are
/// copied out of Python.
fn check_pixels(what: &str, w: u32, h: u32) -> PyResult<()> {
    let (pixels, limit) = (u64::from(w) * u64::from(h), LoadLimits::default().max_pixels);
    if pixels > limit {
        return Err(crate::ImageError::new_err(format!(
            "{what}: {w}x{h} is {pixels} pixels, more than the {limit} accepted"
        )));
    }
    Ok(())
}

/// The colour Pillow's `convert("RGB")` of `image` keeps as `info["transparency"]` in `rgb` (a GIF's
/// transparent index or a PNG's tRNS naming one colour, as RGB; a 1-bit image's value, which
/// `convert` leaves as it was, black for 0 and white otherwise), which the file loader keeps too:
/// InternVL's and SmolVLM's processors paint it white, so a PIL image of a file encodes as the
/// file does.
fn pil_transparent_colour(image: &Bound<'_, PyAny>, rgb: &Bound<'_, PyAny>) -> PyResult<Option<[u8; 3]>> {
    let t = rgb.getattr("info")?.call_method1("get", ("transparency",))?;
    if let Ok((r, g, b)) = t.extract::<(u8, u8, u8)>() {
        return Ok(Some([r, g, b]));
    }
    if image.getattr("mode")?.extract::<String>()? == "1" {
        if let Ok(v) = t.extract::<i64>() {
            return Ok(Some(if v == 0 { [0; 3] } else { [255; 3] }));
        }
    }
    // Any other value (a palette index, the bytes of per-index alphas) names no one colour.
    Ok(None)
}

/// The pixels as an image; an empty one is an `ImageError`, as an empty image file is.
fn rgb_image(label: &str, w: u32, h: u32, pixels: Vec<u8>) -> PyResult<RgbImage> {
    RgbImage::from_raw(w, h, pixels).map_err(|e| crate::ImageError::new_err(format!("{label}: {e}")))
}

/// A numpy array: `HxWx3`, dtype uint8, any strides (`tobytes` gives C order).
fn numpy_input(arr: &Bound<'_, PyAny>, np: &Bound<'_, PyAny>, what: &str) -> PyResult<ImageInput> {
    let shape: Vec<usize> = arr.getattr("shape")?.extract()?;
    let dtype = arr.getattr("dtype")?;
    if !dtype.eq(np.getattr("uint8")?)? {
        return Err(PyTypeError::new_err(format!(
            "{what}: a numpy image must have dtype uint8 (RGB, 0..255), not {}",
            dtype.str()?
        )));
    }
    let [h, w, 3] = shape[..] else {
        return Err(PyValueError::new_err(format!(
            "{what}: a numpy image must have shape (height, width, 3) (RGB), not {shape:?}"
        )));
    };
    let dim = |v: usize| {
        u32::try_from(v).map_err(|_| PyValueError::new_err(format!("{what}: image side {v} is too large")))
    };
    let (w, h) = (dim(w)?, dim(h)?);
    check_pixels(what, w, h)?;
    let pixels: Vec<u8> = arr.call_method0("tobytes")?.cast_into::<PyBytes>()?.as_bytes().to_vec();
    let label = format!("{what} (numpy {h}x{w}x3)");
    Ok(ImageInput::Pixels { image: rgb_image(&label, w, h, pixels)?, label })
}
