//! The OpenAI request bodies the server reads (unknown fields are ignored) and the checks that
//! refuse what it does not do, with a message naming the field.

use crate::error::ApiError;
use crate::images::{budget, parse_url, ImageLimits, ImageSource};
use edgevl_runtime::{SamplerConfig, TileBudget, MEDIA_MARKER};
use edgevl_tokenizer::ChatMessage;
use serde::Deserialize;
use std::collections::HashMap;

/// `POST /v1/chat/completions`.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    /// Ignored (the server has one model); echoed back.
    #[serde(default)]
    pub model: Option<String>,
    /// The conversation.
    pub messages: Vec<Message>,
    /// Stream server-sent events (`null`: no).
    #[serde(default)]
    pub stream: Option<bool>,
    /// `include_usage` adds a last chunk with the usage; `include_progress` (this server's) the progress.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// Most tokens to generate (default: up to the end of the context).
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// Newer name of `max_tokens`, taken over it when both are given (as llama-server).
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
    /// Sampling temperature (0 = greedy; default as `edgevl run`, 0.8).
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Nucleus sampling (default 0.95).
    #[serde(default)]
    pub top_p: Option<f32>,
    /// Extension: top-k (default 40, 0 = off).
    #[serde(default)]
    pub top_k: Option<usize>,
    /// Extension: min-p (default 0.05).
    #[serde(default)]
    pub min_p: Option<f32>,
    /// Seed of the random draw (0 to 2^64-1), so a sampled reply repeats; without one (or with
    /// -1, as llama-server takes it) each request draws its own.
    #[serde(default, deserialize_with = "seed_number")]
    pub seed: Option<i128>,
    /// Subtracted from a token's logit for each time it is among the recent tokens, -2 to 2.
    #[serde(default)]
    pub frequency_penalty: Option<f32>,
    /// Subtracted from a token's logit when it is among the recent tokens, -2 to 2.
    #[serde(default)]
    pub presence_penalty: Option<f32>,
    /// Only `{"type": "text"}` (400 otherwise: JSON mode and schemas are not supported).
    #[serde(default)]
    pub response_format: Option<serde_json::Value>,
    /// Up to 4 stop strings.
    #[serde(default)]
    pub stop: Option<Stop>,
    /// Must be 1 when given.
    #[serde(default)]
    pub n: Option<u64>,
    /// Not supported (400 when given).
    #[serde(default)]
    pub tools: Option<serde_json::Value>,
    /// Not supported (400 when given).
    #[serde(default)]
    pub functions: Option<serde_json::Value>,
    /// Not supported (400 when true).
    #[serde(default)]
    pub logprobs: Option<bool>,
    /// Token id (as a string) -> bias added to its logit, -100 to 100; -100 bans the token.
    #[serde(default)]
    pub logit_bias: Option<HashMap<String, f32>>,
    /// Extension (as llama-server): never stop at an end-of-generation token (`null`: no).
    #[serde(default)]
    pub ignore_eos: Option<bool>,
}

/// `stream_options`.
#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with `usage` and no choices.
    #[serde(default)]
    pub include_usage: bool,
    /// This server's addition: send the image encoding's and the prefill's progress as SSE comment lines
    /// (`: progress {"step": "image"|"prefill", "done": n, "total": n}`) before the first token. The response
    /// then starts at the first image report, before the prompt is checked against the context, so a prompt
    /// of a request whose images were encoded is, if too long, an `error` event in the stream, not a 400.
    #[serde(default)]
    pub include_progress: bool,
}

/// `seed`: an integer (or null); a fraction or a number past 64 bits is an error naming the field
/// (serde_json's own integer reading stopped at the '.' with a syntax error that named nothing).
fn seed_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i128>, D::Error> {
    let v: Option<serde_json::Number> = Option::deserialize(d)?;
    v.map(|n| {
        n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from)).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "seed must be an integer, -1 (random) or 0 to {}, not {n}",
                u64::MAX
            ))
        })
    })
    .transpose()
}

