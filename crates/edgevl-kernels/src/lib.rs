//! edgevl-kernels: quantised block formats, dot products, matrix products, a persistent thread pool, and the
//! element-wise transformer ops ([`ops`]). Numerics follow llama.cpp's CPU backend (ggml-cpu): activations are
//! converted to each weight type's `vec_dot_type` with ggml's x86 rounding and the integer dot products are exact.
//!
//! Every SIMD kernel has a scalar twin; the table used is chosen once at run time ([`dispatch::kernels`]).
#![warn(missing_docs)]

#[cfg(target_arch = "aarch64")]
mod aarch64;
pub mod attention;
mod buffer;
pub mod dispatch;
pub mod dtype;
pub mod error;
pub mod fgemm;
pub mod formats;
pub mod matmul;
pub mod ops;
pub mod packed;
pub mod pool;
pub mod probe;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use dispatch::{kernels, Kernels, SimdLevel};
pub use dtype::{DType, VecDotType};
pub use error::KernelError;
pub use formats::quantize_ref;
pub use matmul::{
    dequantize_row, matmul, matmul_many, matmul_many_with, matmul_with, try_matmul, MatmulScratch, WeightRef,
    MAX_MANY,
};
pub use pool::ThreadPool;
