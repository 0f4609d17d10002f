//! The panel GEMM kernel with AVX2: a panel's 16 rows in two 8-lane accumulators per activation row, lane `r` the
//! chain of row `r` ([`super::dot_scalar`]); the tile taken one panel x up to [`super::SUB_ACTS`] activation rows at a
//! time (12 accumulators, 2 weight vectors and a broadcast in the 16 registers).

use std::arch::x86_64::*;

use super::{PanelKernel, PanelTile, SubTileFns, ACTS, CALL_ROWS, PANEL};
use crate::x86::Avx2;

/// The panel GEMM kernel, handed out only for the proof that the CPU has AVX2, FMA and F16C.
pub(crate) fn entry(_: Avx2) -> PanelKernel {
    PanelKernel::simd(dot)
}

/// The entry [`entry`] hands out.
fn dot(t: &PanelTile, out: &mut [f32; CALL_ROWS * ACTS]) {
    // The loads below rely on it.
    assert!(t.holds_shape(), "fpanel::avx2::dot: tile buffers shorter than its shape");
    super::by_sub_tiles(t, out, &CALLS);
}

/// The instances of [`call`] for [`super::by_sub_tiles`].
const CALLS: SubTileFns = [call::<1>, call::<2>, call::<3>, call::<4>, call::<5>, call::<6>];

fn call<const NA: usize>(t: &PanelTile, p: usize, i0: usize, out: &mut [f32; CALL_ROWS * ACTS]) {
    // SAFETY: only reachable from the private entry `dot`, handed out by `entry` for the proof that the CPU has
    // AVX2/FMA/F16C; `dot` checked the buffer lengths, `p < n_panels` and `i0 + NA <= n_act`.
    unsafe { kernel::<NA>(t, p, i0, out) }
}

/// Panel `p` times activation rows `i0..i0 + NA`.
///
/// # Safety
/// The CPU supports the enabled features; `t` holds panel `p` and activation rows `i0..i0 + NA`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn kernel<const NA: usize>(t: &PanelTile, p: usize, i0: usize, out: &mut [f32; CALL_ROWS * ACTS]) {
    let n = t.cols;
    // SAFETY: panel `p` lies inside `t.w` (checked by `dot`).
    let w = unsafe { t.w.as_ptr().add(p * t.stride) };
    // SAFETY: activation rows `i0 + i` lie inside `t.x` (checked by `dot`).
    let x: [*const f32; NA] = std::array::from_fn(|i| unsafe { t.x.as_ptr().add((i0 + i) * n) });
    let mut acc = [[_mm256_setzero_ps(); 2]; NA];
    for k in 0..n {
        // SAFETY: a panel holds `n * PANEL` elements; these are the 16 at `k * PANEL`.
        let wv: [__m256; 2] = std::array::from_fn(|h| unsafe { _mm256_loadu_ps(w.add(k * PANEL + 8 * h)) });
        for (acc, xi) in acc.iter_mut().zip(&x) {
            // SAFETY: `k < n`, inside the activation row.
            let xv = _mm256_set1_ps(unsafe { *xi.add(k) });
            for (a, w) in acc.iter_mut().zip(&wv) {
                *a = _mm256_fmadd_ps(*w, xv, *a);
            }
        }
    }
    for (i, acc) in acc.iter().enumerate() {
        for (h, a) in acc.iter().enumerate() {
            let at = (i0 + i) * CALL_ROWS + p * PANEL + 8 * h;
            // SAFETY: `at + 8 <= CALL_ROWS * ACTS` for `i0 + i < ACTS`, `p < PANELS`, `h < 2`.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(at), *a) };
        }
    }
}
