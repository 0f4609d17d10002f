//! The server on SmolLM2-135M-Instruct: greedy replies equal the library's (`edgevl run`'s
//! path), JSON and SSE agree, a repeated conversation is re-prefilled from the KV cache, and
//! every limit answers with OpenAI's error shape: oversized body, bad JSON, bad UTF-8,
//! unsupported options, an image without an mmproj, a prompt past the context, a full queue
//! (503 + Retry-After), a client that leaves mid-stream (its slot is freed), a missing API key.

mod common;

use common::{assert_error, read_head, smollm2, start};
use edgevl_runtime::{Sampler, SamplerConfig, Session};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::time::Duration;

const PROMPT: &str = "Name three primary colours and say why they are called primary.";

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

#[test]
fn greedy_reply_equals_the_library_and_streaming_agrees() {
    let cfg = smollm2();
    let n = 40;
    // The library path of `edgevl run -p PROMPT --temp 0 -n 40`: one user message, greedy.
    let mut session = Session::load(&cfg.model, &cfg.session).expect("load");
    let mut greedy = Sampler::new(SamplerConfig { temp: 0.0, ..SamplerConfig::default() });
    let mut want = String::new();
    let stats = session.ask(PROMPT, n, &mut greedy, |p| {
        want.push_str(p);
        true
    });
    let stats = stats.expect("library turn");
    drop(session);
    assert!(!want.is_empty());

    let t = start(cfg);
    let v = t.chat_ok(&json!({"model": "x", "messages": user(PROMPT), "temperature": 0, "max_tokens": n}));
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"].as_str(), Some(want.as_str()));
    let u = &v["usage"];
    assert_eq!(u["prompt_tokens"], stats.prompt_tokens);
    assert_eq!(u["completion_tokens"], stats.generated_tokens);
    assert_eq!(u["total_tokens"], stats.prompt_tokens + stats.generated_tokens);
    assert_eq!(u["prompt_tokens_details"]["cached_tokens"], 0);
    assert_eq!(u["prompt_tokens_details"]["image_tokens"], 0);
    let reason = if stats.generated_tokens == n { "length" } else { "stop" };
    assert_eq!(v["choices"][0]["finish_reason"], reason);

    // The same conversation streamed: the slot's cache holds it, so only the last prompt
    // position is recomputed; the deltas add up to the same text.
    let body = json!({"messages": user(PROMPT), "temperature": 0, "max_tokens": n, "stream": true,
                      "stream_options": {"include_usage": true}});
    let events = t.chat_stream(&body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> =
        events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).expect("JSON")).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, want);
    let usage = chunks.last().expect("usage chunk");
    assert_eq!(usage["choices"].as_array().map(Vec::len), Some(0));
    assert_eq!(usage["usage"]["prompt_tokens"], stats.prompt_tokens);
    assert_eq!(usage["usage"]["prompt_tokens_details"]["cached_tokens"], stats.prompt_tokens - 1);
    let finish = &chunks[chunks.len() - 2]["choices"][0]["finish_reason"];
    assert_eq!(finish, reason);
    assert!(chunks.iter().all(|c| c["id"] == chunks[0]["id"]));

    // Without include_usage no chunk carries usage; a stop string cuts the reply before it.
    let events =
        t.chat_stream(&json!({"messages": user(PROMPT), "temperature": 0, "max_tokens": 8, "stream": true}));
    assert!(events.iter().all(|e| !e.contains("\"usage\"")));
    let stop_at = want.split_whitespace().nth(2).expect("three words");
    let v =
        t.chat_ok(&json!({"messages": user(PROMPT), "temperature": 0, "max_tokens": n, "stop": [stop_at]}));
    let cut = v["choices"][0]["message"]["content"].as_str().expect("content");
    assert_eq!(cut, &want[..want.find(stop_at).expect("stop in text")]);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
}

/// The tokens of `text` as the only user message of SmolLM2's chat template, with the
/// assistant's turn opened, as the server renders a request.
fn long_prompt_tokens(text: &str) -> usize {
    let cfg = smollm2();
    let mut session = Session::load(&cfg.model, &cfg.session).expect("load");
    session.add_text("user", text);
    session.conversation_tokens().expect("render").len()
}

