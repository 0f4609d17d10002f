//! Images in requests: `data:` URIs and raw base64 only, limits checked from the header before
//! any pixel is decoded, the tile budget of `detail` / `max_tiles`, and the registry of images
//! uploaded with `POST /v1/images` (`edgevl-image://ID`).

use crate::error::ApiError;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use edgevl_runtime::{ImageInfo, TileBudget};
use edgevl_vision::{decode_image, read_dimensions, LoadLimits, RgbImage, MAX_TILES_LIMIT};
use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Mutex;

/// The URL scheme of uploaded images: `edgevl-image://ID`.
pub const UPLOAD_SCHEME: &str = "edgevl-image://";

/// Limits on the images of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageLimits {
    /// Largest image in pixels, as its header declares it (default 64 MP).
    pub max_pixels: u64,
    /// Longest side in pixels (default 16384).
    pub max_side: u32,
    /// Most images in one request (default 8).
    pub max_images: usize,
    /// Most pixels of one request's images together, as their headers declare them (default
    /// 128 MP): a request's images are all decoded before any is encoded, so this bounds the
    /// decoded pixels one request holds (384 MiB of RGB).
    pub max_request_pixels: u64,
}

impl Default for ImageLimits {
    fn default() -> Self {
        ImageLimits { max_pixels: 64 << 20, max_side: 16384, max_images: 8, max_request_pixels: 128 << 20 }
    }
}

/// Where an image part's bytes are.
#[derive(Debug)]
pub enum ImageSource {
    /// The encoded file, from a `data:` URI or raw base64.
    Inline(Vec<u8>),
    /// An id from `POST /v1/images`.
    Uploaded(String),
}

/// Base64 with or without padding (clients differ).
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Reads an image URL: `data:<type>;base64,<data>`, `edgevl-image://ID`, or raw base64.
/// `part` names the message part in errors.
pub fn parse_url(url: &str, part: &str) -> Result<ImageSource, ApiError> {
    let lower: String = url.chars().take(16).collect::<String>().to_ascii_lowercase();
    // A URL scheme is case-insensitive (RFC 3986): `EDGEVL-IMAGE://` was read as base64.
    if lower.starts_with(UPLOAD_SCHEME) {
        return Ok(ImageSource::Uploaded(url[UPLOAD_SCHEME.len()..].to_string()));
    }
    if ["http://", "https://", "file:", "ftp://"].iter().any(|s| lower.starts_with(s)) {
        return Err(ApiError::bad_request_code(
            "invalid_image_url",
            format!("{part}: only data: URIs and base64 images are accepted (this server fetches no URL)"),
        )
        .with_param(part));
    }
    let payload = if lower.starts_with("data:") {
        let comma = url.find(',').ok_or_else(|| {
            ApiError::bad_request_code(
                "invalid_image_url",
                format!("{part}: a data: URI needs a comma before its data"),
            )
            .with_param(part)
        })?;
        if !url[..comma].to_ascii_lowercase().ends_with(";base64") {
            return Err(ApiError::bad_request_code(
                "invalid_image_url",
                format!("{part}: only base64 data: URIs are accepted (data:image/png;base64,...)"),
            )
            .with_param(part));
        }
        &url[comma + 1..]
    } else {
        url
    };
    let compact: Vec<u8> = payload.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let bytes = B64.decode(&compact).map_err(|e| {
        ApiError::bad_request_code("invalid_base64", format!("{part}: the image is not valid base64 ({e})"))
            .with_param(part)
    })?;
    Ok(ImageSource::Inline(bytes))
}

/// The width and height an image file's header declares (nothing is decoded; the header is read
/// within the vision crate's metadata budget, so a bloated colour profile costs nothing).
pub fn dimensions(bytes: &[u8], part: &str) -> Result<(u32, u32), ApiError> {
    read_dimensions(bytes, Path::new(part))
        .map_err(|e| ApiError::bad_request_code("invalid_image", e.to_string()).with_param(part))
}

