//! The router: endpoints, the body limit, the API key, CORS, and a log line and a metrics count
//! for every answer.

use crate::api::{parse_json, TilesQuery, UploadRequest};
use crate::chat::chat_completions;
use crate::error::ApiError;
use crate::images::{budget, decode, parse_url, ImageSource};
use crate::state::AppState;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use edgevl_runtime::{ImageEncoderHandle, TileBudget};
use edgevl_vision::{Plan, Size};
use http_body_util::BodyExt;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::OwnedSemaphorePermit;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

/// The web page at `/`.
const PAGE: &str = include_str!("../static/index.html");

/// Paths named in metrics (anything else counts as `other`).
const PATHS: [&str; 7] =
    ["/", "/health", "/metrics", "/v1/models", "/v1/chat/completions", "/v1/images", "/v1/edgevl/tiles"];

/// The name metrics and the log give a request's path: one of [`PATHS`], `/v1/models/{id}`, or `other`.
fn path_name(path: &str) -> &'static str {
    match PATHS.iter().copied().find(|p| *p == path) {
        Some(p) => p,
        None if path.strip_prefix("/v1/models/").is_some_and(|id| !id.is_empty() && !id.contains('/')) => {
            "/v1/models/{id}"
        }
        None => "other",
    }
}

/// The application: every endpoint with its layers.
pub fn router(st: Arc<AppState>, cors_origin: Option<&str>) -> Result<Router, crate::ServerError> {
    let limit = st.max_body_bytes;
    let app = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(model))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/images", post(upload))
        .route("/v1/edgevl/tiles", get(tiles))
        .fallback(|req: Request| async move { ApiError::not_found(req.uri().path()) })
        .method_not_allowed_fallback(|req: Request| async move {
            ApiError::method_not_allowed(req.method().as_str(), req.uri().path())
        })
        // Bodies are read after the API key is checked (the last layer added runs first).
        .layer(middleware::from_fn_with_state(st.clone(), read_body))
        .layer(middleware::from_fn_with_state(st.clone(), auth))
        .layer(middleware::from_fn_with_state(st.clone(), log_and_count))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(st);
    let Some(origin) = cors_origin else { return Ok(app) };
    let allow = if origin == "*" {
        AllowOrigin::any()
    } else {
        let v = HeaderValue::from_str(origin).map_err(|_| {
            crate::ServerError::BadSetting(format!("--cors-origin {origin:?} is not a valid header value"))
        })?;
        AllowOrigin::exact(v)
    };
    let cors = CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        // Whatever the preflight asks for: clients add their own headers (the openai JS SDK sends
        // `x-stainless-*` with every request), and the API key is the access check.
        .allow_headers(AllowHeaders::mirror_request());
    Ok(app.layer(cors))
}

/// A body over the limit is a 413, any other read failure a 400.
fn body(st: &AppState, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(st.max_body_bytes)
        } else {
            ApiError::bad_request(format!("cannot read the request body: {e}"))
        }
    })
}

async fn chat(
    State(st): State<Arc<AppState>>,
    Extension(room): Extension<Arc<BodyRoom>>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let b = body(&st, b)?;
    chat_completions(st, b, &room).await
}

async fn health(State(st): State<Arc<AppState>>) -> Result<Json<serde_json::Value>, ApiError> {
    st.ready()?;
    Ok(Json(json!({"status": "ok"})))
}

async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    let vision = st.ready.get().and_then(|r| r.vision.as_ref());
    let text = st.metrics.render(vision, st.parallel);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// The served model as an OpenAI model object.
fn model_json(st: &AppState) -> Result<serde_json::Value, ApiError> {
    let r = st.ready()?;
    Ok(json!({
        "id": r.model_id, "object": "model", "created": st.started, "owned_by": "edgevl",
        "meta": {"n_ctx": r.n_ctx, "n_vocab": r.n_vocab, "vision": r.vision.is_some()},
    }))
}

/// `GET /v1/models`: the list of one model.
async fn models(State(st): State<Arc<AppState>>) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(json!({"object": "list", "data": [model_json(&st)?]})))
}

/// `GET /v1/models/{id}`: the served model by its id (OpenAI's retrieve); any other id is a 404.
async fn model(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let m = model_json(&st)?;
    if m["id"] != id.as_str() {
        return Err(ApiError::model_not_found(&id));
    }
    Ok(Json(m))
}

