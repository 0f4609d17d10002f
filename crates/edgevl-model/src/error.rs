//! Errors of model loading and evaluation.

use edgevl_gguf::GgufError;

/// Everything that can go wrong while loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The GGUF file itself is unreadable or lacks a key/tensor.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// `general.architecture` names a model family edgevl does not implement.
    #[error("unsupported architecture '{0}' (supported: llama, qwen2)")]
    UnsupportedArchitecture(String),
    /// An mmproj (architecture `clip`) given where a language model was expected.
    #[error("this is an mmproj (vision encoder) file, not a language model: give it with --mmproj, and the language model's file with -m (--model)")]
    MmprojAsModel,
    /// A tensor is stored in a type the kernels cannot compute with.
    #[error("tensor '{tensor}' has type {ggml_type}, which edgevl cannot compute with (supported: F32, F16, BF16, Q8_0, Q5_0, Q4_0, Q4_1, Q4_K, Q6_K)")]
    UnsupportedTensorType {
        /// Tensor name.
        tensor: String,
        /// The GGML type name found.
        ggml_type: String,
    },
    /// A tensor whose shape or bytes the kernels refuse (or cannot repack).
    #[error("tensor '{tensor}': {source}")]
    Tensor {
        /// Tensor name.
        tensor: String,
        /// What the kernels found.
        #[source]
        source: edgevl_kernels::KernelError,
    },
    /// Hyper-parameters are inconsistent or outside what the engine supports.
    #[error("bad hyper-parameters: {0}")]
    BadHparams(String),
    /// A batch would write past the end of the KV cache.
    #[error("context overflow: {needed} positions needed but the context holds {n_ctx} ({used} used)")]
    ContextOverflow {
        /// Positions the batch needs in total.
        needed: usize,
        /// Positions already filled.
        used: usize,
        /// Context size.
        n_ctx: usize,
    },
    /// A token id outside the vocabulary.
    #[error("token id {id} is outside the vocabulary of {n_vocab} tokens")]
    TokenOutOfRange {
        /// The offending id.
        id: u32,
        /// Vocabulary size.
        n_vocab: usize,
    },
    /// Input embeddings of the wrong width or a batch larger than the run state allows.
    #[error("bad input: {0}")]
    BadInput(String),
    /// A buffer the memory cannot hold: more than the system has available, or refused by the
    /// allocator (a process limit).
    #[error("not enough memory for {what}: it needs {} MiB, {}; {hint}", needed >> 20, match available {
        Some(a) => format!(
            "and {} MiB are available, of which {} MiB may hold it (a tenth, at least 256 MiB, is kept for the weights and scratch)",
            a >> 20,
            crate::kv_cache::usable_memory(*a) >> 20
        ),
        None => "which the allocator refused".into(),
    })]
    OutOfMemory {
        /// What the memory was for.
        what: String,
        /// Bytes it needs.
        needed: u64,
        /// Bytes that were available, when known.
        available: Option<u64>,
        /// What to do about it.
        hint: String,
    },
}