#[test]
fn sampled_replies_differ_without_a_seed_and_repeat_with_one() {
    let t = start(smollm2());
    let reply = |extra: Value| {
        let mut body = json!({"messages": user(PROMPT), "max_tokens": 16, "temperature": 1.5, "top_k": 0,
                              "top_p": 1.0, "min_p": 0.0});
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        t.chat_ok(&body)["choices"][0]["message"]["content"].as_str().expect("content").to_string()
    };
    // Each way of asking for no seed on its own (a set mixing them would hide a fixed default).
    for extra in [json!({}), json!({"seed": -1}), json!({"seed": null})] {
        let unseeded: std::collections::HashSet<String> = (0..3).map(|_| reply(extra.clone())).collect();
        assert!(unseeded.len() > 1, "{extra}: {unseeded:?}");
    }
    assert_eq!(reply(json!({"seed": 7})), reply(json!({"seed": 7})));
    // The penalties are applied: a presence penalty of 2 changes the greedy reply.
    let greedy = |extra: Value| {
        reply(
            json!({"temperature": 0})
                .as_object()
                .map(|o| {
                    let mut o = o.clone();
                    o.extend(extra.as_object().expect("object").clone());
                    Value::Object(o)
                })
                .expect("object"),
        )
    };
    assert_ne!(greedy(json!({})), greedy(json!({"presence_penalty": 2})));
    assert_ne!(greedy(json!({})), greedy(json!({"frequency_penalty": 2})));
}

