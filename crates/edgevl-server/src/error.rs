//! Errors: [`ServerError`] stops the server (bad settings, a model that does not load, a port
//! that cannot be bound); [`ApiError`] answers one request in OpenAI's shape
//! `{"error": {"message", "type", "param", "code"}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Why the server could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A setting is out of range.
    #[error("bad setting: {0}")]
    BadSetting(String),
    /// The address could not be bound or the server failed while running.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The model (or mmproj) could not be loaded.
    #[error("cannot load the model: {0}")]
    Load(#[from] edgevl_runtime::RuntimeError),
    /// The engine thread stopped unexpectedly.
    #[error("the engine thread stopped: {0}")]
    Engine(String),
}

/// One request's failure: an HTTP status and OpenAI's error body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Human-readable message (names the offending field or message part).
    pub message: String,
    /// OpenAI's `type`: `invalid_request_error`, `authentication_error`, `server_error`, ...
    pub kind: &'static str,
    /// OpenAI's `code` (`null` when `None`).
    pub code: Option<&'static str>,
    /// OpenAI's `param`: the request field at fault (`temperature`, `messages[0].content[1]`),
    /// `null` when no one field is.
    pub param: Option<String>,
    /// Seconds for a `Retry-After` header (503s).
    pub retry_after: Option<u32>,
}

impl ApiError {
    fn new(
        status: StatusCode,
        kind: &'static str,
        code: Option<&'static str>,
        message: impl Into<String>,
    ) -> Self {
        ApiError { status, message: message.into(), kind, code, param: None, retry_after: None }
    }

    /// The same error, naming `param` as the request field at fault.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// 400 `invalid_request_error`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", None, message)
    }

    /// 400 with a specific `code`.
    pub fn bad_request_code(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", Some(code), message)
    }

    /// 401 `invalid_api_key`.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            Some("invalid_api_key"),
            "missing or wrong API key: send the header `Authorization: Bearer KEY`",
        )
    }

    /// 405 for a method an endpoint does not take.
    pub fn method_not_allowed(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            Some("method_not_allowed"),
            format!("{path} does not take {method}"),
        )
    }

    /// 404 for a path that is no endpoint.
    pub fn not_found(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("not_found"),
            format!("no endpoint {path}"),
        )
    }

    /// 404 for a model id this server does not serve (OpenAI's `model_not_found`).
    pub fn model_not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("model_not_found"),
            format!("the model {id:?} does not exist: this server serves the one GET /v1/models lists"),
        )
    }

    /// 408: the body took too long to arrive.
    pub fn request_timeout(after: std::time::Duration) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request_error",
            Some("request_timeout"),
            format!("the request body did not arrive within {} s", after.as_secs()),
        )
    }

    /// 413: the body is over the limit.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            Some("request_too_large"),
            format!("the request body is over the limit of {limit} bytes"),
        )
    }

    /// 503 with `Retry-After`: every slot and queue place is taken.
    pub fn busy(retry_after: u32) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            Some("server_busy"),
            "the server is busy: every slot and queue place is taken; retry later",
        );
        e.retry_after = Some(retry_after);
        e
    }

    /// 503 while the model loads or the server shuts down.
    pub fn unavailable(message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", Some("unavailable"), message);
        e.retry_after = Some(1);
        e
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", None, message)
    }

    /// The JSON body `{"error": {...}}`.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl From<edgevl_runtime::RuntimeError> for ApiError {
    fn from(e: edgevl_runtime::RuntimeError) -> Self {
        use edgevl_runtime::RuntimeError as R;
        let e = e.against_whole_context();
        match &e {
            // The runtime's own messages advise a terminal's user (`/reset`, `-c`) and count from
            // what the cache already holds, which for the server is another request's prefix; a
            // client of the API sends whole prompts and can only shorten them.
            R::ContextFull { needed, n_ctx, .. } => ApiError::bad_request_code(
                "context_length_exceeded",
                format!(
                    "the prompt is {needed} tokens, more than the server's {n_ctx}-token context; shorten the \
                     conversation or send fewer image tiles"
                ),
            ),
            R::PromptTooLong { at_least, n_ctx, .. } => ApiError::bad_request_code(
                "context_length_exceeded",
                format!(
                    "the prompt needs at least {at_least} tokens, more than the server's {n_ctx}-token context; \
                     shorten it"
                ),
            ),
            R::NoVision => ApiError::bad_request_code(
                "images_not_supported",
                "this server has no vision encoder: start it with --mmproj to send images",
            ),
            R::BadInput(_) | R::Image(_) | R::ImageEncode { .. } | R::BadSetting(_) | R::Tokenizer(_) => {
                ApiError::bad_request(e.to_string())
            }
            _ => ApiError::internal(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}
