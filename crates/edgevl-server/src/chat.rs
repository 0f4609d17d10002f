//! `POST /v1/chat/completions`: check the request, decode and encode its images (one request's
//! images at a time), queue it for the engine, then answer with one JSON or a stream of
//! server-sent events ending `data: [DONE]`.

use crate::api::{parse_json, ChatInput, ChatRequest, ImageRef};
use crate::engine::{Event, Job};
use crate::error::ApiError;
use crate::images::{decode_counted, ImageLimits, ImageSource, Uploads};
use crate::metrics::GaugeHold;
use crate::routes::BodyRoom;
use crate::state::{unix_now, AppState};
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use edgevl_runtime::{ImageEncoderHandle, PendingImage, TurnStats};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::OwnedSemaphorePermit;

/// What a request holds while its response is being answered: its place in the admission bound,
/// given back when the response ends or its client goes away (a job abandoned in the queue no
/// longer keeps a live client out), and its cancel flag, set when dropped before being disarmed,
/// so a client that goes away stops its prefill and generation.
pub struct RequestGuard {
    cancel: Option<Arc<AtomicBool>>,
    _admission: OwnedSemaphorePermit,
}

impl RequestGuard {
    fn disarm(&mut self) {
        self.cancel = None;
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        if let Some(flag) = self.cancel.take() {
            flag.store(true, Ordering::Relaxed);
        }
    }
}

/// The handler.
/// `room` is the body's room in the server's budget for bodies, given back once the request is
/// admitted.
pub async fn chat_completions(st: Arc<AppState>, body: Bytes, room: &BodyRoom) -> Result<Response, ApiError> {
    let req: ChatRequest = parse_json(&body)?;
    drop(body);
    req.check_supported()?;
    let ready = st.ready()?;
    let (vision, n_vocab, model) = (ready.vision.clone(), ready.n_vocab, ready.model_id.clone());
    let ChatInput { messages, images: refs, sampler, stop, max_tokens, stream, ignore_eos } =
        req.into_input(n_vocab, vision.is_some(), &st.limits)?;
    let permit = st.admit.clone().try_acquire_owned().map_err(|_| ApiError::busy(1))?;
    room.release();
    let (tx, rx) = unbounded_channel();
    let cancel = Arc::new(AtomicBool::new(false));
    st.track_cancel(&cancel);
    let job = Job {
        messages,
        images: Vec::new(),
        sampler,
        max_tokens,
        ignore_eos,
        stop,
        events: tx,
        cancel: cancel.clone(),
        progress: stream.is_some_and(|s| s.include_progress),
    };
    let guard = RequestGuard { cancel: Some(cancel), _admission: permit };
    let reply = Reply { id: st.completion_id(), created: unix_now(), model };
    // The images are prepared and the job queued on a task of its own, telling the reply (an error first, as
    // the response's status), so that a stream can show the encoding's progress while it runs.
    tokio::spawn(prepare_and_queue(st, vision, refs, job));
    match stream {
        Some(s) => reply.stream(rx, guard, s.include_usage).await,
        None => reply.collect(rx, guard).await,
    }
}

/// Prepares the request's images into `job` (their progress told when the job asks for it) and queues it for
/// the engine; a failure is sent to the request instead.
async fn prepare_and_queue(
    st: Arc<AppState>,
    vision: Option<ImageEncoderHandle>,
    refs: Vec<ImageRef>,
    mut job: Job,
) {
    if let Some(v) = vision.filter(|_| !refs.is_empty()) {
        let _preparing = GaugeHold::new(&st.metrics.preparing_images);
        let tell = job.progress.then(|| job.events.clone());
        // A client that leaves before the images are prepared ends the request there; the image being encoded
        // on the blocking thread still finishes, its images not yet begun are dropped.
        let prepared = tokio::select! {
            biased;
            () = job.events.closed() => {
                st.metrics.cancelled.fetch_add(1, Ordering::Relaxed);
                return;
            }
            prepared = prepare_images(&st, v, refs, job.events.clone(), tell) => prepared,
        };
        match prepared {
            Ok(images) => job.images = images,
            Err(e) => {
                let _ = job.events.send(Event::Error(e));
                return;
            }
        }
    }
    if job.events.is_closed() {
        st.metrics.cancelled.fetch_add(1, Ordering::Relaxed);
        return;
    }
    st.metrics.queue_depth.fetch_add(1, Ordering::Relaxed);
    if let Err(std::sync::mpsc::SendError(job)) = st.jobs.send(job) {
        st.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
        let _ = job.events.send(Event::Error(ApiError::unavailable("the engine has stopped")));
    }
}