#[test]
fn bad_requests_get_openai_errors_and_the_server_stays_up() {
    let t = start(smollm2());
    let post = |body: &[u8]| {
        let (s, _, text) = t.post_bytes("/v1/chat/completions", body);
        (s, serde_json::from_str::<Value>(&text).unwrap_or_else(|e| panic!("{e}: {text}")))
    };
    assert_error(post(b"{\"messages\": [ {\"role\": "), 400, Some("invalid_json"), "not valid JSON");
    assert_error(
        post(b"{\"messages\": [{\"role\": \"user\", \"content\": \"\xff\xfe\"}]}"),
        400,
        Some("invalid_utf8"),
        "UTF-8",
    );
    assert_error(post(b"{\"messages\": 3}"), 400, Some("invalid_json"), "messages");
    let chat = |extra: Value| {
        let mut body = json!({"messages": user("Hi"), "max_tokens": 4});
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        t.post("/v1/chat/completions", &body)
    };
    assert_error(chat(json!({"n": 2})), 400, Some("unsupported_parameter"), "n > 1");
    assert_error(chat(json!({"n": 0})), 400, None, "n must be 1");
    // An input echoed in an error is clipped (a 1 MB id gave a 1 MB error).
    let (s, v) = chat(json!({"messages": [{"role": "r".repeat(100_000), "content": "x"}]}));
    assert!(v.to_string().len() < 1000, "{} bytes of error", v.to_string().len());
    assert_error((s, v), 400, None, "rrr...\" is not supported");
    assert_error(chat(json!({"tools": [{"type": "function"}]})), 400, Some("unsupported_parameter"), "tools");
    assert_error(chat(json!({"logprobs": true})), 400, Some("unsupported_parameter"), "logprobs");
    assert_error(chat(json!({"temperature": -1})), 400, None, "temperature");
    assert_error(chat(json!({"messages": []})), 400, None, "messages");
    assert_error(
        chat(json!({"messages": [{"role": "tool", "content": "x"}]})),
        400,
        None,
        "messages[0].role",
    );
    assert_error(chat(json!({"logit_bias": {"999999": 1}})), 400, None, "logit_bias");
    // OpenAI's range: a bias past -100 to 100 is a 400 (it was taken as is).
    assert_error(chat(json!({"logit_bias": {"42": 100.5}})), 400, None, "between -100 and 100");
    assert_error(chat(json!({"logit_bias": {"42": -1000}})), 400, None, "between -100 and 100");
    // Every token banned: a 400 (the sampler took banned token 0, an end of generation, and replied nothing).
    let n_vocab = t.get("/v1/models").1;
    let n_vocab: Value = serde_json::from_str(&n_vocab).unwrap();
    let n_vocab = n_vocab["data"][0]["meta"]["n_vocab"].as_u64().unwrap();
    let all: serde_json::Map<String, Value> = (0..n_vocab).map(|id| (id.to_string(), json!(-100))).collect();
    assert_error(chat(json!({"logit_bias": all})), 400, None, "bans every token");
    // Every token but the end of generation (id 0): a reply (it ends at once); with ignore_eos, which bans the
    // ends of generation, every token is banned again.
    let all_but_eos: serde_json::Map<String, Value> =
        (1..n_vocab).map(|id| (id.to_string(), json!(-100))).collect();
    let (s, v) = chat(json!({"logit_bias": all_but_eos.clone(), "max_tokens": 4}));
    assert_eq!(s, 200, "{v}");
    assert_error(
        chat(json!({"logit_bias": all_but_eos, "ignore_eos": true})),
        400,
        None,
        "logit_bias with ignore_eos bans every token",
    );
    // An image to a server without an mmproj (llama-server dies on this).
    let png = common::data_uri(&common::png(8, 8, 1));
    let img = common::image_chat(&[(&png, None)], "What is it?", 4);
    assert_error(t.post("/v1/chat/completions", &img), 400, Some("images_not_supported"), "--mmproj");
    assert_error(t.post("/v1/images", &json!({"image": png})), 400, Some("images_not_supported"), "--mmproj");
    // A prompt past the 1024-token context: 400 with its whole count, whatever an earlier
    // request left in the slot's cache (counted from that, a prompt sharing its prefix was
    // said to need fewer tokens than it has).
    let long = "The quick brown fox jumps over the lazy dog. ".repeat(200);
    let (s, v) = chat(json!({"messages": user(&long)}));
    assert_error((s, v.clone()), 400, Some("context_length_exceeded"), "1024-token context");
    assert!(!v["error"]["message"].as_str().unwrap_or("").contains("/reset"), "a terminal's advice: {v}");
    let want = format!(
        "the prompt is {} tokens, more than the server's 1024-token context",
        long_prompt_tokens(&long)
    );
    assert!(v["error"]["message"].as_str().is_some_and(|m| m.starts_with(&want)), "{want}\n{v}");
    t.chat_ok(&json!({"messages": user(&long[..long.len() / 4]), "max_tokens": 1}));
    let (_, again) = chat(json!({"messages": user(&long)}));
    assert_eq!(again["error"]["message"], v["error"]["message"], "after a request sharing its prefix");
    // What OpenAI clients send: null for stream and ignore_eos, seed -1 or a large one; a text
    // response_format is the default, JSON mode is refused; penalties are -2 to 2.
    for extra in [
        json!({"stream": null, "ignore_eos": null}),
        json!({"seed": -1}),
        json!({"seed": u64::MAX}),
        json!({"response_format": {"type": "text"}}),
        json!({"frequency_penalty": -2, "presence_penalty": 2}),
    ] {
        let (s, v) = chat(extra.clone());
        assert_eq!(s, 200, "{extra}: {v}");
    }
    // A part that is not taken, or malformed, is named with what is wrong with it (it was "data did not
    // match any variant of untagged enum Content" for all of these).
    let part = |content: Value| chat(json!({"messages": [{"role": "user", "content": content}]}));
    let audio = json!([{"type": "text", "text": "Hi"}, {"type": "input_audio", "input_audio": {}}]);
    for (content, want) in [
        (audio, "at messages[0].content[1].type: unknown variant `input_audio`, expected one of `text`, `image_url`, `refusal`"),
        (json!([{"type": "image_url", "image_url": {"detail": "low"}}]), "missing field `url`"),
        (json!([{"type": "text"}]), "at messages[0].content[0]: missing field `text`"),
        (json!(5), "at messages[0].content: invalid type: integer `5`, expected a string or a list of content parts"),
    ] {
        let (s, v) = part(content);
        assert_error((s, v), 400, Some("invalid_json"), want);
    }
    // An assistant's refusal part (as OpenAI returns one) is its text.
    let refusal = json!([{"role": "user", "content": "Hi"},
                         {"role": "assistant", "content": [{"type": "refusal", "refusal": "I cannot."}]},
                         {"role": "user", "content": "Why?"}]);
    assert_eq!(chat(json!({"messages": refusal})).0, 200);
    let json_mode = chat(json!({"response_format": {"type": "json_object"}}));
    assert_error(json_mode, 400, Some("unsupported_parameter"), "response_format \"json_object\"");
    assert_error(chat(json!({"presence_penalty": 2.5})), 400, None, "presence_penalty");
    assert_error(chat(json!({"seed": -5})), 400, None, "seed must be -1 (random) or 0 to");
    // A fraction or a number past 64 bits: an error naming the field (was "not valid JSON ... expected `,`").
    assert_error(chat(json!({"seed": 7.5})), 400, None, "seed must be an integer");
    assert_error(chat(json!({"seed": 1e30})), 400, None, "seed must be an integer");
    // max_completion_tokens (OpenAI's current name) is taken over max_tokens, as llama-server takes it.
    let both =
        json!({"messages": user(PROMPT), "max_tokens": 5, "max_completion_tokens": 2, "ignore_eos": true});
    assert_eq!(t.chat_ok(&both)["usage"]["completion_tokens"], 2);
    assert_error(
        chat(json!({"max_tokens": 5, "max_completion_tokens": 0})),
        400,
        None,
        "max_completion_tokens must be at least 1",
    );
    assert_error(chat(json!({"frequency_penalty": -3})), 400, None, "frequency_penalty");
    assert_error(t.post("/v1/nothing", &json!({})), 404, Some("not_found"), "/v1/nothing");
    // A known path with a method it does not take: 405 in the same JSON shape (was an empty body).
    let (s, body) = t.get("/v1/chat/completions");
    assert_eq!(s, 405, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["error"]["code"], "method_not_allowed", "{v}");
    // Every token is matched against every stop string: their length is capped.
    assert_error(chat(json!({"stop": "x".repeat(1025)})), 400, None, "at most 1024 characters");
    // OpenAI's `param` names the field at fault (it was always null), and is null when no one field is.
    for (extra, param) in [
        (json!({"n": 2}), json!("n")),
        (json!({"functions": [{"name": "f"}]}), json!("functions")),
        (json!({"logprobs": true}), json!("logprobs")),
        (json!({"response_format": {"type": "json_object"}}), json!("response_format")),
        (json!({"messages": []}), json!("messages")),
        (json!({"messages": [{"role": "tool", "content": "x"}]}), json!("messages[0].role")),
        (json!({"temperature": 3}), json!("temperature")),
        (json!({"max_tokens": 5, "max_completion_tokens": 0}), json!("max_completion_tokens")),
        (json!({"stop": ["a", "b", "c", "d", "e"]}), json!("stop")),
        (json!({"logit_bias": {"42": 101}}), json!("logit_bias")),
        (json!({"seed": 7.5}), json!("seed")),
        (json!({"seed": -5}), json!("seed")),
        (json!({"presence_penalty": 2.5}), json!("presence_penalty")),
        (json!({"messages": [{"role": "user", "content": 5}]}), json!("messages[0].content")),
        (json!({"messages": user(&"The quick brown fox. ".repeat(400))}), Value::Null),
    ] {
        let (s, v) = chat(extra.clone());
        assert_eq!(s, 400, "{extra}: {v}");
        assert_eq!(v["error"]["param"], param, "{extra}: {v}");
    }
    let (s, v) = post(b"{\"messages\": [ {\"role\": ");
    assert_eq!((s, &v["error"]["param"]), (400, &Value::Null), "{v}");

    // A body over 32 MiB is refused before it is read: 413 after a few bytes of it.
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        (32 << 20) + 1
    );
    let mut s = t.raw(&head, &[b' '; 65536]);
    let resp_head = read_head(&mut s);
    assert!(resp_head.starts_with("HTTP/1.1 413"), "{resp_head}");
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    let body = String::from_utf8_lossy(&rest);
    assert!(body.contains("request_too_large"), "{body}");

    // Still serving, and every answer above was counted by status.
    let v = t.chat_ok(&json!({"messages": user("Hi"), "max_tokens": 4}));
    assert!(v["usage"]["completion_tokens"].as_u64().is_some_and(|n| (1..=4).contains(&n)), "{v}");
    let (_, metrics) = t.get("/metrics");
    for code in ["400", "404", "405", "413", "200"] {
        assert!(metrics.contains(&format!("code=\"{code}\"")), "no {code} in\n{metrics}");
    }
    // The soak's leak check reads the allocator's bytes in use (glibc only): SmolLM2's tokenizer alone holds more
    // than a megabyte of heap.
    if cfg!(all(target_os = "linux", target_env = "gnu")) {
        let heap = common::metric_in(&metrics, "edgevl_heap_in_use_bytes").expect("edgevl_heap_in_use_bytes");
        assert!(heap > 1e6, "heap in use {heap}");
    }
    let (s, models) = t.get("/v1/models");
    assert_eq!(s, 200);
    assert!(models.contains("SmolLM2-135M-Instruct"), "{models}");
    // OpenAI's retrieve: the listed model by its id, any other id a 404 naming it.
    let listed: serde_json::Value = serde_json::from_str(&models).unwrap();
    let id = listed["data"][0]["id"].as_str().unwrap();
    let (s, one) = t.get(&format!("/v1/models/{id}"));
    assert_eq!(s, 200, "{one}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&one).unwrap(), listed["data"][0]);
    let (s, missing) = t.get("/v1/models/gpt-4o");
    assert_eq!(s, 404, "{missing}");
    assert!(missing.contains("model_not_found") && missing.contains("gpt-4o"), "{missing}");
    let (s, page) = t.get("/");
    assert_eq!(s, 200);
    assert!(
        page.contains("/v1/edgevl/tiles") && page.contains("/v1/chat/completions"),
        "the page calls the API"
    );
}

