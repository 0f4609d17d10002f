//! The panel GEMM kernel with NEON: a panel's 16 rows in four 4-lane accumulators per activation row, lane `r` the
//! chain of row `r` ([`super::dot_scalar`]); the tile taken one panel x up to [`super::SUB_ACTS`] activation rows at a
//! time (24 accumulators, 4 weight vectors and a broadcast in the 32 registers).

use std::arch::aarch64::*;

use super::{PanelKernel, PanelTile, SubTileFns, ACTS, CALL_ROWS, PANEL};
use crate::aarch64::Neon;

/// The panel GEMM kernel, handed out only for the proof that the CPU has Advanced SIMD.
pub(crate) fn entry(_: Neon) -> PanelKernel {
    PanelKernel::simd(dot)
}

/// The entry [`entry`] hands out.
fn dot(t: &PanelTile, out: &mut [f32; CALL_ROWS * ACTS]) {
    // The loads below rely on it.
    assert!(t.holds_shape(), "fpanel::neon::dot: tile buffers shorter than its shape");
    super::by_sub_tiles(t, out, &CALLS);
}

/// The instances of [`call`] for [`super::by_sub_tiles`].
const CALLS: SubTileFns = [call::<1>, call::<2>, call::<3>, call::<4>, call::<5>, call::<6>];

fn call<const NA: usize>(t: &PanelTile, p: usize, i0: usize, out: &mut [f32; CALL_ROWS * ACTS]) {
    // SAFETY: only reachable from the private entry `dot`, handed out by `entry` for the proof that the CPU has
    // Advanced SIMD; `dot` checked the buffer lengths, `p < n_panels` and `i0 + NA <= n_act`.
    unsafe { kernel::<NA>(t, p, i0, out) }
}

/// Panel `p` times activation rows `i0..i0 + NA`.
///
/// # Safety
/// `t` holds panel `p` and activation rows `i0..i0 + NA`.
#[target_feature(enable = "neon")]
unsafe fn kernel<const NA: usize>(t: &PanelTile, p: usize, i0: usize, out: &mut [f32; CALL_ROWS * ACTS]) {
    let n = t.cols;
    // SAFETY: panel `p` lies inside `t.w` (checked by `dot`).
    let w = unsafe { t.w.as_ptr().add(p * t.stride) };
    // SAFETY: activation rows `i0 + i` lie inside `t.x` (checked by `dot`).
    let x: [*const f32; NA] = std::array::from_fn(|i| unsafe { t.x.as_ptr().add((i0 + i) * n) });
    let mut acc = [[vdupq_n_f32(0.0); 4]; NA];
    for k in 0..n {
        // SAFETY: a panel holds `n * PANEL` elements; these are the 16 at `k * PANEL`.
        let wv: [float32x4_t; 4] = std::array::from_fn(|v| unsafe { vld1q_f32(w.add(k * PANEL + 4 * v)) });
        for (acc, xi) in acc.iter_mut().zip(&x) {
            // SAFETY: `k < n`, inside the activation row.
            let xv = vdupq_n_f32(unsafe { *xi.add(k) });
            for (a, w) in acc.iter_mut().zip(&wv) {
                *a = vfmaq_f32(*a, *w, xv);
            }
        }
    }
    for (i, acc) in acc.iter().enumerate() {
        for (v, a) in acc.iter().enumerate() {
            let at = (i0 + i) * CALL_ROWS + p * PANEL + 4 * v;
            // SAFETY: `at + 4 <= CALL_ROWS * ACTS` for `i0 + i < ACTS`, `p < PANELS`, `v < 4`.
            unsafe { vst1q_f32(out.as_mut_ptr().add(at), *a) };
        }
    }
}
