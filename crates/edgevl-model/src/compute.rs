//! What every parallel computation of the model needs together: the kernel table the model was loaded with and the
//! thread pool of the caller.

use edgevl_kernels::{Kernels, ThreadPool};

/// The kernel table and the thread pool of one forward pass.
#[derive(Clone, Copy)]
pub(crate) struct Compute<'a> {
    /// The model's kernel table.
    pub kernels: &'a Kernels,
    /// The caller's pool.
    pub pool: &'a ThreadPool,
}
