//! Q4_K: 256-element super-blocks of 8 groups of 32 4-bit values; each group has a 6-bit scale and a 6-bit minimum,
//! themselves scaled by the super-block's f16 `d` and `dmin`: `x = d * sc * q - dmin * m`. Multiplied with Q8_K.

use super::{
    assert_block_layout, f16_to_f32, f32_to_f16, nearest_int, q8_k::BlockQ8K, q8_k::QK_K, Block, WeightFormat,
};
use crate::dtype::DType;

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon;

/// Bytes of packed 6-bit scales and minimums.
pub const K_SCALE_SIZE: usize = 12;

/// A Q4_K block. Group `2k` (`k` in 0..4) is the low nibbles of `qs[32k..32k+32]`, group `2k+1` the high nibbles.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ4K {
    /// Super-block scale of the scales, f16 little-endian.
    pub d: [u8; 2],
    /// Super-block scale of the minimums, f16 little-endian.
    pub dmin: [u8; 2],
    /// 8 scales and 8 minimums, 6 bits each.
    pub scales: [u8; K_SCALE_SIZE],
    /// Nibbles.
    pub qs: [u8; QK_K / 2],
}
assert_block_layout!(BlockQ4K, 144);
// SAFETY: repr(C) byte arrays: alignment 1, no padding, every bit pattern valid.
unsafe impl Block for BlockQ4K {
    const QK: usize = QK_K;
}

impl BlockQ4K {
    /// The 6-bit scale and minimum of group `j` (0..8), as ggml's `get_scale_min_k4`.
    #[inline(always)]
    pub fn scale_min(&self, j: usize) -> (u8, u8) {
        let q = &self.scales;
        if j < 4 {
            (q[j] & 63, q[j + 4] & 63)
        } else {
            ((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
        }
    }
    /// The 8 scales then the 8 minimums as bytes (ggml's `utmp` unpacking of the 12 packed bytes: a few 32-bit
    /// operations instead of 16 calls of [`BlockQ4K::scale_min`]).
    #[inline(always)]
    pub fn scales_mins(&self) -> [u8; 16] {
        const KMASK1: u32 = 0x3f3f_3f3f;
        const KMASK2: u32 = 0x0f0f_0f0f;
        const KMASK3: u32 = 0x0303_0303;
        let s = &self.scales;
        let w = |i: usize| u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]]);
        let (u0, u1, u2) = (w(0), w(1), w(2));
        let out = [
            u0 & KMASK1,
            (u2 & KMASK2) | (((u0 >> 6) & KMASK3) << 4),
            u1 & KMASK1,
            ((u2 >> 4) & KMASK2) | (((u1 >> 6) & KMASK3) << 4),
        ];
        let mut b = [0u8; 16];
        for (chunk, v) in b.chunks_exact_mut(4).zip(out) {
            chunk.copy_from_slice(&v.to_le_bytes());
        }
        b
    }
    /// The 4-bit quant of element `i` (0..256).
    #[inline(always)]
    pub fn q(&self, i: usize) -> u8 {
        let byte = self.qs[(i / 64) * 32 + i % 32];
        if (i / 32).is_multiple_of(2) {
            byte & 0xf
        } else {
            byte >> 4
        }
    }
}

/// Q4_K weights.
pub struct Q4K;

impl WeightFormat for Q4K {
    const DTYPE: DType = DType::Q4_K;
    type W = BlockQ4K;
    type A = BlockQ8K;
    fn dequantize(w: &[BlockQ4K], out: &mut [f32]) {
        for (b, o) in w.iter().zip(out.chunks_exact_mut(QK_K)) {
            let (d, dmin) = (f16_to_f32(b.d), f16_to_f32(b.dmin));
            for (g, og) in o.chunks_exact_mut(32).enumerate() {
                let (sc, m) = b.scale_min(g);
                let (d1, m1) = (d * f32::from(sc), dmin * f32::from(m));
                for (l, v) in og.iter_mut().enumerate() {
                    *v = d1 * f32::from(b.q(32 * g + l)) - m1;
                }
            }
        }
    }
    fn vec_dot(w: &[BlockQ4K], a: &[BlockQ8K]) -> f32 {
        let mut sumf = 0.0f32;
        for (x, y) in w.iter().zip(a) {
            let mut acc = 0i32;
            let mut mins = 0i32;
            for g in 0..8 {
                let (sc, m) = x.scale_min(g);
                let isum: i32 =
                    (0..32).map(|l| i32::from(x.q(32 * g + l)) * i32::from(y.qs[32 * g + l])).sum();
                acc += i32::from(sc) * isum;
                mins += i32::from(m) * (y.bsum(2 * g) + y.bsum(2 * g + 1));
            }
            let dy = y.d();
            sumf += f16_to_f32(x.d) * dy * acc as f32 - f16_to_f32(x.dmin) * dy * mins as f32;
        }
        sumf
    }
}