#[test]
fn a_slot_prefilling_counts_as_busy() {
    // It was counted busy only once its first token was sampled: a long prefill showed an idle server.
    let t = start(smollm2());
    let body = json!({"messages": user(&"word ".repeat(900)), "max_tokens": 1, "stream": true,
                      "stream_options": {"include_progress": true}});
    let mut s = t.raw_chat(&body);
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut reader = std::io::BufReader::new(s);
    let mut line = String::new();
    while !(line.starts_with(": progress ") && line.contains("\"prefill\"")) {
        line.clear();
        assert!(
            std::io::BufRead::read_line(&mut reader, &mut line).expect("read") > 0,
            "no prefill progress"
        );
    }
    // The first of 8 chunks (128 positions each): most of the prefill is left.
    assert_eq!((t.metric("edgevl_slots_busy"), t.metric("edgevl_queue_depth")), (1.0, 0.0));
    while !line.contains("[DONE]") {
        line.clear();
        assert!(std::io::BufRead::read_line(&mut reader, &mut line).expect("read") > 0, "no [DONE]");
    }
    t.wait_until(10, "slot idle", |t| t.metric("edgevl_slots_busy") == 0.0);
}

#[test]
fn a_full_queue_answers_503_and_a_client_that_leaves_frees_its_slot() {
    let mut cfg = smollm2();
    cfg.parallel = 1;
    cfg.queue = 1;
    let t = start(cfg);
    // A: a long streamed reply (no end-of-generation token allowed) on the only slot.
    let body = json!({"messages": user("Write a very long story."), "max_tokens": 100000, "ignore_eos": true,
                      "stream": true, "temperature": 0.8});
    let mut a = t.raw_chat(&body);
    let a_head = read_head(&mut a);
    assert!(a_head.starts_with("HTTP/1.1 200"), "{a_head}");
    let mut first = [0u8; 64];
    assert!(a.read(&mut first).expect("first chunk") > 0);
    assert_eq!(t.metric("edgevl_slots_busy"), 1.0);

    // B waits in the queue; C finds no place: 503 with Retry-After, in OpenAI's shape.
    let b = t.chat_in_thread(json!({"messages": user("Say hi."), "max_tokens": 4}));
    t.wait_until(30, "B queued", |t| t.metric("edgevl_queue_depth") == 1.0);
    let (status, retry, text) =
        t.post_bytes("/v1/chat/completions", json!({"messages": user("C")}).to_string().as_bytes());
    assert_eq!(status, 503, "{text}");
    assert_eq!(retry.as_deref(), Some("1"));
    assert_error((status, serde_json::from_str(&text).expect("JSON")), 503, Some("server_busy"), "busy");
    assert!(!b.is_finished(), "B must wait while A holds the slot");

    // A leaves mid-stream: its generation is cancelled and B gets the slot.
    let generated_before = t.metric("edgevl_generated_tokens_total");
    let _ = a.shutdown(std::net::Shutdown::Both);
    drop(a);
    let (b_status, b_body) = b.join().expect("B thread");
    assert_eq!(b_status, 200, "{b_body}");
    assert_eq!(t.metric("edgevl_requests_cancelled_total"), 1.0);
    t.wait_until(10, "slot idle", |t| t.metric("edgevl_slots_busy") == 0.0);
    // A stopped far short of the context (1024 positions): it was cut, not finished.
    let generated = t.metric("edgevl_generated_tokens_total") - generated_before;
    assert!(generated < 900.0, "A generated {generated} tokens after leaving");
    let mut c = t.raw("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b"");
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let _ = c.flush();
}

#[test]
fn a_client_that_leaves_the_queue_gives_back_its_place() {
    let mut cfg = smollm2();
    cfg.parallel = 1;
    cfg.queue = 1;
    let t = start(cfg);
    // A holds the only slot; B waits in the queue, then leaves.
    let long = json!({"messages": user("Write a very long story."), "max_tokens": 100000, "ignore_eos": true,
                      "stream": true});
    let mut a = t.raw_chat(&long);
    assert!(read_head(&mut a).starts_with("HTTP/1.1 200"));
    let b = t.raw_chat(&json!({"messages": user("Say hi."), "max_tokens": 4}));
    t.wait_until(30, "B queued", |t| t.metric("edgevl_queue_depth") == 1.0);
    let _ = b.shutdown(std::net::Shutdown::Both);
    drop(b);
    // B's job is dropped from the queue while A still holds the slot (abandoned jobs piled up
    // there once their places were given back).
    t.wait_until(30, "B's job dropped", |t| {
        t.metric("edgevl_queue_depth") == 0.0 && t.metric("edgevl_requests_cancelled_total") == 1.0
    });
    assert_eq!(t.metric("edgevl_slots_busy"), 1.0, "B's job was dropped only once A's reply had ended");
    // D is admitted (B's job, abandoned in the queue, kept it out with a 503) and answered once A leaves.
    let d = t.chat_in_thread(json!({"messages": user("Say hi."), "max_tokens": 4}));
    t.wait_until(30, "D queued", |t| t.metric("edgevl_queue_depth") == 1.0);
    let _ = a.shutdown(std::net::Shutdown::Both);
    drop(a);
    let (d_status, d_body) = d.join().expect("D thread");
    assert_eq!(d_status, 200, "{d_body}");
    assert_eq!(t.metric("edgevl_requests_cancelled_total"), 2.0, "A and B");
}

#[test]
fn an_empty_api_key_is_refused_at_start() {
    for key in ["", "  "] {
        let mut cfg = smollm2();
        cfg.api_key = Some(key.into());
        let err = edgevl_server::Server::start(cfg).err().expect("an empty key is refused");
        assert!(err.to_string().contains("API key is empty"), "{err}");
    }
}

#[test]
fn an_api_key_guards_every_endpoint_but_health_and_the_page() {
    let mut cfg = smollm2();
    cfg.api_key = Some("s3cret".into());
    let mut t = start(cfg);
    assert_eq!(t.get("/v1/models").0, 200);
    t.key = Some("wrong".into());
    assert_error(
        t.post("/v1/chat/completions", &json!({"messages": user("Hi")})),
        401,
        Some("invalid_api_key"),
        "Bearer",
    );
    t.key = None;
    for path in ["/v1/models", "/metrics", "/v1/edgevl/tiles?width=10&height=10"] {
        let (s, body) = t.get(path);
        assert_eq!(s, 401, "{path}: {body}");
        assert!(body.contains("invalid_api_key"), "{body}");
    }
    assert_error(
        t.post("/v1/chat/completions", &json!({"messages": user("Hi")})),
        401,
        Some("invalid_api_key"),
        "Bearer",
    );
    assert_eq!(t.get("/health").0, 200);
    assert_eq!(t.get("/").0, 200);
    // The scheme's name in any case (RFC 7235; `bearer` was refused).
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let mut s = t.raw(
            &format!("GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: {scheme} s3cret\r\n\r\n"),
            b"",
        );
        let head = read_head(&mut s);
        assert!(head.starts_with("HTTP/1.1 200"), "{scheme}: {head}");
    }
    // The key is checked before the body is read: a client without one gets its 401 at once,
    // whatever body it announces (it cannot fill the server's room for bodies).
    let mut s = t.raw(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: 30000000\r\n\r\n",
        b"{",
    );
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
}

