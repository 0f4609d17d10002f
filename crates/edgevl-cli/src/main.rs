//! `edgevl`: on-device multimodal LLM inference from the command line. stdout carries only the
//! answer or the requested JSON; logs and progress go to stderr.

mod perplexity;
mod run;
mod tiles;
mod tokenize;

use clap::{Parser, Subcommand};
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
    /// Perplexity of a text file, by llama-perplexity's method.
    Perplexity(perplexity::PerplexityArgs),
    /// Print the token ids of a text.
    Tokenize(tokenize::TokenizeArgs),
    /// Explain the tile grid and image-token cost of an image under each tiling strategy.
    Tiles(tiles::TilesArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => run::run(&a),
        Command::Perplexity(a) => perplexity::run(&a),
        Command::Tokenize(a) => tokenize::run(&a),
        Command::Tiles(a) => tiles::run(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edgevl: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
