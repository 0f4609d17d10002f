//! `edgevl tokenize`: the token ids of a text, as llama-tokenize prints them.

use anyhow::Context;
use clap::Args;
use edgevl_gguf::GgufFile;
use edgevl_tokenizer::Tokenizer;
use std::path::PathBuf;

/// Arguments of `edgevl tokenize`.
#[derive(Args, Debug)]
pub struct TokenizeArgs {
    /// The model (GGUF) whose tokenizer to use.
    #[arg(short = 'm', long = "model")]
    model: PathBuf,
    /// The text (it may start with '-').
    #[arg(short = 'p', long = "prompt", allow_hyphen_values = true)]
    prompt: String,
    /// Treat special-token text as plain text.
    #[arg(long)]
    no_parse_special: bool,
    /// Do not add BOS/EOS even when the model asks for them.
    #[arg(long)]
    no_bos: bool,
    /// Print a JSON array of ids.
    #[arg(long)]
    json: bool,
}

/// Run `edgevl tokenize`.
pub fn run(a: &TokenizeArgs) -> anyhow::Result<()> {
    let file =
        GgufFile::open(&a.model).with_context(|| format!("cannot load model {}", a.model.display()))?;
    let tok = Tokenizer::from_gguf(file.metadata())
        .with_context(|| format!("cannot build the tokenizer of {}", a.model.display()))?;
    let ids = tok.encode(&a.prompt, !a.no_bos, !a.no_parse_special);
    if a.json {
        println!("{}", serde_json::to_string(&ids)?);
    } else {
        for id in ids {
            // A special token (BOS, <|im_start|>) decodes to no bytes: its text is shown, as
            // llama-tokenize shows it.
            let piece = match tok.token_bytes(id) {
                [] => tok.token_text(id).unwrap_or_default().to_string(),
                bytes => String::from_utf8_lossy(bytes).into_owned(),
            };
            println!("{id:6} -> '{piece}'");
        }
    }
    Ok(())
}
