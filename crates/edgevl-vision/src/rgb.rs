//! A decoded 8-bit RGB image, the common currency of this crate.

use crate::error::VisionError;
use crate::tiling::Size;

/// An 8-bit RGB image, row-major, 3 bytes a pixel, no padding.
///
/// `Hash` and `Eq` cover the size, every pixel and the transparent colour, so the image
/// (together with a [`crate::Plan`]) can key an embedding cache.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RgbImage {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
    /// See [`RgbImage::transparent_colour`].
    transparent: Option<[u8; 3]>,
}

impl RgbImage {
    /// The largest image this crate creates, in pixels (2^28, 768 MiB of RGB): larger sizes are
    /// refused with an error before anything is allocated. Every tiling plan's canvas stays far
    /// below ([`crate::tiling::MAX_CANVAS_PIXELS`]).
    pub const MAX_PIXELS: u64 = 1 << 28;

    /// Wraps a buffer of `width * height * 3` bytes. Zero sizes are refused.
    pub fn from_raw(width: u32, height: u32, pixels: Vec<u8>) -> Result<Self, VisionError> {
        let expected = Self::buffer_len(width, height)?;
        if pixels.len() != expected {
            return Err(VisionError::BufferSize {
                width,
                height,
                expected: expected as u64,
                found: pixels.len(),
            });
        }
        Ok(Self { width, height, pixels, transparent: None })
    }

    /// A black image of the given size.
    pub fn black(width: u32, height: u32) -> Result<Self, VisionError> {
        let len = Self::buffer_len(width, height)?;
        Ok(Self { width, height, pixels: vec![0; len], transparent: None })
    }

    /// Bytes needed for `width x height` RGB, refusing zero sizes and more than
    /// [`RgbImage::MAX_PIXELS`] pixels.
    pub fn buffer_len(width: u32, height: u32) -> Result<usize, VisionError> {
        let invalid =
            |reason| VisionError::InvalidSize { width: width.into(), height: height.into(), reason };
        if width == 0 || height == 0 {
            return Err(invalid("width and height must be at least 1"));
        }
        if u64::from(width) * u64::from(height) > Self::MAX_PIXELS {
            return Err(invalid("more than 2^28 pixels"));
        }
        usize::try_from(u64::from(width) * u64::from(height) * 3)
            .map_err(|_| invalid("pixel buffer size overflows"))
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Width and height.
    pub fn size(&self) -> Size {
        Size::new(self.width, self.height)
    }

    /// The pixels, row-major RGB.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// Consumes the image, returning its pixel buffer.
    pub fn into_pixels(self) -> Vec<u8> {
        self.pixels
    }

    /// The colour its file marks transparent, as Pillow keeps it through `convert("RGB")` in
    /// `info["transparency"]`: a GIF's transparent index or a PNG `tRNS` naming one colour, as
    /// the RGB it stands for. The pixels keep that colour; the InternVL and SmolVLM processors
    /// composite it onto white ([`crate::Preprocess::composite_transparent`]).
    pub fn transparent_colour(&self) -> Option<[u8; 3]> {
        self.transparent
    }

    /// The image with `colour` marked transparent (see [`RgbImage::transparent_colour`]).
    pub fn with_transparent_colour(mut self, colour: Option<[u8; 3]>) -> Self {
        self.transparent = colour;
        self
    }

    /// The image with the pixels of its transparent colour made white, as transformers'
    /// `convert_to_rgb` composites an image with `info["transparency"]` onto a white background;
    /// borrowed as it is when it has no transparent colour.
    pub fn composited_on_white(&self) -> std::borrow::Cow<'_, RgbImage> {
        let Some(key) = self.transparent else { return std::borrow::Cow::Borrowed(self) };
        let mut out = RgbImage { transparent: None, ..self.clone() };
        for px in out.pixels.chunks_exact_mut(3) {
            if px == key {
                px.copy_from_slice(&[255, 255, 255]);
            }
        }
        std::borrow::Cow::Owned(out)
    }

    /// One row of `width * 3` bytes; `None` past the last row.
    pub fn row(&self, y: u32) -> Option<&[u8]> {
        let stride = self.width as usize * 3;
        let start = (y as usize).checked_mul(stride)?;
        self.pixels.get(start..start.checked_add(stride)?)
    }
}
