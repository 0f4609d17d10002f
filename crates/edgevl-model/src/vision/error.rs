//! Errors of loading an mmproj (vision tower + projector) file and encoding tiles with it.

use crate::ModelError;
use edgevl_gguf::GgufError;

/// Everything that can go wrong with an mmproj file or an encode call.
#[derive(Debug, thiserror::Error)]
pub enum MmprojError {
    /// The GGUF file is unreadable, or lacks a key or tensor (named in the message), or a
    /// tensor has the wrong shape.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// A tensor type the kernels cannot compute with, or a matrix problem found while loading.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The file's family (projector type, layout) is not one edgevl runs.
    #[error(transparent)]
    Family(#[from] edgevl_arch::family::FamilyError),
    /// A hyper-parameter outside what the encoder supports or inconsistent with another.
    #[error("bad mmproj hyper-parameter {key}: {reason}")]
    BadHparam {
        /// Metadata key (or tensor) concerned.
        key: String,
        /// What is wrong, with the value found and what was expected.
        reason: String,
    },
    /// Tile data of the wrong size, or a zero batch size.
    #[error("bad encoder input: {what}: expected {expected}, found {found}")]
    BadInput {
        /// Which argument.
        what: &'static str,
        /// What was required.
        expected: String,
        /// What was given.
        found: String,
    },
}