/// The grid of a plan as JSON, with the image tokens it costs.
fn plan_json(plan: &Plan, image_tokens: u64) -> serde_json::Value {
    json!({
        "strategy": plan.strategy.name(),
        "grid": {"cols": plan.grid.cols, "rows": plan.grid.rows},
        "tiles": plan.tiles(),
        "global_view": plan.global_view(),
        "views": plan.views(),
        "image_tokens": image_tokens,
        "canvas": {"width": plan.canvas.width, "height": plan.canvas.height},
        "resize": {"width": plan.resize.width, "height": plan.resize.height},
        "offset": {"x": plan.offset.x, "y": plan.offset.y},
    })
}

/// Refuses an upload whose embeddings (`image_tokens` rows) the embedding cache cannot hold: a
/// chat asks for it by id from the cache, so it would be encoded for nothing and its id never
/// found (`--image-cache-mb 0`, or a cache smaller than one image).
fn refuse_uncacheable(vision: &ImageEncoderHandle, image_tokens: u64) -> Result<(), ApiError> {
    let bytes = image_tokens.saturating_mul(vision.n_embd() as u64).saturating_mul(4);
    let cache_mb = vision.config().cache_mb;
    if bytes <= (cache_mb as u64) << 20 {
        return Ok(());
    }
    Err(ApiError::bad_request_code(
        "image_cache_too_small",
        format!(
            "image: its embeddings take {:.1} MiB and the server's image cache holds {cache_mb} MiB \
             (--image-cache-mb), so an uploaded id could not be used: send the image in the chat request \
             itself, or start the server with a larger --image-cache-mb",
            bytes as f64 / f64::from(1 << 20)
        ),
    )
    .with_param("image"))
}

/// `POST /v1/images`: decode, plan and start encoding at once; answer with the id.
async fn upload(
    State(st): State<Arc<AppState>>,
    Extension(room): Extension<Arc<BodyRoom>>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let req: UploadRequest = parse_json(&body(&st, b)?)?;
    let vision =
        st.ready()?.vision.clone().ok_or_else(|| ApiError::from(edgevl_runtime::RuntimeError::NoVision))?;
    let budget = budget(req.detail.as_deref(), req.max_tiles, "image")?;
    let permit = st.admit.clone().try_acquire_owned().map_err(|_| ApiError::busy(1))?;
    room.release();
    let gate =
        st.image_gate.clone().acquire_owned().await.map_err(|_| ApiError::unavailable("shutting down"))?;
    let limits = st.limits;
    let v = vision.clone();
    // The permit and the gate go with the decoding: a client that hangs up drops this handler, and
    // they were released while its decode went on (six such uploads of 8192x8192 PNGs held 1.1 GB).
    let (pending, held) = tokio::task::spawn_blocking(move || {
        let held = (gate, permit);
        let bytes = match parse_url(&req.image, "image")? {
            ImageSource::Inline(bytes) => bytes,
            ImageSource::Uploaded(_) => {
                return Err(
                    ApiError::bad_request("image: upload the image itself, not an id").with_param("image")
                )
            }
        };
        let image = decode(&bytes, "image", &limits)?;
        refuse_uncacheable(&v, v.plan(image.size(), budget)?.image_tokens())?;
        Ok((v.prepare("image", image, budget)?, held))
    })
    .await
    .map_err(|e| ApiError::internal(format!("image preparation failed: {e}")))??;
    let info = pending.info().clone();
    let id = st.uploads.insert(info.clone());
    // Encoding goes on after the answer; the permit and the gate are held until it is done.
    tokio::task::spawn_blocking(move || {
        let _ = vision.wait(&pending);
        drop(held);
    });
    let mut out = plan_json(&info.plan, info.n_tokens as u64);
    out["id"] = json!(id);
    out["object"] = json!("edgevl.image");
    out["url"] = json!(format!("{}{id}", crate::images::UPLOAD_SCHEME));
    out["width"] = json!(info.plan.image.width);
    out["height"] = json!(info.plan.image.height);
    out["cached"] = json!(info.cached);
    Ok(Json(out))
}

/// `GET /v1/edgevl/tiles`: the plan and token cost for an image size, without an image.
async fn tiles(
    State(st): State<Arc<AppState>>,
    q: Result<Query<TilesQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(format!("bad query: {e}")))?;
    let max = st.limits.max_side;
    if q.width == 0 || q.height == 0 || q.width > max || q.height > max {
        return Err(ApiError::bad_request(format!("width and height must be between 1 and {max}")));
    }
    let budget: TileBudget = budget(q.detail.as_deref(), q.max_tiles, "query")?;
    let vision = st.ready.get().and_then(|r| r.vision.clone());
    let size = Size::new(q.width, q.height);
    let plan = match &vision {
        Some(v) => v.plan(size, budget).map_err(|e| ApiError::bad_request(e.to_string()))?,
        None => st.image_config.plan(size, budget).map_err(|e| ApiError::bad_request(e.to_string()))?,
    };
    let mut out = plan_json(&plan, plan.image_tokens());
    out["width"] = json!(q.width);
    out["height"] = json!(q.height);
    out["detail"] = json!(q.detail.as_deref().unwrap_or("auto"));
    Ok(Json(out))
}

