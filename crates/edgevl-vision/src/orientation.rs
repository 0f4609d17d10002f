//! The orientation Pillow's `ImageOps.exif_transpose` applies (transformers' `load_image` calls
//! it on every file): the EXIF Orientation tag, and where the EXIF block has none, the XMP packet's
//! `tiff:Orientation`, read from the file's bytes as Pillow reads them.

use image::metadata::Orientation;
use image::{ImageDecoder, ImageFormat};

/// The EXIF block's usual prefix in JPEG and WebP files (Pillow's `Exif.load` strips it).
const EXIF_PREFIX: &[u8] = b"Exif\0\0";

/// The orientation to apply to a decoded image of `format` read from `bytes`:
/// * the EXIF block's Orientation tag: JPEG's first `Exif` APP1 segment, PNG's `eXIf` chunk or,
///   without one, the hex of its "Raw profile type exif" text (ImageMagick writes it), WebP's
///   `EXIF` chunk;
/// * without that tag, the first `tiff:Orientation="N"` or `<tiff:Orientation>N` in the XMP packet:
///   JPEG's last XMP APP1 segment, PNG's "XML:com.adobe.xmp" text, WebP's `XMP ` chunk.
///
/// A malformed block is ignored, as an absent one would be; an Orientation tag of any integer
/// type counts, and one outside 1-8 (or not one integer) rotates nothing and hides the XMP one, as
/// in Pillow. GIF and BMP carry none.
pub(crate) fn exif_transpose_orientation(
    bytes: &[u8],
    format: ImageFormat,
    decoder: &mut dyn ImageDecoder,
) -> Orientation {
    let (exif, xmp) = match format {
        ImageFormat::Jpeg => {
            let app1 = || jpeg_app1_segments(bytes);
            let exif = app1().find_map(|s| s.strip_prefix(EXIF_PREFIX)).map(<[u8]>::to_vec);
            let xmp = app1().filter_map(|s| s.strip_prefix(b"http://ns.adobe.com/xap/1.0/\0")).last();
            (exif, xmp.map(<[u8]>::to_vec))
        }
        ImageFormat::Png => {
            let exif = crate::png::exif(bytes)
                .map(<[u8]>::to_vec)
                .or_else(|| raw_profile_exif(&crate::png::text(bytes, b"Raw profile type exif")?));
            (exif, crate::png::text(bytes, b"XML:com.adobe.xmp"))
        }
        ImageFormat::WebP => (decoder.exif_metadata().ok().flatten(), decoder.xmp_metadata().ok().flatten()),
        _ => (None, None),
    };
    let tag = exif.as_deref().and_then(|e| orientation_tag(e.strip_prefix(EXIF_PREFIX).unwrap_or(e)));
    match tag {
        // Present: it decides, even when it names no rotation (Pillow then rotates nothing).
        Some(value) => value.and_then(Orientation::from_exif),
        None => xmp.as_deref().and_then(xmp_orientation),
    }
    .unwrap_or(Orientation::NoTransforms)
}

/// The Orientation tag (0x112) of the first directory of a TIFF-structured EXIF block: `None`
/// without one (or for a malformed block), `Some(None)` when it is there but not one integer
/// that fits a byte, else `Some(Some(value))` — whatever its integer type, as Pillow reads it.
fn orientation_tag(tiff: &[u8]) -> Option<Option<u8>> {
    let big = match tiff.get(..4)? {
        b"II*\0" => false,
        b"MM\0*" => true,
        _ => return None,
    };
    let u16_at = |at: usize| -> Option<u16> {
        let b = [*tiff.get(at)?, *tiff.get(at + 1)?];
        Some(if big { u16::from_be_bytes(b) } else { u16::from_le_bytes(b) })
    };
    let u32_at = |at: usize| -> Option<u32> {
        let b: [u8; 4] = tiff.get(at..at + 4)?.try_into().ok()?;
        Some(if big { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) })
    };
    let ifd = u32_at(4)? as usize;
    let entries = usize::from(u16_at(ifd)?);
    for i in 0..entries {
        let at = ifd.checked_add(2 + 12 * i)?;
        if u16_at(at)? != 0x112 {
            continue;
        }
        let (kind, count) = (u16_at(at + 2)?, u32_at(at + 4)?);
        // One BYTE, SHORT or LONG (or their signed kinds), held in the entry itself.
        let value = match (kind, count) {
            (1 | 6, 1) => tiff.get(at + 8).map(|&b| u32::from(b)),
            (3 | 8, 1) => u16_at(at + 8).map(u32::from),
            (4 | 9, 1) => u32_at(at + 8),
            _ => None,
        };
        return Some(value.and_then(|v| u8::try_from(v).ok()));
    }
    None
}

