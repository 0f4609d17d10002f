//! A decoded 8-bit RGB image, the common currency of this crate.

use crate::error::VisionError;
use crate::tiling::Size;

/// An 8-bit RGB image, row-major, 3 bytes a pixel, no padding.
///
/// `Hash` and `Eq` cover the size and every pixel, so the image (together with a [`crate::Plan`])
/// can key an embedding cache.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RgbImage {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
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
        Ok(Self { width, height, pixels })
    }

    /// A black image of the given size.
    pub fn black(width: u32, height: u32) -> Result<Self, VisionError> {
        let len = Self::buffer_len(width, height)?;
        Ok(Self { width, height, pixels: vec![0; len] })
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

    /// One row of `width * 3` bytes; `None` past the last row.
    pub fn row(&self, y: u32) -> Option<&[u8]> {
        let stride = self.width as usize * 3;
        let start = (y as usize).checked_mul(stride)?;
        self.pixels.get(start..start.checked_add(stride)?)
    }
}
