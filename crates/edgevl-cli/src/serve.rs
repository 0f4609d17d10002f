//! `edgevl serve`: the OpenAI-compatible HTTP server (crate `edgevl-server`; see docs/server.md).

use crate::run::ModelArgs;
use crate::vision_args::VisionArgs;
use clap::Args;
use edgevl_kernels::KernelConfig;
use edgevl_server::{Server, ServerConfig};

/// Arguments of `edgevl serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    vision: VisionArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0 = any free port; the log line names it).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Conversation slots decoded round-robin, each with its own KV cache (the weights are shared).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    parallel: u16,
    /// Requests admitted beyond the busy slots; more get 503 with Retry-After.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    queue: u32,
    /// Require `Authorization: Bearer KEY` on every endpoint but / and /health (or from the
    /// environment, which `ps` does not show).
    #[arg(long, value_name = "KEY", env = "EDGEVL_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Allow cross-origin requests from ORIGIN (`*` for any).
    #[arg(long, value_name = "ORIGIN")]
    cors_origin: Option<String>,
}

/// Run `edgevl serve` until SIGINT or SIGTERM.
pub fn run(a: &ServeArgs, kernels: KernelConfig) -> anyhow::Result<()> {
    let mut session = a.model.session_config(kernels);
    a.vision.apply(&mut session);
    let cfg = ServerConfig {
        session,
        host: a.host.clone(),
        port: a.port,
        parallel: a.parallel.into(),
        queue: a.queue as usize,
        api_key: a.api_key.clone(),
        cors_origin: a.cors_origin.clone(),
        handle_signals: true,
        ..ServerConfig::new(a.model.model.clone())
    };
    let server = Server::start(cfg)?;
    eprintln!("edgevl: listening on http://{} (loading {})", server.addr(), a.model.model.display());
    server.wait()?;
    eprintln!("edgevl: stopped");
    Ok(())
}
