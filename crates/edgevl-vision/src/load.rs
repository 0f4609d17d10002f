//! Image input: bytes -> checked header -> decoded pixels -> EXIF orientation -> RGB.
//!
//! Limits (file bytes, decoded pixels) are checked before anything large is read or allocated:
//! the file size from its metadata, the pixel count from the decoder's header.

use std::io::{Cursor, Read};
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

use crate::error::VisionError;
use crate::rgb::RgbImage;

/// Limits applied before decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LoadLimits {
    /// Largest accepted file, in bytes (default 256 MiB).
    pub max_file_bytes: u64,
    /// Largest accepted image, in pixels, as declared by the header (default 64 MP = 64 * 2^20).
    pub max_pixels: u64,
}

impl Default for LoadLimits {
    fn default() -> Self {
        Self { max_file_bytes: 256 << 20, max_pixels: 64 << 20 }
    }
}

/// Reads and decodes the image file at `path` (see [`decode_image`]); errors name the file.
pub fn load_image(path: &Path, limits: &LoadLimits) -> Result<RgbImage, VisionError> {
    let io = |source| VisionError::Io { path: path.to_path_buf(), source };
    // Checked before opening: opening a FIFO or a device could block or never end.
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        let what = if meta.is_dir() { "is a directory" } else { "not a regular file" };
        return Err(io(std::io::Error::new(std::io::ErrorKind::InvalidInput, what)));
    }
    let file = std::fs::File::open(path).map_err(io)?;
    if meta.len() > limits.max_file_bytes {
        return Err(VisionError::FileTooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
            limit: limits.max_file_bytes,
        });
    }
    let mut bytes = Vec::new();
    // Read at most one byte past the limit, in case the file grew since `metadata`.
    file.take(limits.max_file_bytes.saturating_add(1)).read_to_end(&mut bytes).map_err(io)?;
    decode_image(&bytes, path, limits)
}

/// Decodes an in-memory image. `label` names it in errors (usually its path).
///
/// The format is detected from the bytes (never from the name). The header's size is checked
/// against `limits` before pixels are decoded; the EXIF orientation (JPEG, PNG, WebP) is applied;
/// then the image is converted to 8-bit RGB as Pillow's `convert("RGB")` does for the common
/// modes: alpha is dropped (not composited), grey is replicated, palettes are expanded.
/// 16-bit samples keep their high byte (as Pillow reads 16-bit RGB PNGs). GIFs give their first frame.
pub fn decode_image(bytes: &[u8], label: &Path, limits: &LoadLimits) -> Result<RgbImage, VisionError> {
    let path = || label.to_path_buf();
    if bytes.is_empty() {
        return Err(VisionError::EmptyFile { path: path() });
    }
    if bytes.len() as u64 > limits.max_file_bytes {
        return Err(VisionError::FileTooLarge {
            path: path(),
            size: bytes.len() as u64,
            limit: limits.max_file_bytes,
        });
    }
    let format = image::guess_format(bytes).map_err(|_| VisionError::UnknownFormat { path: path() })?;
    if !matches!(
        format,
        ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP | ImageFormat::Bmp | ImageFormat::Gif
    ) {
        return Err(VisionError::UnknownFormat { path: path() });
    }
    let decode_err = |source| VisionError::Decode { path: path(), format: format!("{format:?}"), source };
    if format == ImageFormat::Jpeg && !jpeg_has_end_marker(bytes) {
        return Err(VisionError::TruncatedJpeg { path: path() });
    }

    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut decoder_limits = Limits::default();
    // The decoders' own allocation cap: the output (at most 16 bytes a pixel) plus slack.
    decoder_limits.max_alloc = Some(limits.max_pixels.saturating_mul(16).saturating_add(64 << 20));
    reader.limits(decoder_limits);
    let mut decoder = reader.into_decoder().map_err(decode_err)?;
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(VisionError::ZeroSize { path: path(), width, height });
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels {
        return Err(VisionError::TooManyPixels {
            path: path(),
            width,
            height,
            pixels,
            limit: limits.max_pixels,
        });
    }
    // A malformed EXIF block is ignored, as an absent one would be.
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(decode_err)?;
    image.apply_orientation(orientation);
    to_rgb(image)
}

/// Whether a JPEG stream contains an end-of-image marker (FF D9) after its last scan start.
///
/// The JPEG decoder fills a truncated scan with grey instead of failing; Pillow refuses such
/// files ("image file is truncated"), and so do we. Trailing bytes after the marker are allowed.
fn jpeg_has_end_marker(bytes: &[u8]) -> bool {
    let last_sos = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    let from = last_sos.unwrap_or(0);
    bytes[from..].windows(2).any(|w| w == [0xFF, 0xD9])
}

/// Converts any decoded image to 8-bit RGB (see [`decode_image`] for the rules).
fn to_rgb(image: DynamicImage) -> Result<RgbImage, VisionError> {
    let (width, height) = (image.width(), image.height());
    let pixels: Vec<u8> = match image {
        DynamicImage::ImageRgb8(buf) => buf.into_raw(),
        DynamicImage::ImageRgba8(buf) => take_rgb(buf.as_raw(), 4, 1, |v| v),
        DynamicImage::ImageLuma8(buf) => take_rgb(buf.as_raw(), 1, 0, |v| v),
        DynamicImage::ImageLumaA8(buf) => take_rgb(buf.as_raw(), 2, 0, |v| v),
        DynamicImage::ImageRgb16(buf) => take_rgb(buf.as_raw(), 3, 1, high_byte),
        DynamicImage::ImageRgba16(buf) => take_rgb(buf.as_raw(), 4, 1, high_byte),
        DynamicImage::ImageLuma16(buf) => take_rgb(buf.as_raw(), 1, 0, high_byte),
        DynamicImage::ImageLumaA16(buf) => take_rgb(buf.as_raw(), 2, 0, high_byte),
        other => other.to_rgb8().into_raw(),
    };
    RgbImage::from_raw(width, height, pixels)
}

fn high_byte(v: u16) -> u8 {
    (v >> 8) as u8
}

/// Takes the colour samples of `channels`-sample pixels: RGB from the first three when
/// `step == 1`, or one grey sample replicated when `step == 0`.
fn take_rgb<T: Copy>(samples: &[T], channels: usize, step: usize, to_u8: impl Fn(T) -> u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(samples.len() / channels * 3);
    for px in samples.chunks_exact(channels) {
        out.extend([to_u8(px[0]), to_u8(px[step]), to_u8(px[2 * step])]);
    }
    out
}
