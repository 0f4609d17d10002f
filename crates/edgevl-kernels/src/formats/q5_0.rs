//! Q5_0: 32 5-bit values with one f16 scale, `x = d * (q - 16)`; multiplied with Q8_0 activations. llama-quantize
//! writes it where Q4_K does not fit (rows that are not a multiple of 256, as SmolLM2's 576).

use super::{assert_block_layout, f16_to_f32, f32_to_f16, q8_0::BlockQ8_0, signed_max, Block, WeightFormat};
use crate::dtype::DType;

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon;

/// Elements per block.
pub const QK5_0: usize = 32;

/// A Q5_0 block: element `j < 16` is the low nibble of `qs[j]` with bit `j` of `qh` as its fifth bit;
/// element `j + 16` is the high nibble with bit `j + 16`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlockQ5_0 {
    /// Scale, f16 little-endian.
    pub d: [u8; 2],
    /// Fifth bits, u32 little-endian.
    pub qh: [u8; 4],
    /// Low nibbles.
    pub qs: [u8; QK5_0 / 2],
}
assert_block_layout!(BlockQ5_0, 22);
// SAFETY: repr(C) byte arrays: alignment 1, no padding, every bit pattern valid.
unsafe impl Block for BlockQ5_0 {
    const QK: usize = QK5_0;
}

/// Quantises `x` (a multiple of 32 long) as ggml's `quantize_row_q5_0_ref`: `d = max / -16` where `max` is the
/// signed element of largest magnitude, `q = min(31, trunc(x / d + 16.5))`.
pub fn quantize_ref(x: &[f32]) -> Vec<BlockQ5_0> {
    x.chunks_exact(QK5_0)
        .map(|xb| {
            let (max, _) = signed_max(xb);
            let d = max / -16.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let q = |v: f32| ((v * id + 16.5) as i8).min(31) as u8;
            let mut b = BlockQ5_0 { d: f32_to_f16(d), qh: [0; 4], qs: [0; 16] };
            let mut qh = 0u32;
            for (j, (lo, hi)) in xb[..16].iter().zip(&xb[16..]).enumerate() {
                let (q0, q1) = (q(*lo), q(*hi));
                b.qs[j] = (q0 & 0x0f) | ((q1 & 0x0f) << 4);
                qh |= u32::from((q0 & 0x10) >> 4) << j;
                qh |= u32::from((q1 & 0x10) >> 4) << (j + 16);
            }
            b.qh = qh.to_le_bytes();
            b
        })
        .collect()
}

impl BlockQ5_0 {
    /// The scale.
    #[inline(always)]
    pub fn d(&self) -> f32 {
        f16_to_f32(self.d)
    }

    /// The signed values `q - 16` (-16..=15) of elements `j` and `j + 16`, `j < 16`.
    #[inline(always)]
    fn pair(&self, j: usize) -> (i32, i32) {
        let qh = u32::from_le_bytes(self.qh);
        let h0 = (((qh >> j) << 4) & 0x10) as u8;
        let h1 = ((qh >> (j + 12)) & 0x10) as u8;
        (i32::from((self.qs[j] & 0x0f) | h0) - 16, i32::from((self.qs[j] >> 4) | h1) - 16)
    }
}

/// Q5_0 weights.
pub struct Q5_0;

impl WeightFormat for Q5_0 {
    const DTYPE: DType = DType::Q5_0;
    type W = BlockQ5_0;
    type A = BlockQ8_0;
    /// As ggml's `dequantize_row_q5_0`.
    fn dequantize(w: &[BlockQ5_0], out: &mut [f32]) {
        for (b, o) in w.iter().zip(out.chunks_exact_mut(QK5_0)) {
            let d = b.d();
            for j in 0..16 {
                let (lo, hi) = b.pair(j);
                o[j] = lo as f32 * d;
                o[j + 16] = hi as f32 * d;
            }
        }
    }
    /// The exact integer sum of each block, then one f32 FMA per block (`sumf = fma(sumi, d_w * d_a, sumf)`): the
    /// sequence of the packed kernels and of every level's dot, so all agree bit for bit.
    fn vec_dot(w: &[BlockQ5_0], a: &[BlockQ8_0]) -> f32 {
        let mut sumf = 0.0f32;
        for (x, y) in w.iter().zip(a) {
            let mut sumi = 0i32;
            for j in 0..16 {
                let (lo, hi) = x.pair(j);
                sumi += lo * i32::from(y.qs[j]) + hi * i32::from(y.qs[j + 16]);
            }
            sumf = (sumi as f32).mul_add(x.d() * y.d(), sumf);
        }
        sumf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_error_is_within_one_step() {
        let x: Vec<f32> = (0..96).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013).collect();
        let blocks = quantize_ref(&x);
        let mut y = vec![0.0; x.len()];
        Q5_0::dequantize(&blocks, &mut y);
        for (xb, yb) in x.chunks(32).zip(y.chunks(32)) {
            // Half a step inside the range; a value of the other sign than the largest clamps at 15 / 16 of it
            // (one step, plus the f16 rounding of the scale).
            let step = super::super::amax(xb) / 16.0;
            for (a, b) in xb.iter().zip(yb) {
                assert!((a - b).abs() <= step * 1.01, "{a} vs {b}");
            }
        }
    }
}
