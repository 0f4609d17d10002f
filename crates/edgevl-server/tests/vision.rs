//! The server with the tiny random VLM (tests/fixtures/tiny-llama-spm + tiny-vlm): `detail`
//! sets the tile budget (low < high image tokens, as /v1/edgevl/tiles predicts), a repeated
//! image is not encoded again and its prompt prefix comes from the KV cache, an uploaded image
//! is encoded once and found by its id, hostile images are refused naming the part, and a stream
//! that asks for it tells the image's views and the prefill's positions before the first token.

mod common;

use common::{assert_error, data_uri, image_chat, png, start, tiny_vlm, TestServer};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};

/// 900x500: the relaxed strategy tiles it.
fn wide() -> Vec<u8> {
    png(900, 500, 7)
}

fn image_tokens(v: &Value) -> u64 {
    v["usage"]["prompt_tokens_details"]["image_tokens"].as_u64().expect("image_tokens")
}

#[test]
fn detail_sets_the_tile_budget_as_the_tiles_endpoint_says() {
    let t = start(tiny_vlm());
    let uri = data_uri(&wide());
    let plan = |detail: &str| {
        let (s, body) = t.get(&format!("/v1/edgevl/tiles?width=900&height=500&detail={detail}"));
        assert_eq!(s, 200, "{body}");
        serde_json::from_str::<Value>(&body).expect("JSON")
    };
    let (low, high, auto) = (plan("low"), plan("high"), plan("auto"));
    assert_eq!((low["views"].as_u64(), low["global_view"].as_bool()), (Some(1), Some(false)));
    assert!(high["views"].as_u64() > Some(1), "{high}");
    assert_eq!(auto["views"], high["views"]);
    let per_view = low["image_tokens"].as_u64().expect("tokens");

    let v_low = t.chat_ok(&image_chat(&[(&uri, Some("low"))], "What is it?", 2));
    let v_high = t.chat_ok(&image_chat(&[(&uri, Some("high"))], "What is it?", 2));
    assert_eq!(image_tokens(&v_low), per_view);
    assert_eq!(Some(image_tokens(&v_high)), high["image_tokens"].as_u64());
    assert!(image_tokens(&v_low) < image_tokens(&v_high));
    // The extension max_tiles overrides detail.
    let mut body = image_chat(&[(&uri, Some("high"))], "What is it?", 2);
    body["messages"][0]["content"][0]["image_url"]["max_tiles"] = json!(2);
    let v2 = t.chat_ok(&body);
    let (s, two) = t.get("/v1/edgevl/tiles?width=900&height=500&max_tiles=2");
    assert_eq!(s, 200);
    let two: Value = serde_json::from_str(&two).expect("JSON");
    assert_eq!(Some(image_tokens(&v2)), two["image_tokens"].as_u64());
    assert!(image_tokens(&v2) < image_tokens(&v_high) && image_tokens(&v2) > per_view);
    assert_error(
        t.post("/v1/chat/completions", &image_chat(&[(&uri, Some("huge"))], "x", 2)),
        400,
        None,
        "detail",
    );
    let (s, body) = t.get("/v1/edgevl/tiles?width=0&height=5");
    assert_eq!(s, 400, "{body}");
}

/// The `(step, done, total)` of a stream's `: progress` comments.
fn progress_of(lines: &[String]) -> Vec<(String, u64, u64)> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix(": progress "))
        .map(|p| {
            let v: Value = serde_json::from_str(p).unwrap_or_else(|e| panic!("{e}: {p}"));
            let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"));
            (v["step"].as_str().expect("step").to_string(), n("done"), n("total"))
        })
        .collect()
}

/// Uploads three other images (their encodings start at once, on the one encoder thread), so that the next
/// request's image waits behind them and its wait starts before its first ViT batch: its reports do not hang on
/// the scheduler letting the request's thread reach its wait within the tiny ViT's tens of milliseconds.
fn occupy_the_encoder(t: &TestServer, seed: u8) {
    for k in 0..3 {
        let (s, up) =
            t.post("/v1/images", &json!({"image": data_uri(&png(1400, 900, seed + k)), "detail": "high"}));
        assert_eq!(s, 200, "{up}");
    }
}