/// At most the first 64 characters of `text` (an input echoed in an error message), marked when cut.
pub fn clip(text: &str) -> String {
    match text.char_indices().nth(64) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_string(),
    }
}

/// Longest stop string accepted, in characters.
pub const MAX_STOP_CHARS: usize = 1024;

/// `stop`: one string or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One stop string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// One chat message.
#[derive(Debug, Deserialize)]
pub struct Message {
    /// `system`, `developer`, `user` or `assistant`.
    pub role: String,
    /// Text, or a list of parts; `null` is empty.
    #[serde(default)]
    pub content: Option<Content>,
}

/// A message's content: a string or a list of parts (read by hand rather than as an untagged
/// enum, whose one error for any mismatch named neither the part nor what was wrong with it).
#[derive(Debug)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Text and image parts, in order.
    Parts(Vec<Part>),
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Content;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or a list of content parts")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Content, E> {
                Ok(Content::Text(s.to_string()))
            }
            fn visit_string<E: serde::de::Error>(self, s: String) -> Result<Content, E> {
                Ok(Content::Text(s))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Content, A::Error> {
                let mut parts = Vec::new();
                while let Some(p) = seq.next_element()? {
                    parts.push(p);
                }
                Ok(Content::Parts(parts))
            }
        }
        d.deserialize_any(V)
    }
}

/// One part of a message (another `type`, such as `input_audio` or `file`, is refused naming the
/// ones taken).
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Part {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// An image.
    ImageUrl {
        /// Where it is.
        image_url: ImageUrl,
    },
    /// An assistant's refusal, as OpenAI returns it: taken as the message's text.
    Refusal {
        /// The refusal's text.
        refusal: String,
    },
}

/// An image reference: `{"url", "detail"?, "max_tiles"?}` or the bare URL string.
#[derive(Debug)]
pub enum ImageUrl {
    /// OpenAI's object form.
    Object(ImageUrlObject),
    /// Just the URL.
    Url(String),
}

/// OpenAI's `image_url` object.
#[derive(Debug, Deserialize)]
pub struct ImageUrlObject {
    /// `data:` URI, raw base64, or `edgevl-image://ID`.
    pub url: String,
    /// `low`, `high` or `auto`.
    #[serde(default)]
    pub detail: Option<String>,
    /// Extension: the tile budget, overriding `detail`.
    #[serde(default)]
    pub max_tiles: Option<u32>,
}

impl<'de> Deserialize<'de> for ImageUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ImageUrl;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object with a url, or the URL as a string")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<ImageUrl, E> {
                Ok(ImageUrl::Url(s.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<ImageUrl, A::Error> {
                ImageUrlObject::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(ImageUrl::Object)
            }
        }
        d.deserialize_any(V)
    }
}

impl ImageUrl {
    /// The URL, `detail` and `max_tiles`.
    pub fn parts(&self) -> (&str, Option<&str>, Option<u32>) {
        match self {
            ImageUrl::Object(o) => (&o.url, o.detail.as_deref(), o.max_tiles),
            ImageUrl::Url(url) => (url, None, None),
        }
    }
}

/// `POST /v1/images`.
#[derive(Debug, Deserialize)]
pub struct UploadRequest {
    /// A `data:` URI or raw base64.
    pub image: String,
    /// `low`, `high` or `auto`.
    #[serde(default)]
    pub detail: Option<String>,
    /// The tile budget, overriding `detail`.
    #[serde(default)]
    pub max_tiles: Option<u32>,
}

/// Query of `GET /v1/edgevl/tiles`.
#[derive(Debug, Deserialize)]
pub struct TilesQuery {
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels.
    pub height: u32,
    /// `low`, `high` or `auto`.
    #[serde(default)]
    pub detail: Option<String>,
    /// The tile budget, overriding `detail`.
    #[serde(default)]
    pub max_tiles: Option<u32>,
}

