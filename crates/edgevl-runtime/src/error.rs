//! Errors of the runtime.

/// Everything that can stop a run.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The model file could not be read.
    #[error(transparent)]
    Gguf(#[from] edgevl_gguf::GgufError),
    /// The model could not be built or evaluated.
    #[error(transparent)]
    Model(#[from] edgevl_model::ModelError),
    /// The tokenizer or chat template failed.
    #[error(transparent)]
    Tokenizer(#[from] edgevl_tokenizer::TokenizerError),
    /// The prompt does not fit the context.
    #[error("the prompt has {n_prompt} tokens but the context holds {n_ctx}; shorten the prompt or raise -c (the model was trained with {n_ctx_train})")]
    PromptTooLong {
        /// Prompt tokens.
        n_prompt: usize,
        /// Context size in use.
        n_ctx: usize,
        /// The model's training context.
        n_ctx_train: usize,
    },
    /// Perplexity needs at least two chunks' worth of text.
    #[error("the text has {n_tokens} tokens; perplexity with -c {n_ctx} needs at least {needed} (2 * ctx)")]
    TextTooShort {
        /// Tokens in the text.
        n_tokens: usize,
        /// Chunk size.
        n_ctx: usize,
        /// Tokens needed.
        needed: usize,
    },
    /// A setting is out of range.
    #[error("bad setting: {0}")]
    BadSetting(String),
}
