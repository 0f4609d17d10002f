//! Errors of this crate.

use edgevl_gguf::GgufError;

/// Everything that can go wrong while building a tokenizer or rendering a chat template.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A metadata key could not be read (wrong value type, wrong array element type, ...).
    #[error("tokenizer metadata key `{key}`: {source}")]
    Metadata {
        /// The GGUF key.
        key: &'static str,
        /// What the GGUF reader reported.
        #[source]
        source: GgufError,
    },
    /// A required metadata key is absent.
    #[error("tokenizer metadata key `{key}` is missing")]
    MissingKey {
        /// The GGUF key.
        key: &'static str,
    },
    /// `tokenizer.ggml.model` names a tokenizer this crate does not implement.
    #[error(
        "unsupported tokenizer model {model:?} in `tokenizer.ggml.model` (supported: \"gpt2\", \"llama\")"
    )]
    UnsupportedModel {
        /// The value found.
        model: String,
    },
    /// `tokenizer.ggml.pre` names a pre-tokenizer this crate does not implement.
    #[error("unsupported pre-tokenizer {pre:?} in `tokenizer.ggml.pre` (supported: {supported})")]
    UnsupportedPreTokenizer {
        /// The value found.
        pre: String,
        /// The supported names.
        supported: String,
    },
    /// The vocabulary has no tokens.
    #[error("`tokenizer.ggml.tokens` is empty")]
    EmptyVocabulary,
    /// The vocabulary is larger than [`crate::MAX_VOCAB`].
    #[error("`tokenizer.ggml.tokens` has {n} entries, over the limit of {} (MAX_VOCAB)", crate::MAX_VOCAB)]
    VocabularyTooLarge {
        /// The number of tokens.
        n: usize,
    },
    /// A per-token array does not have one entry per token.
    #[error("`{key}` has {found} entries but `tokenizer.ggml.tokens` has {expected}")]
    LengthMismatch {
        /// The GGUF key of the array.
        key: &'static str,
        /// Its length.
        found: usize,
        /// The number of tokens.
        expected: usize,
    },
    /// A chat template failed to parse or render.
    #[error("chat template (`tokenizer.chat_template`): {0:#}")]
    Template(#[from] minijinja::Error),
    /// The chat template is longer than [`crate::MAX_TEMPLATE_BYTES`].
    #[error("chat template (`tokenizer.chat_template`) of {bytes} bytes, more than the {limit} accepted")]
    TemplateTooLarge {
        /// Its length in bytes.
        bytes: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The thread that compiles and renders chat templates could not run.
    #[error("chat template (`tokenizer.chat_template`): its thread failed: {0}")]
    TemplateThread(String),
    /// The chat template's output passed its limit ([`crate::ChatTemplate`] documents it).
    #[error("chat template (`tokenizer.chat_template`): the rendered prompt passed {limit} bytes")]
    TemplateOutputTooLarge {
        /// The limit for this conversation, in bytes.
        limit: usize,
    },
}
