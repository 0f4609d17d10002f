//! Tokenizers and chat templates built from GGUF metadata, matching llama.cpp.
//!
//! * [`Tokenizer`]: byte-level BPE (`tokenizer.ggml.model = "gpt2"`, e.g. SmolLM2, Qwen2,
//!   LLaMA-3) and SentencePiece-style (`"llama"`, e.g. LLaMA-2), producing the same ids as
//!   llama.cpp's `llama_tokenize` and the same bytes as `llama_token_to_piece`. Pre-tokenizers
//!   (`tokenizer.ggml.pre`): `default` (also when absent), `gpt-2`, `llama3` / `llama-v3` /
//!   `llama-bpe`, `smollm`, `starcoder`, `qwen2`, `deepseek-r1-qwen`. Their splitting rules are
//!   hand-written to reproduce llama.cpp's matchers exactly, on Unicode 15.1 categories (the
//!   tables llama.cpp uses), rather than run through a regex engine.
//! * [`StreamDecoder`]: turns generated tokens into complete UTF-8 text one at a time.
//! * [`ChatTemplate`]: `tokenizer.chat_template` rendered with minijinja the way
//!   transformers' `apply_chat_template` does, with a ChatML fallback.
//!
//! ```no_run
//! use edgevl_gguf::GgufFile;
//! use edgevl_tokenizer::{ChatMessage, ChatTemplate, StreamDecoder, Tokenizer};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let file = GgufFile::open("model.gguf")?;
//! let tok = Tokenizer::from_gguf(file.metadata())?;
//! let template = match ChatTemplate::from_gguf_with_tokenizer(file.metadata(), &tok)? {
//!     Some(t) => t,
//!     None => {
//!         eprintln!("warning: the model has no chat template; using ChatML");
//!         ChatTemplate::chatml()
//!     }
//! };
//! let prompt = template.render(&[ChatMessage::new("user", "Hi!")], true)?;
//! // Like llama.cpp's chat mode: BOS per metadata, special tokens in the prompt parsed.
//! let ids = tok.encode(&prompt, true, true);
//! let mut stream = StreamDecoder::new();
//! for &id in &ids {
//!     if tok.is_eog(id) {
//!         break;
//!     }
//!     print!("{}", stream.push(&tok, id));
//! }
//! print!("{}", stream.finish());
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod bpe;
mod chat;
mod config;
mod datefmt;
mod error;
mod merge;
mod pieces;
mod pretokenize;
mod special;
mod spm;
mod stream;
mod tojson;
mod tokenizer;
mod unicode;
mod vocab;

pub use chat::{
    ChatMessage, ChatTemplate, ContentForm, MAX_TEMPLATE_BYTES, MAX_TEMPLATE_COUNT, MAX_TEMPLATE_PAD,
    TEMPLATE_FUEL_BASE, TEMPLATE_FUEL_PER_MESSAGE, TEMPLATE_OUTPUT_BASE, TEMPLATE_OUTPUT_FACTOR,
};
pub use error::TokenizerError;
pub use stream::StreamDecoder;

/// Most tokens a vocabulary may have (2^22; published models have at most 262,144). Each token
/// costs the tokenizer a few of its own allocations whatever its length in the file (an empty
/// token is renamed `[EMPTY_i]`), so the count is bounded before anything is built.
pub const MAX_VOCAB: usize = 1 << 22;
pub use tokenizer::Tokenizer;

/// The warning for a model whose file names no pre-tokenizer ([`Tokenizer::pre_tokenizer_defaulted`]).
pub const PRE_DEFAULTED_WARNING: &str = "the model's file has no tokenizer.ggml.pre: using llama.cpp's default \
     pre-tokenizer; generation quality may be degraded (convert the model again with a converter that knows its tokenizer)";

/// Whether a byte-level BPE tokenizer whose `tokenizer.ggml.pre` is `name` can be built: `Ok`,
/// or the error naming every supported name (the converter checks the name it would write).
pub fn check_pre_tokenizer(name: &str) -> Result<(), TokenizerError> {
    bpe::PreTokenizer::from_name(Some(name)).map(drop)
}
