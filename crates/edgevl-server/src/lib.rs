//! `edgevl serve`: an OpenAI-compatible HTTP server (axum + tokio) in front of one engine
//! thread that owns the model and `--parallel` conversation slots.
//!
//! * `POST /v1/chat/completions` — text and `image_url` parts (`data:` URIs or base64), JSON or
//!   server-sent events; OpenAI's `detail` (and the extension `max_tiles`) sets each image's
//!   tile budget; `usage.prompt_tokens_details` reports `cached_tokens` and `image_tokens`.
//! * `POST /v1/images` — decode and start encoding an image at once (while the question is
//!   typed); a chat then names it `edgevl-image://ID`.
//! * `GET /v1/edgevl/tiles`, `GET /v1/models`, `GET /health`, `GET /metrics`, and a web page at `/`.
//!
//! Requests reach the engine over a channel; at most `parallel + queue` are admitted at once
//! (others get 503 with `Retry-After`). Every slot is a [`edgevl_runtime::Session`] sharing the
//! weights, thread pool and image embedding cache; a request re-prefills only what differs from
//! the slot's KV cache. Limits and errors: see `docs/server.md`.
//!
//! ```no_run
//! use edgevl_server::{Server, ServerConfig};
//! # fn main() -> Result<(), edgevl_server::ServerError> {
//! let server = Server::start(ServerConfig::new("model.gguf".into()))?;
//! eprintln!("listening on http://{}", server.addr());
//! server.wait()
//! # }
//! ```
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod api;
mod chat;
pub mod engine;
mod error;
pub mod images;
mod listen;
pub mod metrics;
mod routes;
mod state;

pub use error::{ApiError, ServerError};
pub use images::ImageLimits;
pub use listen::ConnLimits;

use edgevl_runtime::{Session, SessionConfig};
use state::{AppState, BodyLimits, Ready};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::oneshot;

/// Everything `edgevl serve` is told.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The LLM (GGUF).
    pub model: PathBuf,
    /// How to load and run it (threads, context, chunk, KV type, mmproj and image settings).
    pub session: SessionConfig,
    /// Address to listen on.
    pub host: String,
    /// Port (0 = any free one; see [`Server::addr`]).
    pub port: u16,
    /// Conversation slots decoded round-robin (each has its own KV cache).
    pub parallel: usize,
    /// Requests admitted beyond the busy slots before answering 503.
    pub queue: usize,
    /// Bearer token every endpoint but `/` and `/health` requires.
    pub api_key: Option<String>,
    /// `Access-Control-Allow-Origin` (`*` for any).
    pub cors_origin: Option<String>,
    /// Largest request body (413 beyond).
    pub max_body_bytes: usize,
    /// Longest time a request body may wait for its room in the budget (503 beyond), and then
    /// take to arrive (408 beyond; default 60 s).
    pub body_timeout: Duration,
    /// Request bodies held at once, in bytes, all requests together (default 8 bodies of the
    /// largest size): a body takes its room whole (its declared length, or the largest size
    /// when chunked) before it is read, and gives it back once its request is admitted.
    pub max_buffered_body_bytes: usize,
    /// Connections open at once, and how long a request's headers may take.
    pub conn_limits: ConnLimits,
    /// Image limits.
    pub image_limits: ImageLimits,
    /// Stop on SIGINT / SIGTERM (after draining requests in flight).
    pub handle_signals: bool,
    /// How long a shutdown waits for requests in flight; then it stops them, and waits up to 2 s
    /// more for their cut-short endings (an error and `[DONE]`, or a 503) to be sent.
    pub drain_timeout: Duration,
}

impl ServerConfig {
    /// Defaults for `model`: 127.0.0.1:8080, one slot, a queue of 16, 32 MiB bodies.
    pub fn new(model: PathBuf) -> Self {
        ServerConfig {
            model,
            session: SessionConfig::default(),
            host: "127.0.0.1".into(),
            port: 8080,
            parallel: 1,
            queue: 16,
            api_key: None,
            cors_origin: None,
            max_body_bytes: 32 << 20,
            body_timeout: Duration::from_secs(60),
            max_buffered_body_bytes: 8 * (32 << 20),
            conn_limits: ConnLimits::default(),
            image_limits: ImageLimits::default(),
            handle_signals: false,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// A running server (HTTP on its own thread with a tokio runtime, the engine on another).
/// Dropping it shuts it down.
pub struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), ServerError>>>,
}

impl Server {
    /// Binds the address and starts serving; the model loads in the background (`/health`
    /// answers 503 until it is loaded; a model that fails to load stops the server with the
    /// error, see [`Server::wait`]).
    pub fn start(cfg: ServerConfig) -> Result<Server, ServerError> {
        if cfg.parallel == 0 || cfg.queue == 0 {
            return Err(ServerError::BadSetting("--parallel and --queue must be at least 1".into()));
        }
        // An empty key would read as "no key" to a script whose variable was unset: refused.
        if cfg.api_key.as_deref().is_some_and(|k| k.trim().is_empty()) {
            return Err(ServerError::BadSetting(
                "the API key is empty; give a key, or leave --api-key out to serve without one".into(),
            ));
        }
        let io = |what: String| move |source| ServerError::Io { what, source };
        let listener = std::net::TcpListener::bind((cfg.host.as_str(), cfg.port))
            .map_err(io(format!("cannot listen on {}:{}", cfg.host, cfg.port)))?;
        listener.set_nonblocking(true).map_err(io("cannot set up the socket".into()))?;
        let addr = listener.local_addr().map_err(io("cannot read the bound address".into()))?;
        let (stop_tx, stop_rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("edgevl-http".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .map_err(io("cannot start the async runtime".into()))?;
                rt.block_on(serve(cfg, listener, stop_rx))
            })
            .map_err(io("cannot start the server thread".into()))?;
        Ok(Server { addr, stop: Some(stop_tx), thread: Some(thread) })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drains requests in flight and stops.
    pub fn shutdown(mut self) -> Result<(), ServerError> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.join()
    }

