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
    /// The input of a turn does not fit what is left of the context.
    #[error("the input needs {needed} more tokens but only {left} of the {n_ctx}-token context are left; {}use a larger context (-c, or ctx= in Python; the model was trained with {n_ctx_train})", if left < n_ctx { "start a new conversation (/reset in chat, reset() in Python), shorten the input, or " } else { "shorten the input or " })]
    ContextFull {
        /// Positions the turn would add after the part reused from the cache.
        needed: usize,
        /// Positions left in the context after that reused part.
        left: usize,
        /// Context size in use.
        n_ctx: usize,
        /// The model's training context.
        n_ctx_train: usize,
    },
    /// The input is so long that it cannot fit the context whatever its tokens turn out to be
    /// (found before its images are waited for or its text tokenised).
    #[error("the input needs at least {at_least} tokens, more than the {n_ctx}-token context; shorten it, or use a larger context (-c, or ctx= in Python; the model was trained with {n_ctx_train})")]
    PromptTooLong {
        /// A lower bound on its tokens: the text's bytes over the most a token stands for,
        /// plus its images' tokens.
        at_least: usize,
        /// Context size in use.
        n_ctx: usize,
        /// The model's training context.
        n_ctx_train: usize,
    },
    /// The caller's cancel flag was set during a prefill.
    #[error("cancelled")]
    Cancelled,
    /// The input cannot be run (empty, or a ragged embedding block).
    #[error("bad input: {0}")]
    BadInput(String),
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
    /// The image could not be read, decoded or planned.
    #[error(transparent)]
    Image(#[from] edgevl_vision::VisionError),
    /// The mmproj file could not be loaded or the encoder rejected its input.
    #[error(transparent)]
    Mmproj(#[from] edgevl_model::vision::MmprojError),
    /// The projector's output width is not the LLM's embedding width.
    #[error("mmproj {mmproj} projects to {projector}-wide embeddings, but the LLM's embeddings are {llm} wide; pair it with an LLM of width {projector}")]
    WidthMismatch {
        /// The mmproj file.
        mmproj: String,
        /// The projector's output width.
        projector: usize,
        /// The LLM's embedding width.
        llm: usize,
    },
    /// The model's token embedding and its tokenizer disagree on the vocabulary's size.
    #[error("the model's token embedding has {model} rows but its tokenizer has {tokenizer} tokens (a malformed file: llama.cpp refuses it too)")]
    VocabMismatch {
        /// Rows of `token_embd` (the logits' width).
        model: usize,
        /// Tokens of `tokenizer.ggml.tokens`.
        tokenizer: usize,
    },
    /// An image was given to a session without a vision encoder.
    #[error("no vision encoder is loaded: load the model with an mmproj file (--mmproj, or mmproj= in Python) to use images")]
    NoVision,
    /// Encoding an image failed (in the background encoder).
    #[error("cannot encode image {image}: {message}")]
    ImageEncode {
        /// The image's label.
        image: String,
        /// What went wrong.
        message: String,
    },
    /// A setting is out of range.
    #[error("bad setting: {0}")]
    BadSetting(String),
}

impl RuntimeError {
    /// For a caller that sends whole conversations (an API's stateless chat): a full context
    /// counted from the start of the context, with all of it left, not from the prefix a reused
    /// KV cache happened to hold (which gave the same request other numbers, and advice to start
    /// a new conversation). Other errors are returned as they are.
    pub fn against_whole_context(self) -> Self {
        match self {
            RuntimeError::ContextFull { needed, left, n_ctx, n_ctx_train } => RuntimeError::ContextFull {
                needed: needed.saturating_add(n_ctx.saturating_sub(left)),
                left: n_ctx,
                n_ctx,
                n_ctx_train,
            },
            other => other,
        }
    }
}