/// A client that never finishes its request does not keep the server from stopping: after the
/// drain timeout the engine is told to stop, and `shutdown` returns.
#[test]
fn shutdown_ends_despite_a_half_sent_request() {
    let mut cfg = common::tiny_vlm();
    cfg.drain_timeout = Duration::from_secs(1);
    let mut t = common::start(cfg);
    let _half = t.raw("POST /v1/chat/completions HTTP/1.1\r\nHost: edgevl\r\nContent-Len", b"");
    std::thread::sleep(Duration::from_millis(200));
    let server = t.server.take().expect("running");
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(server.shutdown());
    });
    let result = done_rx.recv_timeout(Duration::from_secs(30)).expect("shutdown returned within 30 s");
    assert!(result.is_ok(), "{result:?}");
}

/// Replies still running when the drain timeout passes end properly: a stream with an error event
/// and `data: [DONE]` (it was closed without them, so a client could not tell a cut reply from a
/// network failure), a non-streamed request with a 503.
#[test]
fn replies_cut_at_shutdown_end_with_an_error_and_done() {
    let mut cfg = common::smollm2();
    cfg.drain_timeout = Duration::from_secs(1);
    cfg.parallel = 2;
    let mut t = common::start(cfg);
    let long = |stream: bool| {
        json!({"messages": user("Count to ten thousand."), "max_tokens": 1500, "ignore_eos": true,
               "temperature": 0, "stream": stream})
    };
    let mut streamed = t.raw_chat(&long(true));
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\"content\":\"") {
        let n = streamed.read(&mut buf).expect("read the stream");
        assert!(n > 0, "the stream ended early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    // Once the stream has sent a piece of its reply and the other request is generating too, the
    // server is told to stop.
    let collected = t.chat_in_thread(long(false));
    t.wait_until(60, "both slots busy", |t| t.metric("edgevl_slots_busy") == 2.0);
    let server = t.server.take().expect("running");
    let stopped = std::thread::spawn(move || server.shutdown());
    streamed.read_to_end(&mut got).expect("the stream ends");
    let text = String::from_utf8_lossy(&got);
    let error = text.find("shutting down").unwrap_or_else(|| panic!("no error event in\n{text}"));
    let done = text.rfind("data: [DONE]").unwrap_or_else(|| panic!("no [DONE] in\n{text}"));
    assert!(error < done, "{text}");
    let (status, body) = collected.join().expect("the non-streamed request");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("shutting down"), "{body}");
    assert!(stopped.join().expect("shutdown").is_ok());
}

