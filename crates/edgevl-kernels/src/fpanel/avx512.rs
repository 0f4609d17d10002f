//! The panel GEMM kernel with AVX-512: one 16-lane accumulator per (activation row, panel), lane `r` the chain of
//! the panel's row `r` ([`super::dot_scalar`]); 2 panels x 12 activation rows are 24 accumulators.

use std::arch::x86_64::*;

use super::{PanelKernel, PanelTile, ACTS, CALL_ROWS, PANEL};
use crate::x86::Avx512Vnni;

/// The panel GEMM kernel, handed out only for the proof that the CPU has AVX-512 F/BW/VL (and AVX2, FMA, F16C).
pub(crate) fn entry(_: Avx512Vnni) -> PanelKernel {
    PanelKernel::simd(dot)
}

/// The entry [`entry`] hands out.
fn dot(t: &PanelTile, out: &mut [f32; CALL_ROWS * ACTS]) {
    // The loads below rely on it.
    assert!(t.holds_shape(), "fpanel::avx512::dot: tile buffers shorter than its shape");
    macro_rules! go {
        ($p:expr) => {
            match t.n_act {
                1 => call::<$p, 1>(t, out),
                2 => call::<$p, 2>(t, out),
                3 => call::<$p, 3>(t, out),
                4 => call::<$p, 4>(t, out),
                5 => call::<$p, 5>(t, out),
                6 => call::<$p, 6>(t, out),
                7 => call::<$p, 7>(t, out),
                8 => call::<$p, 8>(t, out),
                9 => call::<$p, 9>(t, out),
                10 => call::<$p, 10>(t, out),
                11 => call::<$p, 11>(t, out),
                _ => call::<$p, 12>(t, out),
            }
        };
    }
    match t.n_panels {
        1 => go!(1),
        _ => go!(2),
    }
}

fn call<const NP: usize, const NA: usize>(t: &PanelTile, out: &mut [f32; CALL_ROWS * ACTS]) {
    // SAFETY: only reachable from the private entry `dot`, handed out by `entry` for the proof that the CPU has
    // AVX-512 F/BW/VL and AVX2/FMA/F16C; `dot` checked the buffer lengths, and `NP`/`NA` are the tile's counts.
    unsafe { kernel::<NP, NA>(t, out) }
}

/// # Safety
/// The CPU supports the enabled features; `t` holds `NP` panels and `NA` activation rows of `t.cols` elements.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
unsafe fn kernel<const NP: usize, const NA: usize>(t: &PanelTile, out: &mut [f32; CALL_ROWS * ACTS]) {
    let n = t.cols;
    // SAFETY: panels `p < NP` lie inside `t.w` (checked by `dot`).
    let w: [*const f32; NP] = std::array::from_fn(|p| unsafe { t.w.as_ptr().add(p * t.stride) });
    // SAFETY: activation rows `i < NA` lie inside `t.x` (checked by `dot`).
    let x: [*const f32; NA] = std::array::from_fn(|i| unsafe { t.x.as_ptr().add(i * n) });
    let mut acc = [[_mm512_setzero_ps(); NP]; NA];
    for k in 0..n {
        // SAFETY: a panel holds `n * PANEL` elements; these are the 16 at `k * PANEL`.
        let wv: [__m512; NP] = std::array::from_fn(|p| unsafe { _mm512_loadu_ps(w[p].add(k * PANEL)) });
        for (acc, xi) in acc.iter_mut().zip(&x) {
            // SAFETY: `k < n`, inside the activation row.
            let xv = _mm512_set1_ps(unsafe { *xi.add(k) });
            for (a, w) in acc.iter_mut().zip(&wv) {
                *a = _mm512_fmadd_ps(*w, xv, *a);
            }
        }
    }
    for (i, acc) in acc.iter().enumerate() {
        for (p, a) in acc.iter().enumerate() {
            // SAFETY: `i * CALL_ROWS + p * PANEL + 16 <= CALL_ROWS * ACTS` for `i < NA <= ACTS`, `p < NP <= PANELS`.
            unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(i * CALL_ROWS + p * PANEL), *a) };
        }
    }
}
