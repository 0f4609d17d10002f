//! The float GEMM kernel with AVX-512: one 16-lane accumulator per output (lane `j` holds partial sum `j` of the
//! scalar twin, [`super::dot_scalar`]), masked loads for the last partial chunk.

use std::arch::x86_64::*;

use super::{prefetch_next_rows, FloatKernel, FloatTile, ACTS, LANES, ROWS};
use crate::dtype::DType;
use crate::x86::Avx512Vnni;

/// The float GEMM kernel, handed out only for the proof that the CPU has AVX-512 F/BW/VL (and AVX2, FMA, F16C).
pub(crate) fn entry(_: Avx512Vnni) -> FloatKernel {
    FloatKernel::simd(dot)
}

/// The entry [`entry`] hands out.
fn dot(t: &FloatTile, out: &mut [f32; ROWS * ACTS]) {
    let (nr, na) = (t.n_rows, t.n_act);
    // The loads below rely on it.
    assert!(t.holds_shape(), "fgemm::avx512::dot: tile buffers shorter than its shape");
    if na == 1 {
        // One activation row (decode): the weight rows one after the other, a single sequential stream (several
        // rows side by side are short interleaved streams the hardware prefetcher follows poorly).
        let mut one = [0f32; ROWS * ACTS];
        for (r, o) in out.iter_mut().take(nr).enumerate() {
            let row = FloatTile { w: &t.w[r * t.wrb..], n_rows: 1, ..*t };
            if t.dtype == DType::F16 {
                call::<true, 1, 1>(&row, &mut one);
            } else {
                call::<false, 1, 1>(&row, &mut one);
            }
            *o = one[0];
        }
        return;
    }
    macro_rules! go {
        ($h:expr, $r:expr) => {
            match na {
                1 => call::<$h, $r, 1>(t, out),
                2 => call::<$h, $r, 2>(t, out),
                3 => call::<$h, $r, 3>(t, out),
                4 => call::<$h, $r, 4>(t, out),
                5 => call::<$h, $r, 5>(t, out),
                _ => call::<$h, $r, 6>(t, out),
            }
        };
    }
    macro_rules! rows {
        ($h:expr) => {
            match nr {
                1 => go!($h, 1),
                2 => go!($h, 2),
                3 => go!($h, 3),
                _ => go!($h, 4),
            }
        };
    }
    if t.dtype == DType::F16 {
        rows!(true)
    } else {
        rows!(false)
    }
}

fn call<const H: bool, const NR: usize, const NA: usize>(t: &FloatTile, out: &mut [f32; ROWS * ACTS]) {
    // SAFETY: only reachable from the private entry `dot`, handed out by `entry` for the proof that the CPU has
    // AVX-512 F/BW/VL and AVX2/FMA/F16C; `dot` checked the buffer lengths, and `NR`/`NA` are the tile's counts.
    unsafe { kernel::<H, NR, NA>(t, out) }
}

/// 16 weights of a row from element `k` (`H`: f16), the lanes outside `mask` zero.
///
/// # Safety
/// The masked-in elements `k..` are readable at `row`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
unsafe fn load_w<const H: bool>(row: *const u8, k: usize, mask: __mmask16) -> __m512 {
    // SAFETY: forwarded to the caller; masked-out lanes are not accessed.
    unsafe {
        if H {
            _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, row.add(2 * k).cast()))
        } else {
            _mm512_maskz_loadu_ps(mask, row.add(4 * k).cast())
        }
    }
}

/// Horizontal reduction in the scalar twin's order.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
fn reduce(v: __m512) -> f32 {
    let v8 = _mm256_add_ps(
        _mm512_castps512_ps256(v),
        _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v))),
    );
    let v4 = _mm_add_ps(_mm256_castps256_ps128(v8), _mm256_extractf128_ps::<1>(v8));
    let v2 = _mm_add_ps(v4, _mm_movehl_ps(v4, v4));
    _mm_cvtss_f32(_mm_add_ss(v2, _mm_movehdup_ps(v2)))
}

/// # Safety
/// The CPU supports the enabled features; `t` holds `NR` weight rows and `NA` activation rows of `t.cols` elements.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
unsafe fn kernel<const H: bool, const NR: usize, const NA: usize>(
    t: &FloatTile,
    out: &mut [f32; ROWS * ACTS],
) {
    let n = t.cols;
    // SAFETY: weight rows `r < NR` lie inside `t.w` (checked by `dot`).
    let w: [*const u8; NR] = std::array::from_fn(|r| unsafe { t.w.as_ptr().add(r * t.wrb) });
    // SAFETY: activation rows `i < NA` lie inside `t.x` (checked by `dot`).
    let x: [*const f32; NA] = std::array::from_fn(|i| unsafe { t.x.as_ptr().add(i * n) });
    let mut acc = [[_mm512_setzero_ps(); NR]; NA];
    let mut k = 0;
    macro_rules! step {
        ($k:expr, $mask:expr) => {
            let mut wv = [_mm512_setzero_ps(); NR];
            for r in 0..NR {
                // SAFETY: the masked-in elements `k..min(k + 16, n)` of the weight row are inside `t.w`.
                wv[r] = unsafe { load_w::<H>(w[r], $k, $mask) };
            }
            for i in 0..NA {
                // SAFETY: the masked-in elements `k..min(k + 16, n)` of the activation row are inside `t.x`.
                let xv = unsafe { _mm512_maskz_loadu_ps($mask, x[i].add($k)) };
                for r in 0..NR {
                    acc[i][r] = _mm512_fmadd_ps(wv[r], xv, acc[i][r]);
                }
            }
        };
    }
    while k + LANES <= n {
        if NA == 1 {
            // Decode only: with several activation rows the kernel is compute-bound.
            prefetch_next_rows(&w, if H { 2 * k } else { 4 * k }, t.wrb);
        }
        step!(k, 0xffff);
        k += LANES;
    }
    if k < n {
        step!(k, (1u16 << (n - k)) - 1);
    }
    for i in 0..NA {
        for r in 0..NR {
            out[i * ROWS + r] = reduce(acc[i][r]);
        }
    }
}