/// Parses a JSON body: not UTF-8 or not valid JSON for `T` is a 400 that says where.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        ApiError::bad_request_code("invalid_utf8", format!("the request body is not valid UTF-8 ({e})"))
    })?;
    let mut de = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let at = e.path().to_string();
        let at = if at == "." { String::new() } else { format!(" at {at}") };
        let msg = format!("the request body is not valid JSON for this endpoint{at}: {}", e.inner());
        let error = ApiError::bad_request_code("invalid_json", msg);
        // A value of the wrong shape names its field; broken JSON is no one field's fault.
        match e.path().to_string() {
            path if path != "." && e.inner().classify() == serde_json::error::Category::Data => {
                error.with_param(path)
            }
            _ => error,
        }
    })?;
    de.end().map_err(|e| {
        ApiError::bad_request_code("invalid_json", format!("the request body is not valid JSON: {e}"))
    })?;
    Ok(value)
}

impl ChatRequest {
    /// Refuses the features the server does not have.
    pub fn check_supported(&self) -> Result<(), ApiError> {
        match self.n {
            Some(0) => {
                return Err(
                    ApiError::bad_request("n must be 1 (one choice per request), not 0").with_param("n")
                )
            }
            Some(n) if n != 1 => {
                return Err(ApiError::bad_request_code(
                    "unsupported_parameter",
                    "n > 1 is not supported: one choice per request",
                )
                .with_param("n"))
            }
            _ => {}
        }
        for (name, given) in [("tools", &self.tools), ("functions", &self.functions)] {
            if given.as_ref().is_some_and(|t| !t.is_null()) {
                return Err(ApiError::bad_request_code(
                    "unsupported_parameter",
                    "tools and function calling are not supported",
                )
                .with_param(name));
            }
        }
        if self.logprobs == Some(true) {
            return Err(ApiError::bad_request_code("unsupported_parameter", "logprobs are not supported")
                .with_param("logprobs"));
        }
        match self.response_format.as_ref().filter(|f| !f.is_null()) {
            None => {}
            Some(f) if f.get("type").and_then(|t| t.as_str()) == Some("text") => {}
            Some(f) => {
                let kind = f.get("type").map_or_else(|| "no type".to_string(), |t| t.to_string());
                return Err(ApiError::bad_request_code(
                    "unsupported_parameter",
                    format!("response_format {} is not supported: only {{\"type\": \"text\"}}", clip(&kind)),
                )
                .with_param("response_format"));
            }
        }
        if self.messages.is_empty() {
            return Err(ApiError::bad_request("messages must not be empty").with_param("messages"));
        }
        let finite_in = |v: Option<f32>, lo: f32, hi: f32, name: &str| match v {
            Some(x) if !(x.is_finite() && x >= lo && x <= hi) => {
                Err(ApiError::bad_request(format!("{name} must be between {lo} and {hi}, not {x}"))
                    .with_param(name))
            }
            _ => Ok(()),
        };
        finite_in(self.temperature, 0.0, 2.0, "temperature")?;
        finite_in(self.top_p, 0.0, 1.0, "top_p")?;
        finite_in(self.min_p, 0.0, 1.0, "min_p")?;
        finite_in(self.frequency_penalty, -2.0, 2.0, "frequency_penalty")?;
        finite_in(self.presence_penalty, -2.0, 2.0, "presence_penalty")?;
        if let Some((0, name)) = self.token_budget() {
            return Err(ApiError::bad_request(format!("{name} must be at least 1")).with_param(name));
        }
        let stop = self.stop_strings();
        if stop.len() > 4 {
            return Err(ApiError::bad_request("at most 4 stop strings").with_param("stop"));
        }
        // Every generated token is matched against every stop string's characters.
        if let Some(long) = stop.iter().find(|s| s.chars().count() > MAX_STOP_CHARS) {
            return Err(ApiError::bad_request(format!(
                "a stop string is at most {MAX_STOP_CHARS} characters, not {}",
                long.chars().count()
            ))
            .with_param("stop"));
        }
        Ok(())
    }