/// A CORS preflight is granted the headers it asks for (the openai JS SDK adds `x-stainless-*`
/// to every request; a browser drops the call unless the preflight allows them).
#[test]
fn cors_preflight_allows_the_requested_headers() {
    let mut cfg = common::tiny_vlm();
    cfg.cors_origin = Some("https://app.example".into());
    let t = common::start(cfg);
    let mut s = t.raw(
        "OPTIONS /v1/chat/completions HTTP/1.1\r\nHost: edgevl\r\nOrigin: https://app.example\r\n\
         Access-Control-Request-Method: POST\r\n\
         Access-Control-Request-Headers: authorization, content-type, x-stainless-lang, x-stainless-os\r\n\r\n",
        b"",
    );
    let head = read_head(&mut s).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let allowed = head
        .lines()
        .find(|l| l.starts_with("access-control-allow-headers:"))
        .unwrap_or_else(|| panic!("{head}"));
    for h in ["authorization", "content-type", "x-stainless-lang", "x-stainless-os"] {
        assert!(allowed.contains(h), "{h} not in {allowed}");
    }
    assert!(head.contains("access-control-allow-origin: https://app.example"), "{head}");
}

/// Slow and idle clients are cut off and connections are capped: a request's headers must
/// arrive within the header timeout (a client trickling a byte every few seconds held its
/// connection for good), its body within the body timeout (408), and no more than
/// `max_connections` are served at once (thousands of idle ones used up the process's files).
#[test]
fn slow_clients_are_cut_off_and_connections_capped() {
    let mut cfg = common::tiny_vlm();
    // 3 s: the held connections below must outlast the third client's 0.7 s wait on a loaded machine.
    cfg.conn_limits.header_timeout = Duration::from_secs(3);
    cfg.conn_limits.max_connections = 2;
    cfg.body_timeout = Duration::from_secs(1);
    let t = common::start(cfg);
    // Headers that never end: the server closes the connection (a read sees the end, or a
    // 408 first), well before the client's own 120 s read timeout.
    let mut s = t.raw("POST /v1/chat/completions HTTP/1.1\r\nHost: edgevl\r\nContent-Le", b"");
    let mut rest = Vec::new();
    let closed = s.read_to_end(&mut rest);
    assert!(closed.is_ok(), "the connection was not closed: {closed:?}");
    // A body that stops halfway: 408 once the body timeout passes.
    let head = "POST /v1/chat/completions HTTP/1.1\r\nHost: edgevl\r\nContent-Type: application/json\r\n\
                Content-Length: 100\r\n\r\n";
    let mut s = t.raw(head, b"{\"messages\": ");
    let resp = read_head(&mut s);
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp}");
    // Two connections held open fill the cap; a third client is not served until one goes.
    let held: Vec<_> = (0..2).map(|_| t.raw("GET /health HTTP/1.1\r\nHost: edgevl\r\n", b"")).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut third = std::net::TcpStream::connect(t.addr()).expect("the kernel accepts into its backlog");
    third.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    third.write_all(b"GET /health HTTP/1.1\r\nHost: edgevl\r\nConnection: close\r\n\r\n").unwrap();
    let mut byte = [0u8; 1];
    let early = third.read(&mut byte);
    assert!(early.is_err(), "served past the connection cap: {early:?}");
    drop(held);
    third.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let resp = read_head(&mut third);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}

