//! The server's request bodies: `POST /v1/chat/completions` (JSON, roles, content parts, image
//! parts as data URIs or base64, sampling and budget fields) and `POST /v1/images`.

use edgevl_server::api::{parse_json, ChatRequest, UploadRequest};
use edgevl_server::images::{budget, decode, decode_counted, parse_url, ImageSource};
use edgevl_server::ImageLimits;

use crate::FUZZ_MAX_PIXELS;

/// The vocabulary size the chat target reads `logit_bias` against.
const N_VOCAB: usize = 512;

fn limits() -> ImageLimits {
    ImageLimits { max_pixels: FUZZ_MAX_PIXELS, ..ImageLimits::default() }
}

/// A chat request body, read as the server reads it before queueing it (with and without a
/// vision encoder), its image parts decoded: a request or a 400 naming the problem.
pub fn server_chat(data: &[u8]) {
    let Ok(req) = parse_json::<ChatRequest>(data) else { return };
    if req.check_supported().is_err() {
        return;
    }
    let n_messages = req.messages.len();
    let Ok(input) = req.into_input(N_VOCAB, true, &limits()) else { return };
    assert_eq!(input.messages.len(), n_messages, "one message out per message in");
    assert!(input.images.len() <= limits().max_images, "at most max_images images");
    assert!(input.sampler.logit_bias.iter().all(|&(id, _)| (id as usize) < N_VOCAB));
    let mut total = 0;
    for image in &input.images {
        if let Ok(ImageSource::Inline(bytes)) = image.source() {
            if let Ok(pixels) = decode_counted(&bytes, &image.part, &limits(), &mut total) {
                assert!(pixels.size().area() <= FUZZ_MAX_PIXELS);
                assert!(total <= limits().max_request_pixels, "the request's pixels within the limit");
            }
        }
    }
}

/// An upload body: parsed, its budget read and its image decoded, or a 400.
pub fn server_upload(data: &[u8]) {
    let Ok(req) = parse_json::<UploadRequest>(data) else { return };
    if budget(req.detail.as_deref(), req.max_tiles, "image").is_err() {
        return;
    }
    if let Ok(ImageSource::Inline(bytes)) = parse_url(&req.image, "image") {
        let _ = decode(&bytes, "image", &limits());
    }
}