/// The payloads of a JPEG's APP1 segments before its first scan, in file order.
fn jpeg_app1_segments(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    const SOI: usize = 2;
    let mut at = Some(SOI);
    std::iter::from_fn(move || loop {
        let mut i = at?;
        // Fill bytes (0xFF) may precede a marker.
        while bytes.get(i + 1) == Some(&0xFF) {
            i += 1;
        }
        if bytes.get(i) != Some(&0xFF) {
            return None;
        }
        let marker = *bytes.get(i + 1)?;
        // Markers without a length: TEM, RST0-7; the scan (SOS) and the end (EOI) stop the walk.
        if marker == 0x01 || (0xD0..=0xD7).contains(&marker) {
            at = Some(i + 2);
            continue;
        }
        if marker == 0xDA || marker == 0xD9 {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([*bytes.get(i + 2)?, *bytes.get(i + 3)?]));
        let payload = bytes.get(i + 4..(i + 2 + len).max(i + 4))?;
        at = Some(i + 2 + len.max(2));
        if marker == 0xE1 {
            return Some(payload);
        }
    })
}

/// The EXIF block in ImageMagick's "Raw profile type exif" text: a blank line, "exif", the
/// length, then hex digits over lines (Pillow joins the lines from the fourth and reads the hex,
/// whitespace skipped).
fn raw_profile_exif(text: &[u8]) -> Option<Vec<u8>> {
    let digits: Vec<u8> =
        text.split(|&b| b == b'\n').skip(3).flatten().copied().filter(|b| !b.is_ascii_whitespace()).collect();
    let hex = |d: u8| (d as char).to_digit(16).map(|v| v as u8);
    digits
        .chunks(2)
        .map(|pair| match pair {
            [hi, lo] => Some(hex(*hi)? << 4 | hex(*lo)?),
            _ => None,
        })
        .collect()
}

/// The orientation of the first `tiff:Orientation="N"` or `tiff:Orientation>N` in an XMP packet
/// (Pillow's pattern: one digit), if it names one of the eight.
fn xmp_orientation(xmp: &[u8]) -> Option<Orientation> {
    const TAG: &[u8] = b"tiff:Orientation";
    let digit = (0..xmp.len()).find_map(|i| {
        let rest = xmp[i..].strip_prefix(TAG)?;
        let value = rest.strip_prefix(b"=\"").or_else(|| rest.strip_prefix(b">"))?;
        value.first().filter(|d| d.is_ascii_digit()).copied()
    })?;
    Orientation::from_exif(digit - b'0')
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn xmp_orientation_follows_pillows_pattern() {
        let o = |s: &str| xmp_orientation(s.as_bytes());
        assert_eq!(o(r#"<d tiff:Orientation="6"/>"#), Some(Orientation::Rotate90));
        assert_eq!(o("<tiff:Orientation>3</tiff:Orientation>"), Some(Orientation::Rotate180));
        // A value that is not a digit: the pattern goes on to the next one.
        assert_eq!(o(r#"tiff:Orientation="x" tiff:Orientation>2"#), Some(Orientation::FlipHorizontal));
        // Digits outside 1-8 rotate nothing; a cut-off packet gives nothing.
        for text in [r#"tiff:Orientation="9""#, r#"tiff:Orientation="0""#, "tiff:Orientation=", ""] {
            assert_eq!(o(text), None, "{text}");
        }
    }

    #[test]
    fn raw_profile_hex_is_read_as_pillow_reads_it() {
        assert_eq!(raw_profile_exif(b"\nexif\n       4\n4578\n6966\n"), Some(b"Exif".to_vec()));
        assert_eq!(raw_profile_exif(b"\nexif\n       2\n45 78\r\n"), Some(b"Ex".to_vec()));
        assert_eq!(raw_profile_exif(b"\nexif\n       2\n457"), None);
        assert_eq!(raw_profile_exif(b"\nexif\n       2\n4g"), None);
    }

    #[test]
    fn jpeg_segment_walk_ends_on_any_input() {
        let exif =
            [&[0xFF, 0xD8, 0xFF, 0xFF, 0xE1, 0x00, 0x06][..], b"Exif", &[0xFF, 0xDA, 0xFF, 0xE1]].concat();
        assert_eq!(jpeg_app1_segments(&exif).collect::<Vec<_>>(), [b"Exif"]);
        for cut in 0..exif.len() {
            assert!(jpeg_app1_segments(&exif[..cut]).count() <= 1);
        }
        // A segment length under 2 still moves the walk on.
        let short = [0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x00, 0xFF, 0xE1, 0x00, 0x03, 0x41];
        assert_eq!(jpeg_app1_segments(&short).count(), 2);
    }

    #[test]
    fn png_text_past_a_mebibyte_is_not_inflated() {
        let chunk =
            |kind: &[u8], data: &[u8]| [&(data.len() as u32).to_be_bytes()[..], kind, data, &[0; 4]].concat();
        let ztxt = |len: usize| {
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
            z.write_all(&vec![b' '; len]).unwrap();
            z.write_all(br#"tiff:Orientation="6""#).unwrap();
            chunk(b"zTXt", &[&b"XML:com.adobe.xmp\0\0"[..], &z.finish().unwrap()].concat())
        };
        for (len, want) in [(1000, Some(Orientation::Rotate90)), (2 << 20, None)] {
            let png = [&b"\x89PNG\r\n\x1a\n"[..], &ztxt(len), &chunk(b"IEND", b"")].concat();
            let xmp = crate::png::text(&png, b"XML:com.adobe.xmp");
            assert_eq!(xmp.as_deref().and_then(xmp_orientation), want, "{len}");
        }
    }
}