#[test]
fn a_request_waiting_for_its_images_is_counted() {
    // /metrics showed an idle server (no slot busy, none queued) for a request's whole image wait.
    let t = start(tiny_vlm());
    occupy_the_encoder(&t, 50);
    let mut body = image_chat(&[(&data_uri(&wide()), None)], "Describe the picture.", 3);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_progress": true});
    let mut s = t.raw_chat(&body);
    let head = common::read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // The first progress comment comes as the wait for the image begins, behind the other uploads.
    let mut reader = BufReader::new(s);
    let mut line = String::new();
    while !line.starts_with(": progress ") {
        line.clear();
        assert!(reader.read_line(&mut line).expect("read") > 0, "the stream ended before any progress");
    }
    let preparing = t.metric("edgevl_requests_preparing_images");
    assert_eq!((preparing, t.metric("edgevl_slots_busy"), t.metric("edgevl_queue_depth")), (1.0, 0.0, 0.0));
    while !line.contains("[DONE]") {
        line.clear();
        assert!(reader.read_line(&mut line).expect("read") > 0, "the stream ended before [DONE]");
    }
    t.wait_until(10, "slot idle", |t| t.metric("edgevl_slots_busy") == 0.0);
    assert_eq!(t.metric("edgevl_requests_preparing_images"), 0.0);
}

#[test]
fn a_stream_with_include_progress_tells_the_views_and_the_prefill_before_the_first_token() {
    let t = start(tiny_vlm());
    occupy_the_encoder(&t, 40);
    let uri = data_uri(&wide());
    let mut body = image_chat(&[(&uri, None)], "Describe the picture.", 3);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true, "include_progress": true});
    let lines = t.chat_stream_lines(&body);
    let usage: Value = lines
        .iter()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(d).expect("chunk"))
        .find(|v| !v["usage"].is_null())
        .expect("a usage chunk");
    let views = image_tokens(&json!({"usage": usage["usage"]})) / 196;
    let progress = progress_of(&lines);
    let image: Vec<(u64, u64)> = progress.iter().filter(|p| p.0 == "image").map(|p| (p.1, p.2)).collect();
    let prefill: Vec<(u64, u64)> = progress.iter().filter(|p| p.0 == "prefill").map(|p| (p.1, p.2)).collect();
    assert_eq!(image.len() + prefill.len(), progress.len(), "{progress:?}");
    // The image from the views encoded when the wait began to all of them, a ViT batch (4) at a time.
    assert!(image.iter().all(|&(d, n)| n == views && (d % 4 == 0 || d == views)), "{image:?}");
    assert!(image.windows(2).all(|w| w[0].0 < w[1].0) && image.last() == Some(&(views, views)), "{image:?}");
    // The prefill from 0 to every position computed (nothing cached in a fresh server), a chunk (64) at most a step.
    let prompt = usage["usage"]["prompt_tokens"].as_u64().expect("prompt_tokens");
    assert_eq!(
        (prefill.first(), prefill.last()),
        (Some(&(0, prompt)), Some(&(prompt, prompt))),
        "{prefill:?}"
    );
    assert!(prefill.windows(2).all(|w| w[0].0 < w[1].0 && w[1].0 - w[0].0 <= 64), "{prefill:?}");
    // All of it before the first token, the images' before the prefill's.
    let first_token = lines
        .iter()
        .position(|l| l.contains("\"content\":\"") && !l.contains("\"content\":\"\""))
        .expect("a token");
    let last_progress = lines.iter().rposition(|l| l.starts_with(": progress ")).expect("progress");
    assert!(last_progress < first_token, "{lines:?}");
    assert!(progress.iter().position(|p| p.0 == "prefill") > progress.iter().rposition(|p| p.0 == "image"));

    // Not asked for: no comments. The same image again: only the prefill is told.
    body["stream_options"] = json!({"include_usage": true});
    assert!(progress_of(&t.chat_stream_lines(&body)).is_empty());
    body["stream_options"] = json!({"include_progress": true});
    body["messages"][0]["content"][1]["text"] = json!("What is it?");
    let again = progress_of(&t.chat_stream_lines(&body));
    assert!(!again.is_empty() && again.iter().all(|p| p.0 == "prefill"), "{again:?}");
}

