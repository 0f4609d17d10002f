//! A GIF's first frame as Pillow reads it, from the file's bytes: the canvas (the logical screen,
//! enlarged to hold the frame where it reaches past it), where the frame lies on it, its palette,
//! and the index its graphic control extension marks transparent; and the frame painted on it.

use std::io::Cursor;
use std::num::NonZeroU64;

/// The first frame of a GIF: the logical screen, the frame's rectangle on it, the palette it is
/// drawn with (its local table, or the global one) and its transparent index.
pub(crate) struct FirstFrame<'b> {
    screen_width: u32,
    screen_height: u32,
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
        let (screen_width, screen_height) = (
            u32::from(u16::from_le_bytes([screen[0], screen[1]])),
            u32::from(u16::from_le_bytes([screen[2], screen[3]])),
        );
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
                        screen_width,
                        screen_height,
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

    /// The image's width and height as Pillow gives them: the logical screen's, enlarged to
    /// hold the first frame where it reaches past the screen (a screen of 0x0 takes the frame's
    /// extent).
    pub(crate) fn canvas_size(&self) -> (u32, u32) {
        (self.screen_width.max(self.left + self.width), self.screen_height.max(self.top + self.height))
    }

    /// The first frame as Pillow's `convert("RGB")` gives it, decoded from `bytes` with the GIF
    /// decoder's allocations held to `max_alloc` bytes: RGB pixels of [`FirstFrame::canvas_size`],
    /// each frame pixel its palette entry's colour (the transparent index's too), the canvas
    /// around the frame the transparent index's colour, or without one palette entry 0; an index
    /// without a colour is black.
    pub(crate) fn paint(&self, bytes: &[u8], max_alloc: u64) -> Result<Vec<u8>, gif::DecodingError> {
        let mut options = gif::DecodeOptions::new();
        options.set_color_output(gif::ColorOutput::Indexed);
        options
            .set_memory_limit(gif::MemoryLimit::Bytes(NonZeroU64::new(max_alloc).unwrap_or(NonZeroU64::MIN)));
        let mut decoder = options.read_info(Cursor::new(bytes))?;
        let frame = decoder.read_next_frame()?.ok_or_else(|| malformed("no image in the file"))?;
        let (width, height) = (u32::from(frame.width), u32::from(frame.height));
        if (width, height) != (self.width, self.height) || frame.buffer.len() != (width * height) as usize {
            return Err(malformed("the first frame's pixels do not match its descriptor"));
        }
        let (canvas_w, canvas_h) = self.canvas_size();
        let fill = self.colour(self.transparent.unwrap_or(0)).unwrap_or([0; 3]);
        let mut rgb = fill.repeat(canvas_w as usize * canvas_h as usize);
        // (A frame 0 pixels wide, which the GIF decoder refuses today, has no rows; `chunks_exact`
        // takes no size of 0.)
        for (y, row) in frame.buffer.chunks_exact(width.max(1) as usize).enumerate() {
            let start = 3 * ((self.top as usize + y) * canvas_w as usize + self.left as usize);
            for (px, &index) in rgb[start..start + 3 * row.len()].chunks_exact_mut(3).zip(row) {
                px.copy_from_slice(&self.colour(usize::from(index)).unwrap_or([0; 3]));
            }
        }
        Ok(rgb)
    }
}

/// A decoding error of the GIF decoder's kind for a file this reader finds inconsistent.
fn malformed(what: &str) -> gif::DecodingError {
    gif::DecodingError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string()))
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
        assert_eq!(frame.canvas_size(), (12, 9));
        assert_eq!(frame.transparent_colour(), Some([10, 220, 40]));
        // A frame with no pixels is refused by the GIF decoder ("image truncated") or paints the
        // screen alone; never a panic (`chunks_exact` takes no size of 0).
        let fixture = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/vision/modes/small_frame.gif"
        ))
        .expect("fixture");
        let d = fixture.windows(9).position(|w| w == [0x2C, 4, 0, 3, 0, 5, 0, 4, 0]).expect("descriptor");
        for (w, h) in [(0u8, 4u8), (5, 0), (0, 0)] {
            let mut empty = fixture.clone();
            (empty[d + 5], empty[d + 7]) = (w, h);
            let frame = FirstFrame::read(&empty).expect("a first frame");
            let painted = frame.paint(&empty, 1 << 20);
            assert_eq!(painted.map(|rgb| rgb.len()).unwrap_or(12 * 9 * 3), 12 * 9 * 3, "{w}x{h}");
        }
        // The trailer before any image: none.
        let mut none = gif[..13 + 6].to_vec();
        none.push(0x3B);
        assert!(FirstFrame::read(&none).is_none());
    }
}
