//! Block formats: one file per format with its `#[repr(C)]` block struct, reference quantiser, dequantiser and
//! scalar dot product; SIMD versions live beside it per ISA (`<format>/avx2.rs`, ...).
//!
//! Block structs hold only byte arrays (alignment 1, every bit pattern valid), so any byte slice of whole blocks can
//! be viewed as blocks without copying ([`as_blocks`]).

pub mod bf16;
pub mod f16;
pub mod f32;
pub mod q4_0;
pub mod q4_1;
pub mod q4_k;
pub mod q5_0;
pub mod q6_k;
pub mod q8_0;
pub mod q8_1;
pub mod q8_k;

use crate::dtype::{DType, VecDotType};

/// A quantisation block that can be viewed in place from bytes.
///
/// # Safety
/// Implementors must be `#[repr(C)]`, have alignment 1, no padding, and accept every bit pattern.
pub unsafe trait Block: Copy + 'static {
    /// Elements per block.
    const QK: usize;
}

/// Views whole blocks of `bytes` as `&[B]` (a trailing partial block is not included).
pub fn as_blocks<B: Block>(bytes: &[u8]) -> &[B] {
    let n = bytes.len() / std::mem::size_of::<B>();
    // SAFETY: `B: Block` has alignment 1, no padding and no invalid bit patterns; `n * size_of::<B>() <= len`.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<B>(), n) }
}

/// Views whole blocks of `bytes` as `&mut [B]` (a trailing partial block is not included).
pub fn as_blocks_mut<B: Block>(bytes: &mut [u8]) -> &mut [B] {
    let n = bytes.len() / std::mem::size_of::<B>();
    // SAFETY: as in `as_blocks`; the exclusive borrow of `bytes` is carried over.
    unsafe { std::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<B>(), n) }
}

/// The bytes of a block slice.
pub fn blocks_as_bytes<B: Block>(blocks: &[B]) -> &[u8] {
    // SAFETY: `B: Block` has no padding, so every byte of the slice is initialised.
    unsafe { std::slice::from_raw_parts(blocks.as_ptr().cast::<u8>(), std::mem::size_of_val(blocks)) }
}

/// Element encodings of the SIMD float dot kernels (their const parameter `K`): f32.
pub(crate) const FLOAT_F32: u8 = 0;
/// f16 elements.
pub(crate) const FLOAT_F16: u8 = 1;
/// bf16 elements.
pub(crate) const FLOAT_BF16: u8 = 2;

/// Element `e` of a row of float encoding `K` (raw little-endian bytes) as f32: the float dot
/// kernels' scalar tail.
#[inline]
pub(crate) fn float_elem<const K: u8>(s: &[u8], e: usize) -> f32 {
    match K {
        FLOAT_F32 => f32::from_le_bytes([s[4 * e], s[4 * e + 1], s[4 * e + 2], s[4 * e + 3]]),
        FLOAT_F16 => f16_to_f32([s[2 * e], s[2 * e + 1]]),
        _ => f32::from_bits(u32::from(u16::from_le_bytes([s[2 * e], s[2 * e + 1]])) << 16),
    }
}

/// Asserts at compile time that a block type has the given size and alignment 1.
macro_rules! assert_block_layout {
    ($t:ty, $bytes:expr) => {
        const _: () = assert!(std::mem::size_of::<$t>() == $bytes && std::mem::align_of::<$t>() == 1);
    };
}
pub(crate) use assert_block_layout;

/// A weight format: its blocks, the activation blocks it is multiplied with, and its scalar kernels.
pub trait WeightFormat {
    /// The storage type.
    const DTYPE: DType;
    /// Weight block.
    type W: Block;
    /// Activation block (the format of [`DType::vec_dot_type`]).
    type A: Block;
    /// Dequantises whole blocks into `out` (`out.len() == w.len() * QK`).
    fn dequantize(w: &[Self::W], out: &mut [f32]);
    /// Scalar dot product of a weight row with an activation row of the same length.
    fn vec_dot(w: &[Self::W], a: &[Self::A]) -> f32;
}