    /// The stop strings (empty ones dropped).
    pub fn stop_strings(&self) -> Vec<String> {
        let all = match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        };
        all.into_iter().filter(|s| !s.is_empty()).collect()
    }

    /// The most tokens to generate and the field that says so: `max_completion_tokens` (OpenAI's
    /// current name) over `max_tokens`, as llama-server reads them.
    fn token_budget(&self) -> Option<(u64, &'static str)> {
        match (self.max_completion_tokens, self.max_tokens) {
            (Some(n), _) => Some((n, "max_completion_tokens")),
            (None, Some(n)) => Some((n, "max_tokens")),
            (None, None) => None,
        }
    }

    /// `logit_bias` as (token id, bias) pairs; a key that is not a token id below `n_vocab`, or a
    /// bias outside OpenAI's -100 to 100, is a 400. A bias of -100 bans the token (banning every
    /// token, `ignore_eos` counted, is refused when the request starts).
    pub fn logit_bias(&self, n_vocab: usize) -> Result<Vec<(u32, f32)>, ApiError> {
        let Some(map) = &self.logit_bias else { return Ok(Vec::new()) };
        map.iter()
            .map(|(k, &v)| {
                let id: u32 =
                    k.parse().ok().filter(|&id: &u32| (id as usize) < n_vocab).ok_or_else(|| {
                        ApiError::bad_request(format!("logit_bias: {k:?} is not a token id below {n_vocab}"))
                            .with_param("logit_bias")
                    })?;
                if !(-100.0..=100.0).contains(&v) {
                    return Err(ApiError::bad_request(format!(
                        "logit_bias of token {id} is {v}: it must be between -100 and 100"
                    ))
                    .with_param("logit_bias"));
                }
                Ok((id, if v == -100.0 { f32::NEG_INFINITY } else { v }))
            })
            .collect()
    }
}

/// A chat request read into what the engine takes: everything the server does with a request
/// before its images are decoded and it is queued (no model needed but its vocabulary size).
#[derive(Debug)]
pub struct ChatInput {
    /// The messages as the runtime takes them (image parts replaced by [`MEDIA_MARKER`]).
    pub messages: Vec<ChatMessage>,
    /// The image parts, in order, not yet decoded.
    pub images: Vec<ImageRef>,
    /// Sampling settings (the request's or `edgevl run`'s defaults).
    pub sampler: SamplerConfig,
    /// Stop strings (empty ones dropped).
    pub stop: Vec<String>,
    /// Most tokens to generate.
    pub max_tokens: Option<usize>,
    /// Answer with server-sent events (`None`: with one JSON).
    pub stream: Option<Streaming>,
    /// Never stop at an end-of-generation token.
    pub ignore_eos: bool,
}

/// What a streamed reply sends besides the text (`stream_options`).
#[derive(Clone, Copy, Debug)]
pub struct Streaming {
    /// Add a last chunk with the usage.
    pub include_usage: bool,
    /// Send the progress before the first token.
    pub include_progress: bool,
}

/// An image part of a message, not yet decoded.
#[derive(Debug)]
pub struct ImageRef {
    /// Names the part in errors: `messages[1].content[0]`.
    pub part: String,
    /// Its URL.
    pub url: String,
    /// Its tile budget.
    pub budget: TileBudget,
}

impl ImageRef {
    /// Where the part's bytes are ([`parse_url`]).
    pub fn source(&self) -> Result<ImageSource, ApiError> {
        parse_url(&self.url, &self.part)
    }
}