/// Refuses an image whose header declares more than `limits` allow one image.
fn check_size(width: u32, height: u32, part: &str, limits: &ImageLimits) -> Result<(), ApiError> {
    let bad = |what: String| {
        ApiError::bad_request_code("invalid_image", format!("{part}: {what}")).with_param(part)
    };
    if width > limits.max_side || height > limits.max_side {
        return Err(bad(format!(
            "the image is {width}x{height}, over the limit of {} pixels a side",
            limits.max_side
        )));
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels {
        return Err(bad(format!(
            "the image is {width}x{height} = {pixels} pixels, over the limit of {} pixels",
            limits.max_pixels
        )));
    }
    Ok(())
}

/// Decodes an image file checked against `limits`: the size is read from the header and
/// refused before any pixel is decoded (a decompression bomb costs nothing).
pub fn decode(bytes: &[u8], part: &str, limits: &ImageLimits) -> Result<RgbImage, ApiError> {
    let (width, height) = dimensions(bytes, part)?;
    check_size(width, height, part, limits)?;
    decode_checked(bytes, part, limits)
}

/// Decodes an image file whose header has passed [`check_size`] (its pixel limit is checked
/// again as the image is decoded).
fn decode_checked(bytes: &[u8], part: &str, limits: &ImageLimits) -> Result<RgbImage, ApiError> {
    let load = LoadLimits { max_file_bytes: bytes.len() as u64, max_pixels: limits.max_pixels };
    decode_image(bytes, Path::new(part), &load).map_err(|e| {
        ApiError::bad_request_code("invalid_image", format!("{part}: the image does not decode ({e})"))
            .with_param(part)
    })
}

/// [`decode`] for one of a request's images, which have declared `total` pixels so far: the
/// image's header adds its pixels (once it passes the limits of one image), and a total past
/// `limits.max_request_pixels` is refused before this image is decoded.
pub fn decode_counted(
    bytes: &[u8],
    part: &str,
    limits: &ImageLimits,
    total: &mut u64,
) -> Result<RgbImage, ApiError> {
    let (w, h) = dimensions(bytes, part)?;
    check_size(w, h, part, limits)?;
    *total = total.saturating_add(u64::from(w) * u64::from(h));
    if *total > limits.max_request_pixels {
        return Err(ApiError::bad_request_code(
            "too_many_pixels",
            format!(
                "{part}: the request's images declare {total} pixels together, over the limit of {}",
                limits.max_request_pixels
            ),
        )
        .with_param(part));
    }
    decode_checked(bytes, part, limits)
}

/// The tile budget of `detail` (`low` = the global view alone, `high` and `auto` = the
/// server's budget) and the extension `max_tiles` (which wins).
pub fn budget(detail: Option<&str>, max_tiles: Option<u32>, part: &str) -> Result<TileBudget, ApiError> {
    if let Some(n) = max_tiles {
        if n == 0 || n > MAX_TILES_LIMIT {
            return Err(ApiError::bad_request(format!(
                "{part}: max_tiles must be between 1 and {MAX_TILES_LIMIT}"
            ))
            .with_param(part));
        }
        return Ok(TileBudget::MaxTiles(n));
    }
    match detail {
        None | Some("auto") | Some("high") => Ok(TileBudget::Default),
        Some("low") => Ok(TileBudget::GlobalOnly),
        Some(other) => {
            Err(ApiError::bad_request(format!("{part}: detail must be low, high or auto, not {other:?}"))
                .with_param(part))
        }
    }
}

/// Images uploaded with `POST /v1/images`, by id: what is needed to find their embeddings in
/// the encoder's cache (the pixels are not kept). Bounded: the oldest ids are forgotten.
pub struct Uploads {
    inner: Mutex<UploadsInner>,
    capacity: usize,
}

struct UploadsInner {
    next: u64,
    by_id: HashMap<String, ImageInfo>,
    order: VecDeque<String>,
}

impl Uploads {
    /// An empty registry keeping at most `capacity` ids.
    pub fn new(capacity: usize) -> Self {
        Uploads {
            inner: Mutex::new(UploadsInner { next: 1, by_id: HashMap::new(), order: VecDeque::new() }),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, UploadsInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers `info` under a new id and returns the id.
    pub fn insert(&self, info: ImageInfo) -> String {
        let mut g = self.lock();
        let id = format!("img-{:016x}-{}", info.key, g.next);
        g.next += 1;
        g.by_id.insert(id.clone(), info);
        g.order.push_back(id.clone());
        while g.order.len() > self.capacity {
            if let Some(old) = g.order.pop_front() {
                g.by_id.remove(&old);
            }
        }
        id
    }

    /// The image registered under `id`.
    pub fn get(&self, id: &str) -> Option<ImageInfo> {
        self.lock().by_id.get(id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_read_or_refused_with_the_part_named() {
        let png = [0x89u8, b'P', b'N', b'G'];
        let b64 = B64.encode(png);
        for url in
            [format!("data:image/png;base64,{b64}"), b64.clone(), format!("DATA:image/png;BASE64,{b64}")]
        {
            assert!(matches!(parse_url(&url, "p").unwrap(), ImageSource::Inline(b) if b == png));
        }
        for url in ["edgevl-image://abc", "EDGEVL-Image://abc"] {
            assert!(
                matches!(parse_url(url, "p").unwrap(), ImageSource::Uploaded(id) if id == "abc"),
                "{url}"
            );
        }
        for url in
            ["http://x/y.png", "HTTPS://x", "file:///etc/passwd", "data:image/png,rawbytes", "data:nocomma"]
        {
            let e = parse_url(url, "messages[0].content[1]").unwrap_err();
            assert_eq!(e.status.as_u16(), 400, "{url}");
            assert!(e.message.starts_with("messages[0].content[1]"), "{}", e.message);
        }
        assert_eq!(parse_url("not base64!!", "p").unwrap_err().code, Some("invalid_base64"));
    }

    #[test]
    fn detail_maps_to_a_budget() {
        assert_eq!(budget(Some("low"), None, "p").unwrap(), TileBudget::GlobalOnly);
        assert_eq!(budget(Some("high"), None, "p").unwrap(), TileBudget::Default);
        assert_eq!(budget(None, None, "p").unwrap(), TileBudget::Default);
        assert_eq!(budget(Some("low"), Some(4), "p").unwrap(), TileBudget::MaxTiles(4));
        assert!(budget(Some("medium"), None, "p").is_err());
        assert!(budget(None, Some(0), "p").is_err());
        assert!(budget(None, Some(MAX_TILES_LIMIT + 1), "p").is_err());
    }

    #[test]
    fn uploads_forget_the_oldest_beyond_capacity() {
        let info = |key| ImageInfo {
            label: "x".into(),
            plan: edgevl_runtime::ImageConfig::default()
                .plan(edgevl_vision::Size::new(10, 10), TileBudget::Default)
                .unwrap(),
            n_tokens: 196,
            key,
            cached: false,
        };
        let u = Uploads::new(2);
        let a = u.insert(info(1));
        let b = u.insert(info(2));
        let c = u.insert(info(3));
        assert!(u.get(&a).is_none());
        assert_eq!(u.get(&b).map(|i| i.key), Some(2));
        assert_eq!(u.get(&c).map(|i| i.key), Some(3));
        assert!(u.get("nope").is_none());
    }
}
