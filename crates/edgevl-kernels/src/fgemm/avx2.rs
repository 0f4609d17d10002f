//! The float GEMM kernel with AVX2: each output's 16 partial sums (those of the scalar twin,
//! [`super::dot_scalar`]) in two 8-lane accumulators, sub-tiles of 2 weight rows x 2 activation rows (register
//! budget), the last partial chunk through zero-padded copies.

use std::arch::x86_64::*;

use super::{prefetch_next_rows, FloatKernel, FloatTile, ACTS, LANES, ROWS};
use crate::dtype::DType;
use crate::x86::Avx2;

/// The float GEMM kernel, handed out only for the proof that the CPU has AVX2, FMA and F16C.
pub(crate) fn entry(_: Avx2) -> FloatKernel {
    FloatKernel::simd(dot)
}

/// The entry [`entry`] hands out.
fn dot(t: &FloatTile, out: &mut [f32; ROWS * ACTS]) {
    let (nr, na) = (t.n_rows, t.n_act);
    // The loads below rely on it.
    assert!(t.holds_shape(), "fgemm::avx2::dot: tile buffers shorter than its shape");
    // One activation row (decode): the weight rows one after the other, a single sequential stream (rows side by
    // side are short interleaved streams the hardware prefetcher follows poorly).
    let row_step = if na == 1 { 1 } else { 2 };
    for r0 in (0..nr).step_by(row_step) {
        for i0 in (0..na).step_by(2) {
            let (dr, di) = ((nr - r0).min(row_step), (na - i0).min(2));
            macro_rules! go {
                ($h:expr) => {
                    match (dr, di) {
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
    // AVX2, FMA and F16C; `dot` checked the buffer lengths, and `r0 + NR <= n_rows`, `i0 + NA <= n_act`.
    unsafe { kernel::<H, NR, NA>(t, r0, i0, out) }
}

/// 8 weights of a row from element `k` (`H`: f16).
///
/// # Safety
/// Elements `k..k + 8` are readable at `row`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_w<const H: bool>(row: *const u8, k: usize) -> __m256 {
    // SAFETY: forwarded to the caller.
    unsafe {
        if H {
            _mm256_cvtph_ps(_mm_loadu_si128(row.add(2 * k).cast()))
        } else {
            _mm256_loadu_ps(row.add(4 * k).cast())
        }
    }
}

/// The scalar twin's reduction of partial sums `lo` (lanes 0..8) and `hi` (8..16).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn reduce(lo: __m256, hi: __m256) -> f32 {
    let v8 = _mm256_add_ps(lo, hi);
    let v4 = _mm_add_ps(_mm256_castps256_ps128(v8), _mm256_extractf128_ps::<1>(v8));
    let v2 = _mm_add_ps(v4, _mm_movehl_ps(v4, v4));
    _mm_cvtss_f32(_mm_add_ss(v2, _mm_movehdup_ps(v2)))
}

/// Weight rows `r0..r0 + NR` times activation rows `i0..i0 + NA`.
///
/// # Safety
/// The CPU supports the enabled features; those rows exist in `t` with `t.cols` elements each.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn kernel<const H: bool, const NR: usize, const NA: usize>(
    t: &FloatTile,
    r0: usize,
    i0: usize,
    out: &mut [f32; ROWS * ACTS],
) {
    let n = t.cols;
    let es = if H { 2 } else { 4 };
    let mut w = [t.w.as_ptr(); NR];
    let mut x = [t.x.as_ptr(); NA];
    for (r, w) in w.iter_mut().enumerate() {
        // SAFETY: row `r0 + r` lies inside `t.w` (checked by `dot`).
        *w = unsafe { t.w.as_ptr().add((r0 + r) * t.wrb) };
    }
    for (i, x) in x.iter_mut().enumerate() {
        // SAFETY: row `i0 + i` lies inside `t.x`.
        *x = unsafe { t.x.as_ptr().add((i0 + i) * n) };
    }
    let mut lo = [[_mm256_setzero_ps(); NR]; NA];
    let mut hi = [[_mm256_setzero_ps(); NR]; NA];
    macro_rules! step {
        ($w:expr, $x:expr, $k:expr) => {
            let (mut wl, mut wh) = ([_mm256_setzero_ps(); NR], [_mm256_setzero_ps(); NR]);
            for r in 0..NR {
                // SAFETY: elements `k..k + 16` of the row are readable (full chunk or padded copy).
                wl[r] = unsafe { load_w::<H>($w[r], $k) };
                // SAFETY: as above.
                wh[r] = unsafe { load_w::<H>($w[r], $k + 8) };
            }
            for i in 0..NA {
                // SAFETY: elements `k..k + 16` of the activation row are readable (full chunk or padded copy).
                let xl = unsafe { _mm256_loadu_ps($x[i].add($k)) };
                // SAFETY: as above.
                let xh = unsafe { _mm256_loadu_ps($x[i].add($k + 8)) };
                for r in 0..NR {
                    lo[i][r] = _mm256_fmadd_ps(wl[r], xl, lo[i][r]);
                    hi[i][r] = _mm256_fmadd_ps(wh[r], xh, hi[i][r]);
                }
            }
        };
    }
    let mut k = 0;
    while k + LANES <= n {
        if NA == 1 {
            // Decode only: with several activation rows the kernel is compute-bound.
            prefetch_next_rows(&w, es * k, t.wrb);
        }
        step!(w, x, k);
        k += LANES;
    }
    if k < n {
        // The last partial chunk, zero padded (the scalar twin's padding).
        let rest = n - k;
        let mut wp = [[0u8; 4 * LANES]; NR];
        let mut xp = [[0f32; LANES]; NA];
        for r in 0..NR {
            // SAFETY: elements `k..n` of row `r` are inside `t.w`.
            let src = unsafe { std::slice::from_raw_parts(w[r].add(k * es), rest * es) };
            wp[r][..rest * es].copy_from_slice(src);
        }
        for i in 0..NA {
            // SAFETY: elements `k..n` of row `i` are inside `t.x`.
            let src = unsafe { std::slice::from_raw_parts(x[i].add(k), rest) };
            xp[i][..rest].copy_from_slice(src);
        }
        let wpp: [*const u8; NR] = std::array::from_fn(|r| wp[r].as_ptr());
        let xpp: [*const f32; NA] = std::array::from_fn(|i| xp[i].as_ptr());
        step!(wpp, xpp, 0);
    }
    for i in 0..NA {
        for r in 0..NR {
            out[(i0 + i) * ROWS + r0 + r] = reduce(lo[i][r], hi[i][r]);
        }
    }
}