/// Decodes the request's images, then starts their encoding and waits for it, holding the
/// image gate throughout (on a blocking thread), telling `tell` of each image's views as they are
/// encoded. Every part is decoded before any is encoded, so a bad part costs no ViT time. When
/// `client`'s receiver is gone (the client left), the wait stops at the next image and the images
/// not yet begun are dropped unencoded (they were all encoded, holding the gate).
async fn prepare_images(
    st: &AppState,
    vision: ImageEncoderHandle,
    refs: Vec<ImageRef>,
    client: UnboundedSender<Event>,
    tell: Option<UnboundedSender<Event>>,
) -> Result<Vec<PendingImage>, ApiError> {
    let gate =
        st.image_gate.clone().acquire_owned().await.map_err(|_| ApiError::unavailable("shutting down"))?;
    let (uploads, limits) = (st.uploads.clone(), st.limits);
    let n_ctx = st.ready()?.n_ctx;
    tokio::task::spawn_blocking(move || {
        let _gate = gate;
        let mut pixels = 0;
        let decoded = refs
            .into_iter()
            .map(|r| resolve(&uploads, &limits, r, &mut pixels))
            .collect::<Result<Vec<_>, _>>()?;
        refuse_images_past_the_context(&vision, &decoded, n_ctx)?;
        let pending = decoded
            .into_iter()
            .map(|(r, image)| match image {
                Resolved::Pixels(image) => Ok(vision.prepare(&r.part, image, r.budget)?),
                Resolved::Uploaded(info, id) => vision.find(&info).ok_or_else(|| {
                    ApiError::bad_request_code(
                        "unknown_image_id",
                        format!(
                            "{}: image {:?} is no longer in the embedding cache; upload it again",
                            r.part,
                            crate::api::clip(&id)
                        ),
                    )
                    .with_param(r.part.as_str())
                }),
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        for p in &pending {
            if client.is_closed() {
                return Err(ApiError::unavailable("the client left"));
            }
            vision.embeddings_reporting(p, &mut |progress| {
                if let Some(tx) = &tell {
                    let _ = tx.send(Event::Progress(progress));
                }
            })?;
        }
        Ok(pending)
    })
    .await
    .map_err(|e| ApiError::internal(format!("image preparation failed: {e}")))?
}

/// Refuses images whose tokens alone (their plans' views) pass the context, before any is
/// encoded (the prompt's text would only add to them).
fn refuse_images_past_the_context(
    vision: &ImageEncoderHandle,
    images: &[(ImageRef, Resolved)],
    n_ctx: usize,
) -> Result<(), ApiError> {
    let mut tokens = 0;
    for (r, image) in images {
        tokens += match image {
            Resolved::Pixels(image) => vision.plan(image.size(), r.budget)?.image_tokens() as usize,
            Resolved::Uploaded(info, _) => info.n_tokens,
        };
    }
    if tokens > n_ctx {
        return Err(ApiError::bad_request_code(
            "context_length_exceeded",
            format!(
                "the request's images take {tokens} tokens, more than the {n_ctx}-token context \
                 (ask for fewer tiles with detail or max_tiles, or send fewer images)"
            ),
        ));
    }
    Ok(())
}

/// An image part, decoded or found in the upload registry.
enum Resolved {
    Pixels(edgevl_vision::RgbImage),
    Uploaded(edgevl_runtime::ImageInfo, String),
}

/// Decodes one image part (the request's parts so far having declared `pixels`), or finds its
/// upload id.
fn resolve(
    uploads: &Uploads,
    limits: &ImageLimits,
    r: ImageRef,
    pixels: &mut u64,
) -> Result<(ImageRef, Resolved), ApiError> {
    let resolved = match r.source()? {
        ImageSource::Inline(bytes) => Resolved::Pixels(decode_counted(&bytes, &r.part, limits, pixels)?),
        ImageSource::Uploaded(id) => {
            let info = uploads.get(&id).ok_or_else(|| {
                ApiError::bad_request_code(
                    "unknown_image_id",
                    format!("{}: no uploaded image has the id {:?}", r.part, crate::api::clip(&id)),
                )
                .with_param(r.part.as_str())
            })?;
            Resolved::Uploaded(info, id)
        }
    };
    Ok((ImageRef { url: String::new(), ..r }, resolved))
}

/// `usage` of a finished turn.
pub fn usage(s: &TurnStats) -> Value {
    json!({
        "prompt_tokens": s.prompt_tokens,
        "completion_tokens": s.generated_tokens,
        "total_tokens": s.prompt_tokens + s.generated_tokens,
        "prompt_tokens_details": {"cached_tokens": s.reused_tokens, "image_tokens": s.image_tokens},
    })
}

/// What every response of one completion shares.
struct Reply {
    id: String,
    created: u64,
    model: String,
}

impl Reply {
    /// Waits for the whole reply and answers with one JSON.
    async fn collect(
        self,
        mut rx: UnboundedReceiver<Event>,
        mut guard: RequestGuard,
    ) -> Result<Response, ApiError> {
        let mut text = String::new();
        loop {
            match rx.recv().await {
                Some(Event::Text(t)) => text.push_str(&t),
                Some(Event::Progress(_)) => {}
                Some(Event::Error(e)) => return Err(e),
                Some(Event::Done { finish_reason, stats }) => {
                    guard.disarm();
                    let body = json!({
                        "id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                     "logprobs": null, "finish_reason": finish_reason}],
                        "usage": usage(&stats),
                    });
                    return Ok(axum::Json(body).into_response());
                }
                None => return Err(cut_short()),
            }
        }
    }

    /// Streams the reply as server-sent events. An error before the first token (or progress
    /// report) is an ordinary error response; one after it is an `error` event.
    async fn stream(
        self,
        mut rx: UnboundedReceiver<Event>,
        guard: RequestGuard,
        include_usage: bool,
    ) -> Result<Response, ApiError> {
        let first = match rx.recv().await {
            Some(Event::Error(e)) => return Err(e),
            Some(ev) => ev,
            None => return Err(cut_short()),
        };
        let mut s = SseState { reply: self, rx, guard, include_usage, out: VecDeque::new(), finished: false };
        s.out.push_back(s.chunk(json!({"role": "assistant", "content": ""}), Value::Null));
        s.on_event(Some(first));
        let body = futures_util::stream::unfold(s, |mut s| async move {
            loop {
                if let Some(b) = s.out.pop_front() {
                    return Some((Ok::<Bytes, std::convert::Infallible>(b), s));
                }
                if s.finished {
                    return None;
                }
                let ev = s.rx.recv().await;
                s.on_event(ev);
            }
        });
        let mut resp = Body::from_stream(body).into_response();
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        Ok(resp)
    }
}

/// A stream in progress: the events to turn into `data:` lines.
struct SseState {
    reply: Reply,
    rx: UnboundedReceiver<Event>,
    guard: RequestGuard,
    include_usage: bool,
    out: VecDeque<Bytes>,
    finished: bool,
}

impl SseState {
    fn data(v: &Value) -> Bytes {
        Bytes::from(format!("data: {v}\n\n"))
    }

    fn chunk(&self, delta: Value, finish_reason: Value) -> Bytes {
        let mut v = json!({
            "id": self.reply.id, "object": "chat.completion.chunk", "created": self.reply.created,
            "model": self.reply.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
        });
        if self.include_usage {
            v["usage"] = Value::Null;
        }
        Self::data(&v)
    }

    fn on_event(&mut self, ev: Option<Event>) {
        match ev {
            Some(Event::Text(t)) => {
                let c = self.chunk(json!({"content": t}), Value::Null);
                self.out.push_back(c);
            }
            Some(Event::Done { finish_reason, stats }) => {
                self.guard.disarm();
                let c = self.chunk(json!({}), json!(finish_reason));
                self.out.push_back(c);
                if self.include_usage {
                    let v = json!({
                        "id": self.reply.id, "object": "chat.completion.chunk", "created": self.reply.created,
                        "model": self.reply.model, "choices": [], "usage": usage(&stats),
                    });
                    self.out.push_back(Self::data(&v));
                }
                self.out.push_back(Bytes::from_static(b"data: [DONE]\n\n"));
                self.finished = true;
            }
            Some(Event::Progress(p)) => {
                let (step, done, total) = p.parts();
                let v = json!({"step": step, "done": done, "total": total});
                self.out.push_back(Bytes::from(format!(": progress {v}\n\n")));
            }
            Some(Event::Error(e)) => {
                self.out.push_back(Self::data(&e.body()));
                self.out.push_back(Bytes::from_static(b"data: [DONE]\n\n"));
                self.finished = true;
            }
            // The engine let the request go without an end: the server is stopping (or its engine failed).
            None => {
                self.out.push_back(Self::data(&cut_short().body()));
                self.out.push_back(Bytes::from_static(b"data: [DONE]\n\n"));
                self.finished = true;
            }
        }
    }
}

/// The error of a reply the engine let go without an end: the server stopped it (it is shutting
/// down and its drain timeout passed) or its engine failed.
fn cut_short() -> ApiError {
    ApiError::unavailable("the server stopped this reply before its end (it is shutting down)")
}