/// ggml's `make_qkx2_quants`: a weighted least-squares fit of `x ~ scale * L - min` with `L` in `0..=nmax`,
/// searching `nstep + 1` candidate scales. Returns `(scale, min)` (min as a positive offset).
#[allow(clippy::too_many_arguments)]
#[allow(clippy::needless_range_loop)]
fn make_qkx2_quants(
    x: &[f32],
    weights: &[f32],
    nmax: i32,
    l_out: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
) -> (f32, f32) {
    let n = x.len();
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        min = min.min(x[i]);
        max = max.max(x[i]);
        sum_w += weights[i];
        sum_x += weights[i] * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l_out.iter_mut().for_each(|l| *l = 0);
        return (0.0, -min);
    }
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        l_out[i] = l as u8;
        let diff = scale * l as f32 + min - x[i];
        best_error += weights[i] * diff * diff;
    }
    let mut laux = [0u8; 32];
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            laux[i] = l as u8;
            let w = weights[i];
            let lf = l as f32;
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..n {
                let diff = this_scale * f32::from(laux[i]) + this_min - x[i];
                cur_error += weights[i] * diff * diff;
            }
            if cur_error < best_error {
                l_out[..n].copy_from_slice(&laux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// Quantises `x` (a multiple of 256 long) with the algorithm of ggml's `quantize_row_q4_K_ref`.
#[allow(clippy::needless_range_loop)] // index arithmetic mirrors the block layout
pub fn quantize_ref(x: &[f32]) -> Vec<BlockQ4K> {
    x.chunks_exact(QK_K)
        .map(|xb| {
            let mut l = [0u8; QK_K];
            let mut scales = [0f32; 8];
            let mut mins = [0f32; 8];
            let mut weights = [0f32; 32];
            let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
            for j in 0..8 {
                let xg = &xb[32 * j..32 * j + 32];
                let sum_x2: f32 = xg.iter().map(|v| v * v).sum();
                let av_x = (sum_x2 / 32.0).sqrt();
                for (w, v) in weights.iter_mut().zip(xg) {
                    *w = av_x + v.abs();
                }
                let (s, m) = make_qkx2_quants(xg, &weights, 15, &mut l[32 * j..32 * j + 32], -1.0, 0.1, 20);
                scales[j] = s;
                mins[j] = m;
                max_scale = max_scale.max(s);
                max_min = max_min.max(m);
            }
            let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
            let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
            let mut b = BlockQ4K { d: [0; 2], dmin: [0; 2], scales: [0; K_SCALE_SIZE], qs: [0; QK_K / 2] };
            for j in 0..8 {
                let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
                let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
                if j < 4 {
                    b.scales[j] = ls;
                    b.scales[j + 4] = lm;
                } else {
                    b.scales[j + 4] = (ls & 0xf) | ((lm & 0xf) << 4);
                    b.scales[j - 4] |= (ls >> 4) << 6;
                    b.scales[j] |= (lm >> 4) << 6;
                }
            }
            b.d = f32_to_f16(max_scale / 63.0);
            b.dmin = f32_to_f16(max_min / 63.0);
            for j in 0..8 {
                let (sc, m) = b.scale_min(j);
                let d = f16_to_f32(b.d) * f32::from(sc);
                if d == 0.0 {
                    continue;
                }
                let dm = f16_to_f32(b.dmin) * f32::from(m);
                for ii in 0..32 {
                    l[32 * j + ii] = nearest_int((xb[32 * j + ii] + dm) / d).clamp(0, 15) as u8;
                }
            }
            for k in 0..4 {
                for i in 0..32 {
                    b.qs[32 * k + i] = l[64 * k + i] | (l[64 * k + 32 + i] << 4);
                }
            }
            b
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_mins_unpacks_as_scale_min() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..1000 {
            let mut b = BlockQ4K { d: [0; 2], dmin: [0; 2], scales: [0; K_SCALE_SIZE], qs: [0; QK_K / 2] };
            for v in b.scales.iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *v = state as u8;
            }
            let sm = b.scales_mins();
            for g in 0..8 {
                assert_eq!((sm[g], sm[8 + g]), b.scale_min(g), "group {g} of {:?}", b.scales);
            }
        }
    }
}