/// An activation format: how an f32 row is converted before the dot products (ggml-cpu's `from_float`).
pub trait ActFormat {
    /// The format.
    const TYPE: VecDotType;
    /// Its block.
    type A: Block;
    /// Converts `x` (`x.len() == out.len() * QK`) exactly as ggml-cpu does on x86.
    fn quantize(x: &[f32], out: &mut [Self::A]);
}

/// Decodes a little-endian f16.
#[inline(always)]
pub fn f16_to_f32(b: [u8; 2]) -> f32 {
    half::f16::from_bits(u16::from_le_bytes(b)).to_f32()
}

/// Encodes an f32 as little-endian f16, rounding to nearest even (as F16C and ggml do).
#[inline(always)]
pub fn f32_to_f16(x: f32) -> [u8; 2] {
    half::f16::from_f32(x).to_bits().to_le_bytes()
}

/// Values per call of `half`'s vectorised slice conversions in [`f32_to_f16_slice`] and [`f16_to_f32_slice`]
/// (a stack buffer of this many f16 bridges their aligned `[f16]` and our unaligned bytes).
const F16_CHUNK: usize = 64;

/// [`f32_to_f16`] over a slice: `dst[i]` encodes `src[i]` (same bits; F16C eight at a time where the CPU has it,
/// through `half`'s run-time dispatch). Panics if the lengths differ.
pub fn f32_to_f16_slice(src: &[f32], dst: &mut [[u8; 2]]) {
    assert_eq!(src.len(), dst.len(), "f32_to_f16_slice: lengths differ");
    let mut buf = [half::f16::ZERO; F16_CHUNK];
    for (s, d) in src.chunks(F16_CHUNK).zip(dst.chunks_mut(F16_CHUNK)) {
        let b = &mut buf[..s.len()];
        half::slice::HalfFloatSliceExt::convert_from_f32_slice(b, s);
        for (o, v) in d.iter_mut().zip(b.iter()) {
            *o = v.to_bits().to_le_bytes();
        }
    }
}

/// [`f16_to_f32`] over a slice: `dst[i]` decodes `src[i]` (exact; vectorised as [`f32_to_f16_slice`]). Panics if
/// the lengths differ.
pub fn f16_to_f32_slice(src: &[[u8; 2]], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len(), "f16_to_f32_slice: lengths differ");
    let mut buf = [half::f16::ZERO; F16_CHUNK];
    for (s, d) in src.chunks(F16_CHUNK).zip(dst.chunks_mut(F16_CHUNK)) {
        let b = &mut buf[..s.len()];
        for (o, v) in b.iter_mut().zip(s) {
            *o = half::f16::from_bits(u16::from_le_bytes(*v));
        }
        half::slice::HalfFloatSliceExt::convert_to_f32_slice(&*b, d);
    }
}