/// Request bodies share a budget: a body takes its room (its declared length) before it is
/// read, so a client holding a large half-sent body delays another's until it times out (and is
/// refused), instead of both being held in memory.
#[test]
fn request_bodies_wait_for_room_in_the_budget() {
    let t = body_limited(64 << 10, 64 << 10, Duration::from_secs(2));
    let big = "POST /v1/chat/completions HTTP/1.1\r\nHost: edgevl\r\nContent-Type: application/json\r\n\
               Content-Length: 65536\r\n\r\n";
    let mut a = t.raw(big, &[b' '; 60 << 10]);
    std::thread::sleep(Duration::from_secs(1));
    let (head, body) = raw_chat(&"hello ".repeat(1000));
    let mut b = t.raw(&head, &body);
    // `b` fits the limit but not next to `a`: it waits, then `a` times out and `b` is served.
    let resp_a = read_head(&mut a);
    assert!(resp_a.starts_with("HTTP/1.1 408"), "{resp_a}");
    let resp_b = read_head(&mut b);
    assert!(resp_b.starts_with("HTTP/1.1 200"), "{resp_b}");
}

/// Two bodies that together pass the budget, sent at the same time: each takes its room whole
/// before it is read, so one waits for the other and both are answered (taken a frame at a
/// time, each held half the budget and waited for the other's: both ended in a 408).
#[test]
fn bodies_sent_together_past_the_budget_are_both_answered() {
    let t = body_limited(40 << 10, 64 << 10, Duration::from_secs(20));
    let (head, body) = raw_chat(&"hello ".repeat(6000));
    assert!(body.len() > 32 << 10 && body.len() < 40 << 10);
    let half = 32 << 10;
    let mut clients: Vec<_> = (0..2).map(|_| t.raw(&head, &body[..half])).collect();
    std::thread::sleep(Duration::from_millis(500));
    for c in &mut clients {
        c.write_all(&body[half..]).unwrap();
    }
    for c in &mut clients {
        let resp = read_head(c);
        assert!(!resp.starts_with("HTTP/1.1 408") && !resp.starts_with("HTTP/1.1 503"), "{resp}");
    }
}

/// The tiny model's server taking bodies of at most `max_body` bytes, `buffered` bytes of them at
/// once, each arriving within `timeout`.
fn body_limited(max_body: usize, buffered: usize, timeout: Duration) -> common::TestServer {
    let mut cfg = common::tiny_vlm();
    cfg.max_body_bytes = max_body;
    cfg.max_buffered_body_bytes = buffered;
    cfg.body_timeout = timeout;
    common::start(cfg)
}

/// A one-token chat request about `content`, as the head (closing the connection) and the body
/// of a raw POST.
fn raw_chat(content: &str) -> (String, Vec<u8>) {
    let body =
        serde_json::to_vec(&json!({"messages": [{"role": "user", "content": content}], "max_tokens": 1}))
            .expect("json");
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: edgevl\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    (head, body)
}