    /// Runs until a signal (with [`ServerConfig::handle_signals`]) or a fatal error.
    pub fn wait(mut self) -> Result<(), ServerError> {
        self.join()
    }

    fn join(&mut self) -> Result<(), ServerError> {
        match self.thread.take().map(|t| t.join()) {
            None => Ok(()),
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(ServerError::Engine("the server thread panicked".into())),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = self.join();
    }
}

/// How long the server, stopping after its drain timeout, waits for the replies it cut short to be sent.
const CUT_SHORT_GRACE: Duration = Duration::from_secs(2);

/// Serves until `stop`, a signal or an engine failure; then drains and joins the engine.
async fn serve(
    cfg: ServerConfig,
    listener: std::net::TcpListener,
    stop: oneshot::Receiver<()>,
) -> Result<(), ServerError> {
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|source| ServerError::Io { what: "cannot use the socket".into(), source })?;
    let (jobs_tx, jobs_rx) = std::sync::mpsc::channel();
    let (fail_tx, fail_rx) = oneshot::channel::<ServerError>();
    let ready = Arc::new(OnceLock::new());
    let metrics = Arc::new(metrics::Metrics::default());
    let stop_engine = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let engine = {
        let (ready, metrics, cfg) = (ready.clone(), metrics.clone(), cfg.clone());
        let engine_stop = stop_engine.clone();
        std::thread::Builder::new()
            .name("edgevl-engine".into())
            .spawn(move || {
                let session = match Session::load(&cfg.model, &cfg.session) {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = fail_tx.send(ServerError::Load(e));
                        return;
                    }
                };
                if session.tokenizer().pre_tokenizer_defaulted() {
                    eprintln!("edgevl: {}", edgevl_tokenizer::PRE_DEFAULTED_WARNING);
                }
                let model_id =
                    cfg.model.file_stem().map_or("model".into(), |s| s.to_string_lossy().into_owned());
                eprintln!(
                    "edgevl: loaded {} in {:.0} ms (ctx {}, {} slot(s){})",
                    cfg.model.display(),
                    session.load_ms(),
                    session.n_ctx(),
                    cfg.parallel,
                    if session.has_vision() { ", with vision" } else { "" }
                );
                let _ = ready.set(Ready {
                    model_id,
                    vision: session.image_encoder(),
                    n_vocab: session.tokenizer().n_vocab(),
                    n_ctx: session.n_ctx(),
                });
                if let Err(e) = engine::run(session, cfg.parallel, jobs_rx, metrics, &engine_stop) {
                    let _ = fail_tx.send(ServerError::Engine(e.message));
                }
            })
            .map_err(|source| ServerError::Io { what: "cannot start the engine thread".into(), source })?
    };
    let st = Arc::new(AppState::new(
        ready,
        jobs_tx,
        metrics,
        cfg.image_limits,
        cfg.session.image.clone(),
        BodyLimits {
            max_bytes: cfg.max_body_bytes,
            timeout: cfg.body_timeout,
            buffered_bytes: cfg.max_buffered_body_bytes,
        },
        cfg.api_key.clone(),
        cfg.parallel,
        cfg.queue,
    ));
    let app = routes::router(st.clone(), cfg.cors_origin.as_deref())?;
    let failure = Arc::new(std::sync::Mutex::new(None));
    let stopping = Arc::new(tokio::sync::Notify::new());
    let shutdown = {
        let (failure, stopping, signals) = (failure.clone(), stopping.clone(), cfg.handle_signals);
        async move {
            let mut fail_rx = fail_rx;
            tokio::select! {
                _ = stop => {}
                _ = signal(signals) => eprintln!("edgevl: signal received; draining requests in flight"),
                r = &mut fail_rx => {
                    let e = r.unwrap_or_else(|_| ServerError::Engine("the engine thread ended".into()));
                    *failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                }
            }
            stopping.notify_one();
        }
    };
    let served = listen::serve(listener, app, cfg.conn_limits, shutdown);
    let mut served = std::pin::pin!(served);
    let drain = cfg.drain_timeout;
    let drained = tokio::select! {
        _ = &mut served => true,
        _ = async {
            stopping.notified().await;
            // A second Ctrl-C or SIGTERM ends the drain at once, as llama-server's does.
            tokio::select! {
                _ = tokio::time::sleep(drain) => {
                    eprintln!("edgevl: requests still in flight after {drain:?}; stopping anyway");
                }
                _ = signal(cfg.handle_signals) => {
                    eprintln!("edgevl: a second signal; stopping the requests in flight now");
                }
            }
        } => false,
    };
    // Drained, or the drain timed out (a connection still open, a client that never finished
    // its request, holds a router and its job sender, so the channel alone may never close): the
    // engine is told to stop, and the requests still in flight to end (a prefill in progress
    // stops at its next chunk).
    stop_engine.store(true, std::sync::atomic::Ordering::Relaxed);
    st.cancel_all();
    let _ = tokio::task::spawn_blocking(move || engine.join()).await;
    if !drained {
        // The replies cut short end with an error and `[DONE]` (a stream) or a 503: a moment to send them.
        let _ = tokio::time::timeout(CUT_SHORT_GRACE, &mut served).await;
    }
    let failed = failure.lock().unwrap_or_else(|e| e.into_inner()).take();
    failed.map_or(Ok(()), Err)
}

/// Resolves on SIGINT or SIGTERM when `enabled`, never otherwise.
async fn signal(enabled: bool) {
    if !enabled {
        return std::future::pending().await;
    }
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
