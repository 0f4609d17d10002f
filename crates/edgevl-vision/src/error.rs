//! The error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong between an image file and a batch of tiles.
///
/// Errors about a file carry its path (or, for in-memory data, the label the caller gave).
#[derive(Debug, thiserror::Error)]
pub enum VisionError {
    /// The file could not be opened or read (missing, a directory, no permission, ...).
    #[error("{path}: cannot read image file: {source}", path = .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating-system error.
        source: std::io::Error,
    },
    /// The file is larger than [`crate::LoadLimits::max_file_bytes`].
    #[error("{path}: file is {size} bytes, more than the limit of {limit} bytes", path = .path.display())]
    FileTooLarge {
        /// The file.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// The file is empty.
    #[error("{path}: empty file (0 bytes), not an image", path = .path.display())]
    EmptyFile {
        /// The file.
        path: PathBuf,
    },
    /// The content is not one of the supported formats (checked from the bytes, not the name).
    #[error("{path}: not a JPEG, PNG, WebP, BMP or GIF image (unrecognised file signature)", path = .path.display())]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// The header declares more pixels than [`crate::LoadLimits::max_pixels`]; nothing was decoded.
    #[error(
        "{path}: header declares {width}x{height} = {pixels} pixels, more than the limit of {limit} \
         (possible decompression bomb); not decoded",
        path = .path.display()
    )]
    TooManyPixels {
        /// The file.
        path: PathBuf,
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// width * height.
        pixels: u64,
        /// The limit in pixels.
        limit: u64,
    },
    /// The image has a zero width or height.
    #[error("{path}: image has zero size ({width}x{height})", path = .path.display())]
    ZeroSize {
        /// The file.
        path: PathBuf,
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
    },
    /// The JPEG data ends before its end-of-image marker.
    #[error("{path}: truncated JPEG: the data ends before the end-of-image marker", path = .path.display())]
    TruncatedJpeg {
        /// The file.
        path: PathBuf,
    },
    /// The decoder rejected the data (corrupt or truncated file, unsupported variant).
    #[error("{path}: cannot decode {format} image: {source}", path = .path.display())]
    Decode {
        /// The file.
        path: PathBuf,
        /// The detected format, e.g. "Png".
        format: String,
        /// The decoder's error.
        source: image::ImageError,
    },
    /// A width or height of zero, or one whose buffer size overflows.
    #[error("invalid image size {width}x{height}: {reason}")]
    InvalidSize {
        /// Requested width.
        width: u64,
        /// Requested height.
        height: u64,
        /// Why it is invalid.
        reason: &'static str,
    },
    /// A pixel buffer does not have width * height * 3 bytes.
    #[error("RGB buffer for {width}x{height} needs {expected} bytes, found {found}")]
    BufferSize {
        /// Image width.
        width: u32,
        /// Image height.
        height: u32,
        /// width * height * 3.
        expected: u64,
        /// The buffer's length.
        found: usize,
    },
    /// A tiling parameter is out of range.
    #[error("invalid tiling parameter {name} = {value}: {reason}")]
    InvalidParam {
        /// Parameter name, e.g. "alpha".
        name: &'static str,
        /// The value given, formatted.
        value: String,
        /// The allowed range.
        reason: &'static str,
    },
    /// A plan made for one image size was applied to an image of another size.
    #[error("plan was made for a {plan_w}x{plan_h} image but the image is {image_w}x{image_h}")]
    PlanMismatch {
        /// Width the plan was made for.
        plan_w: u32,
        /// Height the plan was made for.
        plan_h: u32,
        /// Actual image width.
        image_w: u32,
        /// Actual image height.
        image_h: u32,
    },
    /// A plan whose fields contradict each other (e.g. a resized image larger than its canvas).
    #[error("inconsistent plan: {0}")]
    InvalidPlan(String),
    /// A view passed to [`crate::normalize_views`] is not square or not the size of the first.
    #[error("view {index} is {width}x{height}; views must all be {expected}x{expected}")]
    ViewSize {
        /// Index of the view.
        index: usize,
        /// Its width.
        width: u32,
        /// Its height.
        height: u32,
        /// The side of the first view.
        expected: u32,
    },
}
