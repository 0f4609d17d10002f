//! `edgevl`: on-device multimodal LLM inference from the command line. stdout carries only the
//! answer or the requested JSON; logs and progress go to stderr.
#![forbid(unsafe_code)]

mod bench;
mod bench_vision;
mod chat;
mod convert;
mod counts;
mod dump;
mod encode_image;
mod gen_random;
mod info;
mod npy;
mod perplexity;
mod progress_bar;
mod run;
mod serve;
mod tiles;
mod tokenize;
mod vision_args;

use clap::{Parser, Subcommand};
use edgevl_kernels::KernelConfig;
use std::process::ExitCode;

/// edgevl — fast multimodal LLM inference on a phone or laptop CPU.
#[derive(Parser)]
#[command(name = "edgevl", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Answer one prompt, streaming the answer to stdout.
    Run(run::RunArgs),
    /// Chat with a model: line editing, history, streamed answers; /image, /reset, /stats, /exit.
    Chat(chat::ChatArgs),
    /// Perplexity of a text file, by llama-perplexity's method.
    Perplexity(perplexity::PerplexityArgs),
    /// Print the token ids of a text.
    Tokenize(tokenize::TokenizeArgs),
    /// Explain the tile grid and image-token cost of an image under each tiling strategy.
    Tiles(tiles::TilesArgs),
    /// Write an image's projected embeddings (tokens x d, float32 .npy) for cross-checks.
    EncodeImage(encode_image::EncodeImageArgs),
    /// Measure prompt and generation speed as llama-bench does, with peak RSS and a bandwidth roofline.
    Bench(bench::BenchArgs),
    /// Write a seeded random-weight model with an exact architecture shape.
    GenRandom(gen_random::GenRandomArgs),
    /// Describe a GGUF file: an LLM's shapes, types, tokenizer and chat template, or an mmproj's
    /// vision family, tower, projector and tiling.
    Info(info::InfoArgs),
    /// Serve the OpenAI chat API (text, images, streaming) over HTTP, with a web page at /.
    Serve(serve::ServeArgs),
    /// Convert a Hugging Face checkpoint to GGUF with a precision scheme (bluelm = the paper's mix).
    Convert(convert::ConvertArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        exit_quietly_on_closed_stdout();
    }
    // The kernel overrides (EDGEVL_MAX_SIMD, EDGEVL_FORCE_SCALAR, EDGEVL_NO_PACK) are read here, once, and passed
    // to the commands that compute as the options of their kernel table.
    let kernels = match KernelConfig::from_vars(|name| std::env::var(name).ok()) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("edgevl: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Chat, convert and serve handle Ctrl-C and SIGTERM themselves, run handles Ctrl-C (it stops
    // the answer and reports); elsewhere a signal ends the process at once, with no part file of
    // an output left behind.
    if !matches!(cli.command, Command::Chat(_) | Command::Convert(_) | Command::Serve(_)) {
        if let Err(e) = end_on_signals(!matches!(cli.command, Command::Run(_))) {
            eprintln!("edgevl: error: cannot install the signal handler: {e}");
            return ExitCode::FAILURE;
        }
    }
    let result = match cli.command {
        Command::Run(a) => run::run(&a, kernels),
        Command::Chat(a) => chat::run(&a, kernels),
        Command::Perplexity(a) => perplexity::run(&a, kernels),
        Command::Tokenize(a) => tokenize::run(&a),
        Command::Tiles(a) => tiles::run(&a),
        Command::EncodeImage(a) => encode_image::run(&a, kernels),
        Command::Bench(a) => bench::run(&a, kernels),
        Command::GenRandom(a) => gen_random::run(&a),
        Command::Info(a) => info::run(&a),
        Command::Serve(a) => serve::run(&a, kernels),
        Command::Convert(a) => convert::run(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A write to a closed stdout that came back as an error (`writeln!`) rather than a
        // `println!` panic ends as quietly as the hook below makes the panic end.
        Err(e) if closed_stdout(&e) => ExitCode::from(141),
        Err(e) => {
            eprintln!("edgevl: error: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// Whether `e` is, or was caused by, a broken pipe (the reader of stdout went away).
fn closed_stdout(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// On SIGTERM, SIGHUP and (with `interrupt`) SIGINT: removes the part files of the outputs
/// being written and ends the process with status 128 + the signal's number, as the signal
/// itself would have.
fn end_on_signals(interrupt: bool) -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGHUP])?;
    if interrupt {
        signals.add_signal(SIGINT)?;
    }
    std::thread::Builder::new().name("edgevl-signals".into()).spawn(move || {
        if let Some(signal) = signals.forever().next() {
            edgevl_gguf::AtomicFile::remove_all_parts();
            std::process::exit(128 + signal);
        }
    })?;
    Ok(())
}

/// The error and its causes joined by ": ", a cause left out when the text before it already
/// ends with it (the library's errors name their cause in their own message too).
fn describe(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.ends_with(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// Lets a closed stdout end the process quietly, as it ends `cat` (`edgevl info F | head -c1`):
/// Rust ignores SIGPIPE, so a print to a closed pipe panics with "failed printing to stdout:
/// Broken pipe"; this hook turns that one panic into exit status 141 (128 + SIGPIPE, what a shell
/// reports for `cat`) and leaves every other panic to the default hook. The server does not
/// install it (its output is logs; a client that hangs up is an error on that connection).
fn exit_quietly_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info)
    }));
}