#[test]
fn a_prompt_past_the_context_is_a_400_or_with_progress_an_error_event() {
    let mut cfg = tiny_vlm();
    cfg.session.n_ctx = Some(512);
    let t = start(cfg);
    // Images whose tokens alone pass the context: a 400 before any is encoded, with or without
    // progress.
    let uri = data_uri(&wide());
    let mut body = image_chat(&[(&uri, None)], "Describe the picture.", 3);
    body["stream"] = json!(true);
    for progress in [false, true] {
        body["stream_options"] = json!({"include_progress": progress});
        let (status, v) = t.post("/v1/chat/completions", &body);
        assert_error((status, v), 400, Some("context_length_exceeded"), "the request's images take");
    }
    assert_eq!(t.metric("edgevl_vit_tiles_encoded_total"), 0.0, "an image was encoded for nothing");
    // Images that fit and a text that does not: measured once the images are encoded, so with
    // progress the stream has begun (the image's views told) and the error is an event.
    let other = data_uri(&png(900, 500, 9));
    let long = "Describe the picture. ".repeat(200);
    body = image_chat(&[(&other, Some("low"))], &long, 3);
    body["stream"] = json!(true);
    let (status, v) = t.post("/v1/chat/completions", &body);
    assert_error((status, v), 400, Some("context_length_exceeded"), "context");
    let other = data_uri(&png(900, 500, 10));
    occupy_the_encoder(&t, 50);
    body = image_chat(&[(&other, Some("low"))], &long, 3);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_progress": true});
    let lines = t.chat_stream_lines(&body);
    assert!(progress_of(&lines).iter().any(|p| p.0 == "image"), "{lines:?}");
    let error = lines.iter().find(|l| l.contains("\"error\"")).expect("an error event");
    assert!(error.contains("context_length_exceeded"), "{error}");
    assert_eq!(lines.last().map(String::as_str), Some("data: [DONE]"));
}

