//! The small GEMM with AVX2: blocks of up to [`MR`] rows x 16 columns of `C` in 12 registers, `vmaskmov` loads and
//! stores for the last columns (masked lanes are neither read nor written), the scalar twin's fused multiply-add
//! chain in every lane.

use std::arch::x86_64::*;

use super::{blocks, Sgemm, SgemmKernel};
use crate::x86::Avx2;

/// Rows of `C` per block.
const MR: usize = 6;
/// Lanes of a vector.
const L: usize = 8;

/// The kernel, handed out only for the proof that the CPU has AVX2 and FMA.
pub(crate) fn entry(_: Avx2) -> SgemmKernel {
    SgemmKernel::simd(run)
}

/// The entry [`entry`] hands out: row blocks of [`MR`], column blocks of 16 (8 for a last one of at most 8).
fn run(g: &mut Sgemm) {
    for (i0, r, j0, w) in blocks(g.m, g.n, MR, 2 * L) {
        macro_rules! go {
            ($v:expr) => {
                match r {
                    1 => block::<1, $v>(g, i0, j0, w),
                    2 => block::<2, $v>(g, i0, j0, w),
                    3 => block::<3, $v>(g, i0, j0, w),
                    4 => block::<4, $v>(g, i0, j0, w),
                    5 => block::<5, $v>(g, i0, j0, w),
                    _ => block::<6, $v>(g, i0, j0, w),
                }
            };
        }
        if w > L {
            go!(2)
        } else {
            go!(1)
        }
    }
}

/// Rows `i0..i0 + R`, columns `j0..j0 + w` (`w <= V * 8`).
fn block<const R: usize, const V: usize>(g: &mut Sgemm, i0: usize, j0: usize, w: usize) {
    // `Sgemm::new` checked that rows `i0..i0 + R` of A (k values each), rows `0..k` of B and rows `i0..i0 + R` of C
    // (columns up to n) lie inside their buffers; the callers keep `i0 + R <= m` and `j0 + w <= n`.
    assert!(i0 + R <= g.m && j0 + w <= g.n && w <= V * L, "sgemm::avx2: block outside the product");
    let lanes: [usize; V] = std::array::from_fn(|v| w.saturating_sub(v * L).min(L));
    // SAFETY: this entry exists only for the proof of AVX2 and FMA (see `entry`); the block lies inside the
    // buffers (asserted above and checked by `Sgemm::new`), and no access is made outside the masked-in lanes.
    unsafe { kernel::<R, V>(g, i0, j0, lanes) }
}

/// A `vmaskmov` mask of the first `lanes` lanes.
#[inline]
#[target_feature(enable = "avx2")]
fn lane_mask(lanes: usize) -> __m256i {
    _mm256_cmpgt_epi32(_mm256_set1_epi32(lanes as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
}

/// # Safety
/// The CPU has AVX2 and FMA; rows `i0..i0 + R` of A and C and columns `j0..` of B and C up to the masked-in lanes
/// lie inside the buffers.
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel<const R: usize, const V: usize>(g: &mut Sgemm, i0: usize, j0: usize, lanes: [usize; V]) {
    let (k, lda, ldb, ldc) = (g.k, g.lda, g.ldb, g.ldc);
    let masks: [__m256i; V] = std::array::from_fn(|v| lane_mask(lanes[v]));
    let mut acc = [[_mm256_setzero_ps(); V]; R];
    // Cursors on A[i0][p] and B[p][j0], advanced one column of A and one row of B per step (k steps); they are only
    // dereferenced while inside the buffers (caller), so wrapping arithmetic is enough.
    let mut a = g.a.as_ptr().wrapping_add(i0 * lda);
    let mut b = g.b.as_ptr().wrapping_add(j0);
    for _ in 0..k {
        // SAFETY: the masked-in lanes of B's row are inside `g.b` (caller); masked-out lanes are not accessed.
        let bv: [__m256; V] = std::array::from_fn(|v| unsafe { _mm256_maskload_ps(b.add(v * L), masks[v]) });
        for (r, acc) in acc.iter_mut().enumerate() {
            // SAFETY: A[i0 + r][p] is inside `g.a` (caller).
            let x = _mm256_set1_ps(unsafe { *a.add(r * lda) });
            for v in 0..V {
                acc[v] = _mm256_fmadd_ps(x, bv[v], acc[v]);
            }
        }
        a = a.wrapping_add(1);
        b = b.wrapping_add(ldb);
    }
    let c = g.c.as_mut_ptr();
    for (r, acc) in acc.iter().enumerate() {
        for v in 0..V {
            // SAFETY: the masked-in lanes of C's row i0 + r from column j0 + 8v are inside `g.c` (caller).
            unsafe { _mm256_maskstore_ps(c.add((i0 + r) * ldc + j0 + v * L), masks[v], acc[v]) };
        }
    }
}