/// With `--api-key`, every path but `/` and `/health` needs `Authorization: Bearer KEY`.
async fn auth(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Some(key) = &st.api_key else { return next.run(req).await };
    let path = req.uri().path();
    if path == "/" || path == "/health" || req.method() == Method::OPTIONS {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .unwrap_or("");
    if constant_time_eq(given.as_bytes(), key.as_bytes()) {
        next.run(req).await
    } else {
        ApiError::unauthorized().into_response()
    }
}

/// The token of an `Authorization: Bearer TOKEN` value; the scheme's name is case-insensitive
/// (RFC 7235: `bearer` and `BEARER` were refused).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim_start_matches(' '))
}

/// Byte equality whose time does not depend on where the inputs first differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The room a request's body holds in the server's budget for bodies, released once the request
/// is admitted (from then on the admission limit bounds what requests hold) or answered.
pub struct BodyRoom(std::sync::Mutex<Option<OwnedSemaphorePermit>>);

impl BodyRoom {
    /// Gives the room back.
    pub fn release(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// Reads a request's body before its handler runs. A declared length over the limit is a 413
/// before any byte is read. The body first takes its room in the server's budget for bodies,
/// all at once (its declared length, or the limit when it is chunked), waiting at most the body
/// timeout for it (503 beyond: the server is busy); then it must arrive within the body timeout
/// (408 beyond). Taking the room at once means two bodies never each hold part of what the other
/// waits for.
async fn read_body(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > st.max_body_bytes as u64) {
        return ApiError::too_large(st.max_body_bytes).into_response();
    }
    let (mut parts, body) = req.into_parts();
    // A body of unknown length (chunked) may take up to the limit; a request with neither header
    // has none.
    let size = match declared {
        Some(n) => n as usize,
        None if parts.headers.contains_key(header::TRANSFER_ENCODING) => st.max_body_bytes,
        None => 0,
    };
    let mut room = None;
    if size > 0 {
        let want = u32::try_from(size).unwrap_or(u32::MAX);
        let wait = tokio::time::timeout(st.body_timeout, st.body_budget.clone().acquire_many_owned(want));
        match wait.await {
            Ok(Ok(permit)) => room = Some(permit),
            Ok(Err(_)) => return ApiError::unavailable("shutting down").into_response(),
            Err(_) => return ApiError::busy(1).into_response(),
        }
    }
    let read = tokio::time::timeout(st.body_timeout, collect_body(body, size, st.max_body_bytes));
    let bytes = match read.await {
        Err(_) => return ApiError::request_timeout(st.body_timeout).into_response(),
        Ok(Err(e)) => return e.into_response(),
        Ok(Ok(bytes)) => bytes,
    };
    let room = Arc::new(BodyRoom(std::sync::Mutex::new(room)));
    parts.extensions.insert(room.clone());
    let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    room.release();
    response
}

/// The body's bytes, at most `limit` (`expected` of them reserved).
async fn collect_body(mut body: Body, expected: usize, limit: usize) -> Result<Bytes, ApiError> {
    let mut bytes = Vec::with_capacity(expected.min(limit));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
        let Ok(data) = frame.into_data() else { continue };
        if bytes.len() + data.len() > limit {
            return Err(ApiError::too_large(limit));
        }
        bytes.extend_from_slice(&data);
    }
    Ok(Bytes::from(bytes))
}

/// One stderr line and one metrics count per answer.
async fn log_and_count(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let t0 = Instant::now();
    let method = req.method().clone();
    let path = path_name(req.uri().path());
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    st.metrics.count_request(path, status);
    if path != "/metrics" && path != "/health" {
        eprintln!("edgevl: {method} {path} {status} {:.0} ms", t0.elapsed().as_secs_f64() * 1e3);
    }
    resp
}

#[cfg(test)]
mod tests {
    #[test]
    fn constant_time_eq_compares_bytes() {
        assert!(super::constant_time_eq(b"key", b"key"));
        assert!(!super::constant_time_eq(b"key", b"kez"));
        assert!(!super::constant_time_eq(b"key", b"keys"));
    }
}