#[test]
fn a_repeated_image_is_not_encoded_again_and_comes_from_the_kv_cache() {
    let t = start(tiny_vlm());
    let uri = data_uri(&wide());
    let body = image_chat(&[(&uri, None)], "Describe the picture.", 3);
    let first = t.chat_ok(&body);
    let tiles = t.metric("edgevl_vit_tiles_encoded_total");
    let views = image_tokens(&first) / 196;
    assert_eq!(tiles, views as f64, "the first request encodes each view once");
    assert_eq!(first["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    let hits = t.metric("edgevl_image_cache_hits_total");

    // A follow-up question about the same image: nothing is encoded, the image's positions
    // are reused from the slot's KV cache.
    let mut follow = image_chat(&[(&uri, None)], "Describe the picture.", 3);
    let reply = first["choices"][0]["message"]["content"].clone();
    follow["messages"].as_array_mut().expect("messages").extend([
        json!({"role": "assistant", "content": reply}),
        json!({"role": "user", "content": "And the colours?"}),
    ]);
    let second = t.chat_ok(&follow);
    assert_eq!(t.metric("edgevl_vit_tiles_encoded_total"), tiles, "the image was encoded again");
    assert_eq!(t.metric("edgevl_image_cache_hits_total"), hits + 1.0);
    let cached = second["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().expect("cached");
    assert!(cached > image_tokens(&second), "cached {cached} does not cover the image: {second}");
    assert_eq!(image_tokens(&second), image_tokens(&first));

    // A different image is encoded.
    let other = data_uri(&png(900, 500, 8));
    t.chat_ok(&image_chat(&[(&other, None)], "And this one?", 2));
    assert_eq!(t.metric("edgevl_vit_tiles_encoded_total"), 2.0 * tiles);
}

#[test]
fn an_uploaded_image_is_encoded_once_and_found_by_its_id() {
    let t = start(tiny_vlm());
    let bytes = png(640, 480, 3);
    let (s, up) = t.post("/v1/images", &json!({"image": data_uri(&bytes), "detail": "high"}));
    assert_eq!(s, 200, "{up}");
    let id = up["id"].as_str().expect("id").to_string();
    let views = up["views"].as_u64().expect("views");
    assert_eq!(up["image_tokens"].as_u64(), Some(views * 196));
    assert_eq!(up["url"].as_str(), Some(format!("edgevl-image://{id}").as_str()));
    // Encoding started at upload, before any question.
    t.wait_until(60, "the upload to be encoded", |t| {
        t.metric("edgevl_vit_tiles_encoded_total") == views as f64
    });

    let by_id = format!("edgevl-image://{id}");
    let v = t.chat_ok(&image_chat(&[(&by_id, None)], "What is in the picture?", 2));
    assert_eq!(image_tokens(&v), views * 196);
    // The same pixels sent inline (raw base64 this time) are the same image too.
    let raw = data_uri(&bytes).split_once(',').expect("comma").1.to_string();
    t.chat_ok(&image_chat(&[(&raw, None)], "Again?", 2));
    assert_eq!(
        t.metric("edgevl_vit_tiles_encoded_total"),
        views as f64,
        "an uploaded image was encoded again"
    );
    assert!(t.metric("edgevl_image_cache_hits_total") >= 2.0);

    assert_error(
        t.post("/v1/chat/completions", &image_chat(&[("edgevl-image://img-nope", None)], "x", 2)),
        400,
        Some("unknown_image_id"),
        "messages[0].content[0]",
    );
    assert_error(t.post("/v1/images", &json!({"image": by_id})), 400, None, "upload the image itself");
    assert_error(t.post("/v1/images", &json!({"image": "%%%"})), 400, Some("invalid_base64"), "image");
}

#[test]
fn an_upload_the_image_cache_cannot_hold_is_refused_before_it_is_encoded() {
    // With the cache off its id was answered, the image encoded, and every chat asking for the id
    // refused ("upload it again", which could never work).
    let mut cfg = tiny_vlm();
    cfg.session.image.cache_mb = 0;
    let t = start(cfg);
    let uri = data_uri(&png(640, 480, 3));
    let (s, v) = t.post("/v1/images", &json!({"image": uri}));
    assert_error((s, v.clone()), 400, Some("image_cache_too_small"), "--image-cache-mb");
    assert_eq!(v["error"]["param"], "image", "{v}");
    assert_eq!(t.metric("edgevl_vit_tiles_encoded_total"), 0.0);
    // The same image sent in the chat request itself is answered.
    let v = t.chat_ok(&image_chat(&[(&uri, None)], "What is it?", 2));
    assert!(image_tokens(&v) > 0, "{v}");
}

#[test]
fn hostile_images_are_refused_naming_the_part() {
    let t = start(tiny_vlm());
    let ok = data_uri(&png(32, 32, 1));
    let chat = |urls: &[&str]| {
        let imgs: Vec<(&str, Option<&str>)> = urls.iter().map(|u| (*u, None)).collect();
        t.post("/v1/chat/completions", &image_chat(&imgs, "What?", 2))
    };
    assert_error(
        chat(&[&ok, "data:image/png;base64,@@@not-base64@@@"]),
        400,
        Some("invalid_base64"),
        "messages[0].content[1]",
    );
    let not_image = data_uri(b"this is not an image at all");
    assert_error(chat(&[&not_image]), 400, Some("invalid_image"), "messages[0].content[0]");
    let mut truncated = png(64, 64, 2);
    truncated.truncate(truncated.len() / 2);
    assert_error(chat(&[&data_uri(&truncated)]), 400, Some("invalid_image"), "messages[0].content[0]");
    assert_error(chat(&["https://example.com/cat.png"]), 400, Some("invalid_image_url"), "data: URIs");
    assert_error(chat(&["file:///etc/passwd"]), 400, Some("invalid_image_url"), "messages[0].content[0]");
    // Longer than 16384 px a side (the file itself is small).
    let tall = data_uri(&png(1, 16385, 4));
    assert_error(chat(&[&tall]), 400, Some("invalid_image"), "16384");
    // Nine images: one too many (refused before any is decoded).
    let nine = [ok.as_str(); 9];
    assert_error(chat(&nine), 400, Some("too_many_images"), "8 images");
    // OpenAI's `param` names the part at fault (it was always null).
    let bad_base64 = "data:image/png;base64,@@@";
    for (urls, param) in [
        (vec![ok.as_str(), bad_base64], "messages[0].content[1]"),
        (vec!["https://example.com/cat.png"], "messages[0].content[0]"),
        (vec![ok.as_str(), not_image.as_str()], "messages[0].content[1]"),
        (vec![tall.as_str()], "messages[0].content[0]"),
        (nine.to_vec(), "messages[0].content[8]"),
        (vec!["edgevl-image://img-nope"], "messages[0].content[0]"),
    ] {
        let (s, v) = chat(&urls);
        assert_eq!((s, &v["error"]["param"]), (400, &json!(param)), "{v}");
    }
    let (s, v) = t.post("/v1/images", &json!({"image": "%%%"}));
    assert_eq!((s, &v["error"]["param"]), (400, &json!("image")), "{v}");
    // Text carrying the image marker would misplace images.
    let marker = json!({"messages": [{"role": "user", "content": "look <__media__>"}], "max_tokens": 2});
    assert_error(t.post("/v1/chat/completions", &marker), 400, None, "marker");
    // Nothing above was encoded; a good request still works.
    assert_eq!(t.metric("edgevl_vit_tiles_encoded_total"), 0.0);
    let eight = [ok.as_str(); 8];
    let v = t.chat_ok(&image_chat(&eight.iter().map(|u| (*u, Some("low"))).collect::<Vec<_>>(), "All?", 2));
    assert_eq!(image_tokens(&v), 8 * 196);
    assert_eq!(t.metric("edgevl_vit_tiles_encoded_total"), 1.0, "eight copies of one image are encoded once");
}

#[test]
fn a_client_that_leaves_during_encoding_stops_its_images_not_yet_begun() {
    // Every image of an abandoned request was encoded, holding the image gate, and the request was
    // not counted as cancelled.
    let mut cfg = tiny_vlm();
    cfg.session.n_ctx = Some(16384);
    let t = start(cfg);
    let (s, plan) = t.get("/v1/edgevl/tiles?width=1400&height=900&detail=high");
    assert_eq!(s, 200, "{plan}");
    let views_each = serde_json::from_str::<Value>(&plan).unwrap()["views"].as_u64().expect("views");
    let uris: Vec<String> = (0..4).map(|k| data_uri(&png(1400, 900, 60 + k))).collect();
    let parts: Vec<(&str, Option<&str>)> = uris.iter().map(|u| (u.as_str(), Some("high"))).collect();
    let mut body = image_chat(&parts, "Describe them.", 3);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_progress": true});
    let mut s = t.raw_chat(&body);
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains(": progress ") {
        let n = std::io::Read::read(&mut s, &mut buf).expect("read");
        assert!(n > 0, "{}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    drop(s);
    // A one-view request after it waits for the image gate, which the abandoned request holds until it stops.
    let small = data_uri(&png(64, 64, 9));
    let (s, v) = t.post("/v1/chat/completions", &image_chat(&[(&small, Some("low"))], "Hi", 1));
    assert_eq!(s, 200, "{v}");
    let encoded = t.metric("edgevl_vit_tiles_encoded_total") as u64;
    assert!(
        encoded < 1 + 4 * views_each,
        "{encoded} views encoded: all {} of the abandoned request's",
        4 * views_each
    );
    assert!(t.metric("edgevl_requests_cancelled_total") >= 1.0);
}
