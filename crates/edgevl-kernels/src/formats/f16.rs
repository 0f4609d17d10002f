//! F16 weights with f16 activations (ggml's `vec_dot_type` for F16 is F16).

use super::{
    assert_block_layout, blocks_as_bytes, f16_to_f32, f16_to_f32_slice, f32_to_f16, f32_to_f16_slice,
    ActFormat, Block, WeightFormat,
};
use crate::dtype::{DType, VecDotType};

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon;

/// One f16, little-endian.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlockF16 {
    /// The value's bytes.
    pub bits: [u8; 2],
}
assert_block_layout!(BlockF16, 2);
// SAFETY: repr(C) byte array: alignment 1, no padding, every bit pattern valid.
unsafe impl Block for BlockF16 {
    const QK: usize = 1;
}

impl BlockF16 {
    /// The value as f32 (exact).
    #[inline(always)]
    pub fn get(self) -> f32 {
        f16_to_f32(self.bits)
    }
}

/// F16 weights.
pub struct F16;

impl WeightFormat for F16 {
    const DTYPE: DType = DType::F16;
    type W = BlockF16;
    type A = BlockF16;
    fn dequantize(w: &[BlockF16], out: &mut [f32]) {
        // The slice conversion (F16C where the CPU has it): the float panel GEMM widens the ViT's F16 matrices
        // through here, where a value at a time cost 3% of an image's encoding.
        let (halves, _) = blocks_as_bytes(w).as_chunks::<2>();
        let n = halves.len().min(out.len());
        f16_to_f32_slice(&halves[..n], &mut out[..n]);
    }
    fn vec_dot(w: &[BlockF16], a: &[BlockF16]) -> f32 {
        // ggml's scalar f16 dot accumulates products of the f32 values in double.
        let s: f64 = w.iter().zip(a).map(|(x, y)| f64::from(x.get() * y.get())).sum();
        s as f32
    }
}

impl ActFormat for F16 {
    const TYPE: VecDotType = VecDotType::F16;
    type A = BlockF16;
    fn quantize(x: &[f32], out: &mut [BlockF16]) {
        // SAFETY: `BlockF16` is repr(C) around one `[u8; 2]` (size 2, alignment 1, checked by
        // `assert_block_layout!`), so a slice of it is a slice of `[u8; 2]` of the same length.
        let bytes = unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr().cast::<[u8; 2]>(), out.len()) };
        f32_to_f16_slice(&x[..out.len()], bytes);
    }
}

/// Rounds f32 values to f16 (nearest even).
pub fn quantize_ref(x: &[f32]) -> Vec<BlockF16> {
    x.iter().map(|v| BlockF16 { bits: f32_to_f16(*v) }).collect()
}
