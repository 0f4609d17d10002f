//! A GIF's first frame as Pillow reads it, from the file's bytes: where the frame lies on the
//! canvas, its palette, and the index its graphic control extension marks transparent.

use image::DynamicImage;

/// The first frame of a GIF: its rectangle on the canvas, the palette it is drawn with (its
/// local table, or the global one) and its transparent index.
pub(crate) struct FirstFrame<'b> {
    left: u32,
    top: u32,
    width: u32,
    height: u32,
    palette: &'b [u8],
    transparent: Option<usize>,
}

impl<'b> FirstFrame<'b> {
    /// Reads the logical screen, the extensions before the first image and its descriptor;
    /// `None` if the file ends or is malformed before the first image.
    pub(crate) fn read(bytes: &'b [u8]) -> Option<Self> {
        let table_len = |packed: u8| if packed & 0x80 != 0 { 3usize << ((packed & 7) + 1) } else { 0 };
        let screen = bytes.get(6..13)?;
        let global = bytes.get(13..13 + table_len(screen[4]))?;
        let mut at = 13 + global.len();
        let mut transparent = None;
        loop {
            match *bytes.get(at)? {
                // Extension: label, then sub-blocks (a length byte each, 0 ends).
                0x21 => {
                    let label = *bytes.get(at + 1)?;
                    let mut block = at + 2;
                    // A later control extension without the flag keeps the earlier index, as in Pillow.
                    if label == 0xF9 {
                        let gce = bytes.get(block + 1..block + 5)?;
                        if gce[0] & 1 == 1 {
                            transparent = Some(gce[3] as usize);
                        }
                    }
                    loop {
                        let n = *bytes.get(block)? as usize;
                        block += 1 + n;
                        if n == 0 {
                            break;
                        }
                    }
                    at = block;
                }
                // The first image: left, top, width, height (u16 LE each), then its flags.
                0x2C => {
                    let d = bytes.get(at + 1..at + 10)?;
                    let u16_at = |i: usize| u32::from(u16::from_le_bytes([d[i], d[i + 1]]));
                    let local = bytes.get(at + 10..at + 10 + table_len(d[8]))?;
                    return Some(Self {
                        left: u16_at(0),
                        top: u16_at(2),
                        width: u16_at(4),
                        height: u16_at(6),
                        palette: if local.is_empty() { global } else { local },
                        transparent,
                    });
                }
                // The trailer: no image.
                0x3B => return None,
                // Pillow skips a byte it does not know between blocks.
                _ => at += 1,
            }
        }
    }

    /// The colour of palette entry `index`; a GIF without a palette is grey, as Pillow reads it
    /// (mode "L").
    fn colour(&self, index: usize) -> Option<[u8; 3]> {
        if self.palette.is_empty() {
            let grey = u8::try_from(index).ok()?;
            return Some([grey; 3]);
        }
        let entry = self.palette.get(3 * index..3 * index + 3)?;
        Some([entry[0], entry[1], entry[2]])
    }

    /// The colour of the transparent index, which Pillow keeps as `info["transparency"]`.
    pub(crate) fn transparent_colour(&self) -> Option<[u8; 3]> {
        self.colour(self.transparent?)
    }

    /// Paints the canvas outside the frame as Pillow does: with the transparent index's colour,
    /// or without one with palette entry 0 (the decoder leaves it transparent black). A frame
    /// reaching past the canvas is clipped to it (Pillow enlarges the image instead).
    pub(crate) fn fill_outside(&self, image: &mut DynamicImage) {
        let DynamicImage::ImageRgba8(buf) = image else { return };
        let Some([r, g, b]) = self.colour(self.transparent.unwrap_or(0)) else { return };
        let (x0, y0) = (self.left, self.top);
        let (x1, y1) = (x0.saturating_add(self.width), y0.saturating_add(self.height));
        for (x, y, px) in buf.enumerate_pixels_mut() {
            if !(x0..x1).contains(&x) || !(y0..y1).contains(&y) {
                px.0 = [r, g, b, 0xFF];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_frame_is_read_as_pillow_reads_it() {
        // Screen 12x9 with a global table of 2 entries; a control extension marking index 1
        // transparent, a second one without the flag, a byte Pillow skips, then the image at
        // (4, 3), 5x4.
        let mut gif = b"GIF89a".to_vec();
        gif.extend([12, 0, 9, 0, 0x80, 0, 0]);
        gif.extend([200, 30, 90, 10, 220, 40]);
        gif.extend([0x21, 0xF9, 4, 1, 0, 0, 1, 0]);
        gif.extend([0x21, 0xF9, 4, 0, 0, 0, 0, 0]);
        gif.push(0x00);
        gif.extend([0x2C, 4, 0, 3, 0, 5, 0, 4, 0, 0]);
        let frame = FirstFrame::read(&gif).expect("a first frame");
        assert_eq!((frame.left, frame.top, frame.width, frame.height), (4, 3, 5, 4));
        assert_eq!(frame.transparent_colour(), Some([10, 220, 40]));
        // The trailer before any image: none.
        let mut none = gif[..13 + 6].to_vec();
        none.push(0x3B);
        assert!(FirstFrame::read(&none).is_none());
    }
}
