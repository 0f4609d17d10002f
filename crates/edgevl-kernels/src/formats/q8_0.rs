//! Q8_0: 32 signed bytes with one f16 scale. Used as weights and as the activation format of Q8_0 and Q4_0.

use super::{amax, assert_block_layout, f16_to_f32, f32_to_f16, ActFormat, Block, WeightFormat};
use crate::dtype::{DType, VecDotType};

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon;

/// Elements per block.
pub const QK8_0: usize = 32;

/// A Q8_0 block: `x[j] = d * qs[j]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlockQ8_0 {
    /// Scale, f16 little-endian.
    pub d: [u8; 2],
    /// Quants.
    pub qs: [i8; QK8_0],
}
assert_block_layout!(BlockQ8_0, 34);
// SAFETY: repr(C) of byte-sized fields: alignment 1, no padding, every bit pattern valid.
unsafe impl Block for BlockQ8_0 {
    const QK: usize = QK8_0;
}

impl BlockQ8_0 {
    /// The scale.
    #[inline(always)]
    pub fn d(&self) -> f32 {
        f16_to_f32(self.d)
    }
}

/// Quantises `x` (a multiple of 32 long) as ggml's `quantize_row_q8_0_ref` does (model files):
/// `d = amax / 127`, `q = roundf(x / d)` (half away from zero).
pub fn quantize_ref(x: &[f32]) -> Vec<BlockQ8_0> {
    x.chunks_exact(QK8_0)
        .map(|xb| {
            let d = amax(xb) / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let mut b = BlockQ8_0 { d: f32_to_f16(d), qs: [0; QK8_0] };
            for (q, v) in b.qs.iter_mut().zip(xb) {
                *q = (v * id).round() as i8;
            }
            b
        })
        .collect()
}

/// Quantises one activation block as ggml-cpu's x86 `quantize_row_q8_0` does: `id = 127 / amax`,
/// round half to even. Returns the f32 scale and the sum of the quants (for Q8_1).
#[inline(always)]
pub(crate) fn quantize_act_block(xb: &[f32], qs: &mut [i8; QK8_0]) -> (f32, i32) {
    let m = amax(xb);
    let d = m / 127.0;
    let id = if m != 0.0 { 127.0 / m } else { 0.0 };
    let mut sum = 0i32;
    for (q, v) in qs.iter_mut().zip(xb) {
        let r = (v * id).round_ties_even() as i32;
        *q = r as i8;
        sum += r;
    }
    (d, sum)
}

/// Q8_0 weights.
pub struct Q8_0;

impl WeightFormat for Q8_0 {
    const DTYPE: DType = DType::Q8_0;
    type W = BlockQ8_0;
    type A = BlockQ8_0;
    fn dequantize(w: &[BlockQ8_0], out: &mut [f32]) {
        for (b, o) in w.iter().zip(out.chunks_exact_mut(QK8_0)) {
            let d = b.d();
            for (o, q) in o.iter_mut().zip(b.qs) {
                *o = f32::from(q) * d;
            }
        }
    }
    fn vec_dot(w: &[BlockQ8_0], a: &[BlockQ8_0]) -> f32 {
        let mut sumf = 0.0f32;
        for (x, y) in w.iter().zip(a) {
            let sumi: i32 = x.qs.iter().zip(y.qs).map(|(p, q)| i32::from(*p) * i32::from(q)).sum();
            // One fma per block, as the packed kernels: every level computes the same f32 sequence.
            sumf = (sumi as f32).mul_add(x.d() * y.d(), sumf);
        }
        sumf
    }
}

impl ActFormat for Q8_0 {
    const TYPE: VecDotType = VecDotType::Q8_0;
    type A = BlockQ8_0;
    fn quantize(x: &[f32], out: &mut [BlockQ8_0]) {
        for (xb, b) in x.chunks_exact(QK8_0).zip(out) {
            let (d, _) = quantize_act_block(xb, &mut b.qs);
            b.d = f32_to_f16(d);
        }
    }
}
