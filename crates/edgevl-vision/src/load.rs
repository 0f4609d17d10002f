//! Image input: bytes -> checked header -> decoded pixels -> EXIF orientation -> RGB.
//!
//! Limits (file bytes, decoded pixels) are checked before anything large is read or allocated:
//! the file size from its metadata, the pixel count from the decoder's header.

use std::io::{Cursor, Read};
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

use crate::error::VisionError;
use crate::gif::FirstFrame;
use crate::orientation::exif_transpose_orientation;
use crate::rgb::RgbImage;

/// The most pixels Pillow opens (past twice `Image.MAX_IMAGE_PIXELS` it raises
/// `DecompressionBombError`), so the largest image transformers' processors take: a 108 MP phone
/// photo (12000x9000) is within it.
pub const PILLOW_MAX_PIXELS: u64 = 2 * 89_478_485;

/// Limits applied before decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LoadLimits {
    /// Largest accepted file, in bytes (default 256 MiB).
    pub max_file_bytes: u64,
    /// Largest accepted image, in pixels, as declared by the header (default
    /// [`PILLOW_MAX_PIXELS`], about 179 MP: 537 MB as RGB).
    pub max_pixels: u64,
}

impl Default for LoadLimits {
    fn default() -> Self {
        Self { max_file_bytes: 256 << 20, max_pixels: PILLOW_MAX_PIXELS }
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

/// The decoders' allocation budget for what precedes the pixels: PNG inflates its text and
/// colour-profile chunks while its header is read, so without a budget of its own a 1x1 image
/// could take the allocation allowed for the largest accepted image (gigabytes). Pillow keeps
/// up to 64 MiB of text (tools write workflows of megabytes into PNG text chunks), so the budget
/// is that; a colour profile past it is dropped (profiles are ignored here; Pillow refuses one
/// that inflates past 1 MiB), text past it makes the file an error.
const METADATA_BUDGET: u64 = 64 << 20;

/// Decodes an in-memory image. `label` names it in errors (usually its path).
///
/// The format is detected from the bytes (never from the name). The header's size is checked
/// against `limits` before pixels are decoded, the header itself read with the decoders'
/// allocations held to a 64 MiB metadata budget; the orientation Pillow's `exif_transpose`
/// applies (the EXIF tag, else the XMP one; JPEG, PNG, WebP) is applied;
/// then the image is converted to 8-bit RGB as Pillow's `convert("RGB")` does for the common
/// modes: alpha is dropped (not composited), grey is replicated, palettes are expanded; a colour
/// the file marks transparent is kept with the image ([`RgbImage::transparent_colour`]).
/// 16-bit samples keep their high byte (as Pillow reads 16-bit RGB PNGs). GIFs give their first
/// frame on Pillow's canvas (the logical screen, enlarged to hold a frame reaching past it), the
/// canvas around the frame painted as Pillow paints it.
pub fn decode_image(bytes: &[u8], label: &Path, limits: &LoadLimits) -> Result<RgbImage, VisionError> {
    let path = || label.to_path_buf();
    if bytes.len() as u64 > limits.max_file_bytes {
        return Err(VisionError::FileTooLarge {
            path: path(),
            size: bytes.len() as u64,
            limit: limits.max_file_bytes,
        });
    }
    let format = detect_format(bytes, label)?;
    let decode_err = |source| VisionError::Decode { path: path(), format: format!("{format:?}"), source };
    if format == ImageFormat::Jpeg && !jpeg_has_end_marker(bytes) {
        return Err(VisionError::TruncatedJpeg { path: path() });
    }
    let Header { mut decoder, width, height, gif_frame } = open_header(bytes, format, label)?;
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
    // A GIF's first frame is painted here (the decoder clips a frame to the logical screen); its
    // transparent index's colour is what Pillow keeps as `info["transparency"]`.
    if let Some(frame) = gif_frame {
        let budget = pixels.saturating_mul(4).saturating_add(METADATA_BUDGET);
        let rgb = frame.paint(bytes, budget).map_err(|e| {
            decode_err(image::ImageError::Decoding(image::error::DecodingError::new(
                ImageFormat::Gif.into(),
                e,
            )))
        })?;
        return Ok(
            RgbImage::from_raw(width, height, rgb)?.with_transparent_colour(frame.transparent_colour())
        );
    }
    // The budget for decoding. PNG's reader took its budget when it was made and keeps it, so it
    // is made again, with the metadata's and a row's (the pixels go to a buffer allocated
    // outside it). The other decoders take a new budget, holding their output (at most 16 bytes
    // a pixel) and working buffers.
    if format == ImageFormat::Png {
        decoder = open_decoder(bytes, format, METADATA_BUDGET + u64::from(width) * 32).map_err(decode_err)?;
    } else {
        let budget = pixels.saturating_mul(16).saturating_add(4 * METADATA_BUDGET);
        decoder.set_limits(limits_of(budget)).map_err(decode_err)?;
    }
    let orientation = exif_transpose_orientation(bytes, format, decoder.as_mut());
    let mut image = DynamicImage::from_decoder(decoder).map_err(decode_err)?;
    // The colour Pillow keeps as `info["transparency"]` through `convert("RGB")` (see
    // [`RgbImage::transparent_colour`]), read from the file's own bytes.
    let transparent = match format {
        ImageFormat::Png => crate::png::transparent_colour(bytes),
        _ => None,
    };
    image.apply_orientation(orientation);
    Ok(to_rgb(image)?.with_transparent_colour(transparent))
}

/// The width and height an image file's header declares; no pixel is decoded, and the decoders'
/// allocations are held to a 64 MiB metadata budget. Refuses what [`decode_image`] refuses
/// before decoding: an empty file, a format other than JPEG, PNG, WebP, BMP and GIF, a header
/// that does not parse, a zero width or height.
pub fn read_dimensions(bytes: &[u8], label: &Path) -> Result<(u32, u32), VisionError> {
    let format = detect_format(bytes, label)?;
    let header = open_header(bytes, format, label)?;
    Ok((header.width, header.height))
}

/// The format of `bytes`, one of those this crate decodes.
fn detect_format(bytes: &[u8], label: &Path) -> Result<ImageFormat, VisionError> {
    if bytes.is_empty() {
        return Err(VisionError::EmptyFile { path: label.to_path_buf() });
    }
    let format =
        image::guess_format(bytes).map_err(|_| VisionError::UnknownFormat { path: label.to_path_buf() })?;
    if !matches!(
        format,
        ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP | ImageFormat::Bmp | ImageFormat::Gif
    ) {
        return Err(VisionError::UnknownFormat { path: label.to_path_buf() });
    }
    Ok(format)
}

/// What [`open_header`] read of a file.
struct Header<'b> {
    /// A decoder that has read the header.
    decoder: Box<dyn ImageDecoder + 'b>,
    /// The image's width and height, neither zero (a GIF's as Pillow gives them).
    width: u32,
    height: u32,
    /// A GIF's first frame, which [`decode_image`] paints itself (`None` for other formats).
    gif_frame: Option<FirstFrame<'b>>,
}

/// A decoder of `bytes` that has read its header within the metadata budget, and the width and
/// height the header declares, neither zero; for a GIF, its first frame, whose canvas gives the
/// size (the logical screen enlarged to hold the frame, as Pillow makes it).
fn open_header<'b>(bytes: &'b [u8], format: ImageFormat, label: &Path) -> Result<Header<'b>, VisionError> {
    let path = || label.to_path_buf();
    let decoder = open_decoder(bytes, format, METADATA_BUDGET).map_err(|source| VisionError::Decode {
        path: path(),
        format: format!("{format:?}"),
        source,
    })?;
    let gif_frame = if format == ImageFormat::Gif { FirstFrame::read(bytes) } else { None };
    let (width, height) = gif_frame.as_ref().map_or_else(|| decoder.dimensions(), FirstFrame::canvas_size);
    if width == 0 || height == 0 {
        return Err(VisionError::ZeroSize { path: path(), width, height });
    }
    Ok(Header { decoder, width, height, gif_frame })
}

/// A decoder of `bytes` whose own allocations are capped at `max_alloc` bytes.
fn open_decoder(
    bytes: &[u8],
    format: ImageFormat,
    max_alloc: u64,
) -> Result<Box<dyn ImageDecoder + '_>, image::ImageError> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits_of(max_alloc));
    Ok(Box::new(reader.into_decoder()?))
}

/// The decoders' limits with their allocations capped at `max_alloc` bytes.
fn limits_of(max_alloc: u64) -> Limits {
    let mut limits = Limits::default();
    limits.max_alloc = Some(max_alloc);
    limits
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
