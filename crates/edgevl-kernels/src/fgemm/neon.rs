//! The float GEMM kernel with NEON: four 4-lane accumulators per output (register `v`, lane `l` holds partial sum
//! `4v + l` of the scalar twin, [`super::dot_scalar`]), the tile taken in blocks of 2 weight rows x 2 activation
//! rows (16 accumulators in NEON's 32 registers), the last partial chunk through zero-padded copies.

use std::arch::aarch64::*;

use super::{FloatKernel, FloatTile, ACTS, LANES, ROWS};
use crate::aarch64::neon::f16x8_to_f32;
use crate::aarch64::Neon;
use crate::dtype::DType;

/// Weight rows and activation rows per register block.
const BLOCK: usize = 2;

/// The float GEMM kernel, handed out only for the proof that the CPU has Advanced SIMD.
pub(crate) fn entry(_: Neon) -> FloatKernel {
    FloatKernel::simd(dot)
}

/// The entry [`entry`] hands out.
fn dot(t: &FloatTile, out: &mut [f32; ROWS * ACTS]) {
    let (nr, na) = (t.n_rows, t.n_act);
    // The loads below rely on it.
    assert!(t.holds_shape(), "fgemm::neon::dot: tile buffers shorter than its shape");
    // One activation row (decode): the weight rows one after the other, a single sequential stream.
    let row_step = if na == 1 { 1 } else { BLOCK };
    for r0 in (0..nr).step_by(row_step) {
        for i0 in (0..na).step_by(BLOCK) {
            macro_rules! go {
                ($h:expr) => {
                    match ((nr - r0).min(row_step), (na - i0).min(BLOCK)) {
                        (1, 1) => call::<$h, 1, 1>(t, r0, i0, out),
                        (1, _) => call::<$h, 1, 2>(t, r0, i0, out),
                        (_, 1) => call::<$h, 2, 1>(t, r0, i0, out),
                        _ => call::<$h, 2, 2>(t, r0, i0, out),
                    }
                };
            }
            if t.dtype == DType::F16 {
                go!(true)
            } else {
                go!(false)
            }
        }
    }
}

fn call<const H: bool, const NR: usize, const NA: usize>(
    t: &FloatTile,
    r0: usize,
    i0: usize,
    out: &mut [f32; ROWS * ACTS],
) {
    // SAFETY: only reachable from the private entry `dot`, handed out by `entry` for the proof that the CPU has
    // Advanced SIMD; `dot` checked the buffer lengths, and `r0 + NR <= n_rows`, `i0 + NA <= n_act`.
    unsafe { kernel::<H, NR, NA>(t, r0, i0, out) }
}

/// 16 weights of a row at `p` (`H`: f16, else f32) as four f32 vectors.
///
/// # Safety
/// 16 elements are readable at `p`.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn load_w<const H: bool>(p: *const u8) -> [float32x4_t; 4] {
    // SAFETY: forwarded to the caller; byte loads need no alignment.
    unsafe {
        if H {
            let [a, b] = f16x8_to_f32(vreinterpretq_u16_u8(vld1q_u8(p)));
            let [c, d] = f16x8_to_f32(vreinterpretq_u16_u8(vld1q_u8(p.add(16))));
            [a, b, c, d]
        } else {
            std::array::from_fn(|v| vreinterpretq_f32_u8(vld1q_u8(p.add(16 * v))))
        }
    }
}

/// 16 activations at `p` as four f32 vectors.
///
/// # Safety
/// 16 f32 are readable at `p`.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn load_x(p: *const f32) -> [float32x4_t; 4] {
    // SAFETY: forwarded to the caller; `p` is f32-aligned (a slice of f32).
    std::array::from_fn(|v| unsafe { vld1q_f32(p.add(4 * v)) })
}

