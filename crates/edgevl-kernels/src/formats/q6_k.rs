//! Q6_K: 256-element super-blocks of 16 groups of 16 6-bit values with signed 8-bit scales and one f16 `d`:
//! `x = d * sc * (q - 32)`. Multiplied with Q8_K.

use super::{
    assert_block_layout, f16_to_f32, f32_to_f16, nearest_int, q8_k::BlockQ8K, q8_k::QK_K, Block, WeightFormat,
};
use crate::dtype::DType;

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon;

/// A Q6_K block (ggml's layout: low 4 bits in `ql`, high 2 bits in `qh`, then scales, then `d`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ6K {
    /// Low 4 bits.
    pub ql: [u8; QK_K / 2],
    /// High 2 bits.
    pub qh: [u8; QK_K / 4],
    /// Group scales.
    pub scales: [i8; QK_K / 16],
    /// Super-block scale, f16 little-endian.
    pub d: [u8; 2],
}
assert_block_layout!(BlockQ6K, 210);
// SAFETY: repr(C) byte arrays: alignment 1, no padding, every bit pattern valid.
unsafe impl Block for BlockQ6K {
    const QK: usize = QK_K;
}

impl BlockQ6K {
    /// The signed 6-bit quant of element `i` (0..256), in `-32..32`.
    #[inline(always)]
    pub fn q(&self, i: usize) -> i32 {
        let (half, r) = (i / 128, i % 128);
        let (quarter, l) = (r / 32, r % 32);
        let ql = self.ql[64 * half + 32 * (quarter % 2) + l];
        let lo = if quarter < 2 { ql & 0xf } else { ql >> 4 };
        let hi = (self.qh[32 * half + l] >> (2 * quarter)) & 3;
        i32::from(lo | (hi << 4)) - 32
    }
}

/// Q6_K weights.
pub struct Q6K;

impl WeightFormat for Q6K {
    const DTYPE: DType = DType::Q6_K;
    type W = BlockQ6K;
    type A = BlockQ8K;
    fn dequantize(w: &[BlockQ6K], out: &mut [f32]) {
        for (b, o) in w.iter().zip(out.chunks_exact_mut(QK_K)) {
            let d = f16_to_f32(b.d);
            for (i, v) in o.iter_mut().enumerate() {
                *v = d * f32::from(b.scales[i / 16]) * b.q(i) as f32;
            }
        }
    }
    fn vec_dot(w: &[BlockQ6K], a: &[BlockQ8K]) -> f32 {
        let mut sumf = 0.0f32;
        for (x, y) in w.iter().zip(a) {
            let mut acc = 0i32;
            for g in 0..16 {
                let isum: i32 = (16 * g..16 * g + 16).map(|i| x.q(i) * i32::from(y.qs[i])).sum();
                acc += i32::from(x.scales[g]) * isum;
            }
            sumf += f16_to_f32(x.d) * y.d() * acc as f32;
        }
        sumf
    }
}

/// ggml's `make_qx_quants` with `rmse_type = 1` (weights `x^2`): fits `x ~ scale * L` with `L` in `-nmax..nmax`,
/// trying 19 scales around `-nmax / max`. Writes `L + nmax` and returns the scale.
fn make_qx_quants(x: &[f32], nmax: i32, l_out: &mut [i8]) -> f32 {
    let (max, amax) = super::signed_max(x);
    if amax < 1e-15 {
        l_out.iter_mut().for_each(|l| *l = 0);
        return 0.0;
    }
    let quant = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    let fit = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
        for &v in x {
            let l = quant(iscale, v) as f32;
            let w = v * v;
            sumlx += w * v * l;
            suml2 += w * l * l;
        }
        (sumlx, suml2)
    };
    let mut iscale = -(nmax as f32) / max;
    for (o, &v) in l_out.iter_mut().zip(x) {
        *o = (quant(iscale, v) + nmax) as i8;
    }
    let (sumlx, suml2) = fit(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        let (sumlx, suml2) = fit(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (o, &v) in l_out.iter_mut().zip(x) {
                *o = (quant(iscale, v) + nmax) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Quantises `x` (a multiple of 256 long) with the algorithm of ggml's `quantize_row_q6_K_ref`.
#[allow(clippy::needless_range_loop)] // index arithmetic mirrors the block layout
pub fn quantize_ref(x: &[f32]) -> Vec<BlockQ6K> {
    x.chunks_exact(QK_K)
        .map(|xb| {
            let mut l = [0i8; QK_K];
            let mut scales = [0f32; 16];
            let (mut max_scale, mut max_abs_scale) = (0.0f32, 0.0f32);
            for ib in 0..16 {
                let s = make_qx_quants(&xb[16 * ib..16 * ib + 16], 32, &mut l[16 * ib..16 * ib + 16]);
                scales[ib] = s;
                if s.abs() > max_abs_scale {
                    max_abs_scale = s.abs();
                    max_scale = s;
                }
            }
            let mut b = BlockQ6K { ql: [0; QK_K / 2], qh: [0; QK_K / 4], scales: [0; 16], d: [0; 2] };
            if max_abs_scale < 1e-15 {
                return b;
            }
            let iscale = -128.0 / max_scale;
            b.d = f32_to_f16(1.0 / iscale);
            for ib in 0..16 {
                b.scales[ib] = nearest_int(iscale * scales[ib]).min(127) as i8;
            }
            for j in 0..16 {
                let d = f16_to_f32(b.d) * f32::from(b.scales[j]);
                if d == 0.0 {
                    continue;
                }
                for ii in 0..16 {
                    l[16 * j + ii] = (nearest_int(xb[16 * j + ii] / d).clamp(-32, 31) + 32) as i8;
                }
            }
            for half in 0..2 {
                let (lh, j) = (&l[128 * half..128 * half + 128], half);
                for i in 0..32 {
                    let q = |k: usize| lh[i + 32 * k] as u8;
                    b.ql[64 * j + i] = (q(0) & 0xf) | ((q(2) & 0xf) << 4);
                    b.ql[64 * j + 32 + i] = (q(1) & 0xf) | ((q(3) & 0xf) << 4);
                    b.qh[32 * j + i] =
                        (q(0) >> 4) | ((q(1) >> 4) << 2) | ((q(2) >> 4) << 4) | ((q(3) >> 4) << 6);
                }
            }
            b
        })
        .collect()
}