impl ChatRequest {
    /// Reads a checked request ([`ChatRequest::check_supported`]) for a model of `n_vocab`
    /// tokens, with or without a vision encoder: roles, texts and image parts (at most
    /// `limits.max_images`), the sampler, stop strings and token budget; image parts without a
    /// vision encoder are refused.
    pub fn into_input(
        self,
        n_vocab: usize,
        vision: bool,
        limits: &ImageLimits,
    ) -> Result<ChatInput, ApiError> {
        let sampler = SamplerConfig {
            temp: self.temperature.unwrap_or(0.8),
            top_p: self.top_p.unwrap_or(0.95),
            top_k: self.top_k.unwrap_or(40),
            min_p: self.min_p.unwrap_or(0.05),
            seed: edgevl_runtime::requested_seed(self.seed)
                .map_err(|e| ApiError::bad_request(e).with_param("seed"))?,
            frequency_penalty: self.frequency_penalty.unwrap_or(0.0),
            presence_penalty: self.presence_penalty.unwrap_or(0.0),
            logit_bias: self.logit_bias(n_vocab)?,
            ..SamplerConfig::default()
        };
        let stop = self.stop_strings();
        let max_tokens = self.token_budget().map(|(n, _)| usize::try_from(n).unwrap_or(usize::MAX));
        let options = self.stream_options.as_ref();
        let stream = self.stream.unwrap_or(false).then(|| Streaming {
            include_usage: options.is_some_and(|o| o.include_usage),
            include_progress: options.is_some_and(|o| o.include_progress),
        });
        let ignore_eos = self.ignore_eos.unwrap_or(false);
        let (messages, images) = flatten(self.messages, vision, limits)?;
        if !images.is_empty() && !vision {
            return Err(ApiError::from(edgevl_runtime::RuntimeError::NoVision));
        }
        Ok(ChatInput { messages, images, sampler, stop, max_tokens, stream, ignore_eos })
    }
}

/// The messages as the runtime takes them (images replaced by markers) and the image parts.
fn flatten(
    messages: Vec<Message>,
    vision: bool,
    limits: &ImageLimits,
) -> Result<(Vec<ChatMessage>, Vec<ImageRef>), ApiError> {
    let mut out = Vec::with_capacity(messages.len());
    let mut refs = Vec::new();
    for (i, m) in messages.into_iter().enumerate() {
        let role = match m.role.as_str() {
            "system" | "developer" => "system",
            "user" => "user",
            "assistant" => "assistant",
            other => {
                return Err(ApiError::bad_request(format!(
                    "messages[{i}].role {:?} is not supported (system, developer, user or assistant)",
                    clip(other)
                ))
                .with_param(format!("messages[{i}].role")))
            }
        };
        let check = |text: &str, at: String| {
            if vision && text.contains(MEDIA_MARKER) {
                Err(ApiError::bad_request(format!(
                    "{at}: the text may not contain the image marker {MEDIA_MARKER}"
                ))
                .with_param(at))
            } else {
                Ok(())
            }
        };
        let mut text = String::new();
        match m.content {
            None => {}
            Some(Content::Text(t)) => {
                check(&t, format!("messages[{i}].content"))?;
                text = t;
            }
            Some(Content::Parts(parts)) => {
                let mut last_was_text = false;
                for (j, p) in parts.into_iter().enumerate() {
                    match p {
                        Part::Text { text: t } | Part::Refusal { refusal: t } => {
                            check(&t, format!("messages[{i}].content[{j}]"))?;
                            if last_was_text {
                                text.push('\n');
                            }
                            text.push_str(&t);
                            last_was_text = true;
                        }
                        Part::ImageUrl { image_url } => {
                            let part = format!("messages[{i}].content[{j}]");
                            let (url, detail, max_tiles) = image_url.parts();
                            let budget = budget(detail, max_tiles, &part)?;
                            refs.push(ImageRef { part, url: url.to_string(), budget });
                            if refs.len() > limits.max_images {
                                return Err(ApiError::bad_request_code(
                                    "too_many_images",
                                    format!("more than {} images in one request", limits.max_images),
                                )
                                .with_param(format!("messages[{i}].content[{j}]")));
                            }
                            text.push_str(MEDIA_MARKER);
                            last_was_text = false;
                        }
                    }
                }
            }
        }
        out.push(ChatMessage::new(role, text));
    }
    Ok((out, refs))
}
