//! What a PNG's chunks say beside its pixels, read from the file's bytes as Pillow reads them:
//! the colour `tRNS` marks transparent, the EXIF block (`eXIf`) and text chunks by keyword.

use std::io::Read;

/// The most a compressed text chunk may inflate to: Pillow's `MAX_TEXT_CHUNK` (1 MiB). A chunk
/// past it is not read here (Pillow refuses the file).
const MAX_TEXT_CHUNK: u64 = 1 << 20;

/// A PNG's chunks in order, as (type, data), up to IEND or the first malformed one.
pub(crate) fn chunks(bytes: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    const SIGNATURE: usize = 8;
    let mut at = Some(SIGNATURE);
    std::iter::from_fn(move || {
        let start = at?;
        // Each chunk: length (u32 BE), type (4 bytes), data, CRC (4 bytes).
        let head = bytes.get(start..start + 8)?;
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let kind = [head[4], head[5], head[6], head[7]];
        let data = bytes.get(start + 8..(start + 8).checked_add(len)?)?;
        at = if &kind == b"IEND" { None } else { Some(start + 12 + len) };
        Some((kind, data))
    })
}

/// The EXIF block (a TIFF header and its directories) of the file's last `eXIf` chunk, wherever
/// it lies (Pillow reads the chunks after the pixels when it loads the image, and a later chunk
/// replaces an earlier one).
pub(crate) fn exif(bytes: &[u8]) -> Option<&[u8]> {
    chunks(bytes).filter(|(kind, _)| kind == b"eXIf").last().map(|(_, data)| data)
}

/// The text of the file's last `tEXt`, `zTXt` or `iTXt` chunk whose keyword is `keyword`, as
/// bytes (inflated if compressed), as Pillow's `info[keyword]` holds it once the image is
/// loaded. `None` without one, or when the winning chunk is malformed or inflates past 1 MiB.
pub(crate) fn text(bytes: &[u8], keyword: &[u8]) -> Option<Vec<u8>> {
    let (kind, data) = chunks(bytes)
        .filter(|(kind, data)| {
            matches!(kind, b"tEXt" | b"zTXt" | b"iTXt") && data.split(|&b| b == 0).next() == Some(keyword)
        })
        .last()?;
    let body = data.get(keyword.len() + 1..)?;
    match &kind {
        b"tEXt" => Some(body.to_vec()),
        // zTXt: compression method (0: zlib), then the compressed text.
        b"zTXt" => inflate(body.strip_prefix(&[0])?),
        // iTXt: compression flag, method, language tag \0, translated keyword \0, text.
        _ => {
            let (&flag, rest) = body.split_first()?;
            let (&method, rest) = rest.split_first()?;
            let mut parts = rest.splitn(3, |&b| b == 0);
            let text = parts.nth(2)?;
            match (flag, method) {
                (0, _) => Some(text.to_vec()),
                (_, 0) => inflate(text),
                _ => None,
            }
        }
    }
}

/// `data` inflated (zlib), if it is well formed and inflates to at most [`MAX_TEXT_CHUNK`].
fn inflate(data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(data).take(MAX_TEXT_CHUNK + 1).read_to_end(&mut out).ok()?;
    (out.len() as u64 <= MAX_TEXT_CHUNK).then_some(out)
}

/// A PNG's `tRNS` as Pillow reads it: a palette whose `tRNS` makes one entry fully transparent
/// and the rest opaque gives that entry's colour (per-entry alphas are dropped by `convert`); an
/// 8-bit (or 2- and 4-bit) grey or an RGB image's `tRNS` gives its sample values, compared with
/// the pixels as they are (so only values up to 255 can match, as in Pillow); a 1-bit grey
/// image's gives black for 0 and white for anything else (Pillow 13 reads it as 0 or 255 for mode
/// "1"; earlier Pillow kept the raw value, matching black for 0 and no pixel otherwise, the same
/// picture once composited onto white). 16-bit grey and images with alpha channels give none.
pub(crate) fn transparent_colour(bytes: &[u8]) -> Option<[u8; 3]> {
    let (mut header, mut palette, mut trns) = (None, None, None);
    for (kind, data) in chunks(bytes) {
        match &kind {
            b"IHDR" => header = data.get(8..10).map(|d| (d[0], d[1])),
            b"PLTE" => palette = Some(data),
            b"tRNS" => trns = Some(data),
            b"IDAT" => break,
            _ => {}
        }
    }
    let (trns, (depth, colour_type)) = (trns?, header?);
    let sample = |i: usize| -> Option<u8> {
        let v = u16::from_be_bytes([*trns.get(2 * i)?, *trns.get(2 * i + 1)?]);
        u8::try_from(v).ok()
    };
    match colour_type {
        3 => {
            let zero = trns.iter().position(|&a| a == 0)?;
            let simple = trns.iter().enumerate().all(|(i, &a)| a == 0xFF || i == zero);
            if !simple {
                return None;
            }
            let entry = palette?.get(3 * zero..3 * zero + 3)?;
            Some([entry[0], entry[1], entry[2]])
        }
        0 if depth == 1 => {
            let v = u16::from_be_bytes([*trns.first()?, *trns.get(1)?]);
            Some(if v == 0 { [0; 3] } else { [255; 3] })
        }
        0 if (2..=8).contains(&depth) => sample(0).map(|g| [g, g, g]),
        2 => Some([sample(0)?, sample(1)?, sample(2)?]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PNG's bytes with these chunks (CRCs are not read here and left zero).
    fn png_of(chunks: &[(&[u8; 4], Vec<u8>)]) -> Vec<u8> {
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        for (kind, data) in chunks {
            out.extend((data.len() as u32).to_be_bytes());
            out.extend(*kind);
            out.extend(data);
            out.extend([0; 4]);
        }
        out
    }

    fn grey_with_trns(depth: u8, trns: u16) -> Option<[u8; 3]> {
        let ihdr = [&8u32.to_be_bytes()[..], &2u32.to_be_bytes(), &[depth, 0, 0, 0, 0]].concat();
        transparent_colour(&png_of(&[
            (b"IHDR", ihdr),
            (b"tRNS", trns.to_be_bytes().to_vec()),
            (b"IEND", vec![]),
        ]))
    }

    #[test]
    fn a_grey_trns_names_the_colour_pillow_keeps() {
        // Pillow 13 (checked with its PngImagePlugin): a 1-bit image's tRNS 0 is info["transparency"] 0,
        // 1 or more is 255; 8-bit grey keeps the value, past 255 matching nothing; 16-bit none here.
        assert_eq!(grey_with_trns(1, 0), Some([0; 3]));
        assert_eq!(grey_with_trns(1, 1), Some([255; 3]));
        assert_eq!(grey_with_trns(1, 5), Some([255; 3]));
        assert_eq!(grey_with_trns(8, 77), Some([77; 3]));
        assert_eq!(grey_with_trns(8, 300), None);
        assert_eq!(grey_with_trns(16, 77), None);
    }
}