/// ggml's `nearest_int`: round half to even. For |x| <= 2^22 - 1 (every quantiser's range) by ggml's own
/// method (adding 1.5 * 2^23 leaves the rounded integer in the low mantissa bits): plain float and integer
/// operations, where `round_ties_even` is a libm call on x86-64 without SSE4.1. Larger values (from 2^22 - 0.5)
/// and NaN take `round_ties_even`, saturating (garbage input).
#[inline(always)]
pub(crate) fn nearest_int(x: f32) -> i32 {
    if x.abs() <= 4_194_303.0 {
        let v = x + 12_582_912.0;
        (v.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
    } else {
        x.round_ties_even() as i32
    }
}

/// Max of |x| over a slice (0 for an empty slice).
#[inline(always)]
pub(crate) fn amax(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

/// The element of largest magnitude (first one on ties) and its magnitude, as ggml's K-quant and Q4_0 quantisers find it.
#[inline(always)]
pub(crate) fn signed_max(x: &[f32]) -> (f32, f32) {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    (max, amax)
}

/// Quantises `x` to `dtype` with the reference quantiser of model files (llama.cpp's `quantize_row_*_ref`;
/// rounding of f16/bf16). `None` when `x.len()` is not a whole number of blocks.
pub fn quantize_ref(dtype: DType, x: &[f32]) -> Option<Vec<u8>> {
    if !x.len().is_multiple_of(dtype.block_size()) {
        return None;
    }
    let bytes = match dtype {
        DType::F32 => blocks_as_bytes(&f32::quantize_ref(x)).to_vec(),
        DType::F16 => blocks_as_bytes(&f16::quantize_ref(x)).to_vec(),
        DType::BF16 => blocks_as_bytes(&bf16::quantize_ref(x)).to_vec(),
        DType::Q8_0 => blocks_as_bytes(&q8_0::quantize_ref(x)).to_vec(),
        DType::Q4_0 => blocks_as_bytes(&q4_0::quantize_ref(x)).to_vec(),
        DType::Q4_1 => blocks_as_bytes(&q4_1::quantize_ref(x)).to_vec(),
        DType::Q5_0 => blocks_as_bytes(&q5_0::quantize_ref(x)).to_vec(),
        DType::Q4_K => blocks_as_bytes(&q4_k::quantize_ref(x)).to_vec(),
        DType::Q6_K => blocks_as_bytes(&q6_k::quantize_ref(x)).to_vec(),
    };
    Some(bytes)
}

/// Decodes activation blocks of type `t` back to f32 (`dst.len()` elements; for tests and debugging).
///
/// # Panics
/// If `src` holds fewer than `dst.len()` elements' blocks or `dst.len()` is not whole blocks.
pub fn dequantize_act(t: VecDotType, src: &[u8], dst: &mut [f32]) {
    let need = t.row_bytes(dst.len());
    assert!(need.is_some_and(|n| n <= src.len()), "dequantize_act: {t:?} source too short");
    match t {
        VecDotType::F32 => <f32::F32 as WeightFormat>::dequantize(as_blocks(src), dst),
        VecDotType::F16 => <f16::F16 as WeightFormat>::dequantize(as_blocks(src), dst),
        VecDotType::BF16 => <bf16::BF16 as WeightFormat>::dequantize(as_blocks(src), dst),
        VecDotType::Q8_0 => <q8_0::Q8_0 as WeightFormat>::dequantize(as_blocks(src), dst),
        VecDotType::Q8_1 => {
            for (b, o) in as_blocks::<q8_1::BlockQ8_1>(src).iter().zip(dst.chunks_exact_mut(q8_1::QK8_1)) {
                for (o, q) in o.iter_mut().zip(b.qs) {
                    *o = b.d() * f32::from(q);
                }
            }
        }
        VecDotType::Q8_K => {
            for (b, o) in as_blocks::<q8_k::BlockQ8K>(src).iter().zip(dst.chunks_exact_mut(q8_k::QK_K)) {
                for (o, q) in o.iter_mut().zip(b.qs) {
                    *o = b.d() * f32::from(q);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_half_to_even_like_round_ties_even() {
        let mut xs: Vec<f32> = (-4000..=4000).map(|i| i as f32 * 0.25).collect();
        xs.extend([0.5, 1.5, 2.5, -0.5, -2.5, 4_194_303.5, -4_194_303.0, 4_194_304.0, 1e9, -1e9, f32::MAX]);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..100_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            xs.push(f32::from_bits(state as u32 & 0x4bff_ffff)); // |x| < 2^24, random mantissas
        }
        for x in xs {
            assert_eq!(nearest_int(x), x.round_ties_even() as i32, "{x}");
        }
        assert_eq!(nearest_int(f32::NAN), 0);
    }
}
