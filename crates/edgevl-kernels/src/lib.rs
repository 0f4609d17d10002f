//! edgevl-kernels: quantised block formats, dot products, matrix products, a persistent thread pool, and the
//! element-wise transformer ops ([`ops`]); and [`heap`], the C allocator's count of bytes in use (the server's
//! leak check). Numerics follow llama.cpp's CPU backend (ggml-cpu): activations are
//! converted to each weight type's `vec_dot_type` with ggml's x86 rounding and the integer dot products are exact.
//!
//! Every kernel lives in one typed table, [`Kernels`], built once from the CPU's features and a [`KernelConfig`]
//! (the run-time overrides, read by the program's edge) and passed explicitly to whatever computes: see
//! [`dispatch`]. Every SIMD kernel has a scalar twin it is tested against.
#![warn(missing_docs)]
#![warn(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

#[cfg(target_arch = "aarch64")]
mod aarch64;
pub mod attention;
mod buffer;
pub mod dispatch;
pub mod dtype;
pub mod entry;
pub mod error;
pub mod fgemm;
pub mod formats;
pub mod fpanel;
pub mod gelu;
pub mod heap;
pub mod matmul;
pub mod ops;
pub mod packed;
pub mod pool;
pub mod probe;
pub mod sgemm;
pub mod softmax;
pub mod transpose;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use attention::AttentionKernels;
pub use dispatch::{FormatKernels, KernelConfig, Kernels, Quantizer, SimdLevel};
pub use dtype::{DType, VecDotType};
pub use error::KernelError;
pub use formats::quantize_ref;
pub use gelu::Gelu;
pub use matmul::{matmul, matmul_many, matmul_many_biased, try_matmul, MatmulScratch, WeightRef, MAX_MANY};
pub use pool::ThreadPool;
pub use sgemm::{Sgemm, SgemmKernel};