/// Horizontal reduction in the scalar twin's order (`reduce16`): `(j, j + 8)`, `(j, j + 4)`, `(j, j + 2)`, `(0, 1)`.
#[inline]
#[target_feature(enable = "neon")]
fn reduce(a: &[float32x4_t; 4]) -> f32 {
    let v4 = vaddq_f32(vaddq_f32(a[0], a[2]), vaddq_f32(a[1], a[3]));
    let v2 = vadd_f32(vget_low_f32(v4), vget_high_f32(v4));
    vget_lane_f32::<0>(v2) + vget_lane_f32::<1>(v2)
}

/// Weight rows `r0..r0 + NR` times activation rows `i0..i0 + NA`.
///
/// # Safety
/// `t` holds at least `r0 + NR` weight rows and `i0 + NA` activation rows of `t.cols` elements.
#[target_feature(enable = "neon")]
unsafe fn kernel<const H: bool, const NR: usize, const NA: usize>(
    t: &FloatTile,
    r0: usize,
    i0: usize,
    out: &mut [f32; ROWS * ACTS],
) {
    let n = t.cols;
    let es = if H { 2 } else { 4 };
    // SAFETY: weight rows `r0 + r` lie inside `t.w` (checked by `dot`).
    let w: [*const u8; NR] = std::array::from_fn(|r| unsafe { t.w.as_ptr().add((r0 + r) * t.wrb) });
    // SAFETY: activation rows `i0 + i` lie inside `t.x` (checked by `dot`).
    let x: [*const f32; NA] = std::array::from_fn(|i| unsafe { t.x.as_ptr().add((i0 + i) * n) });
    let mut acc = [[[vdupq_n_f32(0.0); 4]; NR]; NA];
    // One chunk of 16 elements from the pointers `$wp[r]` / `$xp[i]` (16 readable elements each).
    macro_rules! step {
        ($wp:expr, $xp:expr) => {
            // SAFETY: the callers below pass pointers to 16 readable elements.
            let wv: [[float32x4_t; 4]; NR] = std::array::from_fn(|r| unsafe { load_w::<H>($wp[r]) });
            for (i, acc) in acc.iter_mut().enumerate() {
                // SAFETY: as above.
                let xv = unsafe { load_x($xp[i]) };
                for (acc, wv) in acc.iter_mut().zip(&wv) {
                    for v in 0..4 {
                        acc[v] = vfmaq_f32(acc[v], wv[v], xv[v]);
                    }
                }
            }
        };
    }
    let mut k = 0;
    while k + LANES <= n {
        // SAFETY: elements `k..k + 16` of every row are inside its buffer (`k + 16 <= n`).
        let (wp, xp) = unsafe { (w.map(|p| p.add(es * k)), x.map(|p| p.add(k))) };
        step!(wp, xp);
        k += LANES;
    }
    if k < n {
        // The last partial chunk, zero-padded as the scalar twin pads it.
        let left = n - k;
        let mut wpad = [[0u8; 4 * LANES]; NR];
        let mut xpad = [[0f32; LANES]; NA];
        for (r, pad) in wpad.iter_mut().enumerate() {
            // SAFETY: elements `k..n` of weight row `r` are inside `t.w`; `pad` holds 16 elements of either type.
            unsafe { std::ptr::copy_nonoverlapping(w[r].add(es * k), pad.as_mut_ptr(), es * left) };
        }
        for (i, pad) in xpad.iter_mut().enumerate() {
            // SAFETY: elements `k..n` of activation row `i` are inside `t.x`.
            unsafe { std::ptr::copy_nonoverlapping(x[i].add(k), pad.as_mut_ptr(), left) };
        }
        let (wp, xp): ([*const u8; NR], [*const f32; NA]) =
            (std::array::from_fn(|r| wpad[r].as_ptr()), std::array::from_fn(|i| xpad[i].as_ptr()));
        step!(wp, xp);
    }
    for (i, acc) in acc.iter().enumerate() {
        for (r, a) in acc.iter().enumerate() {
            out[(i0 + i) * ROWS + r0 + r] = reduce(a);
        }
    }
}
