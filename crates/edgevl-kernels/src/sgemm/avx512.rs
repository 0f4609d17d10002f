//! The small GEMM with AVX-512: blocks of up to [`MR`] rows x 32 columns of `C` in 24 registers, masked loads and
//! stores for the last columns (masked lanes are neither read nor written), the scalar twin's fused multiply-add
//! chain in every lane.

use std::arch::x86_64::*;

use super::{blocks, Sgemm, SgemmKernel};
use crate::x86::Avx512Vnni;

/// Rows of `C` per block: 12 x 2 accumulators, 2 rows of B and a broadcast take 27 of the 32 registers, and each
/// row of B loaded serves 12 rows of A (6 before: 71% -> 74-81% of one Xeon core's FMA peak on so400m's 729 x 729 x
/// 72 scores, 60-62% -> 71-74% on its values).
const MR: usize = 12;
/// Lanes of a vector.
const L: usize = 16;

/// The kernel, handed out only for the proof that the CPU has AVX-512 F/BW/VL (and AVX2, FMA).
pub(crate) fn entry(_: Avx512Vnni) -> SgemmKernel {
    SgemmKernel::simd(run)
}

/// The entry [`entry`] hands out: row blocks of [`MR`], column blocks of 32 (16 for a last one of at most 16).
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
                    6 => block::<6, $v>(g, i0, j0, w),
                    7 => block::<7, $v>(g, i0, j0, w),
                    8 => block::<8, $v>(g, i0, j0, w),
                    9 => block::<9, $v>(g, i0, j0, w),
                    10 => block::<10, $v>(g, i0, j0, w),
                    11 => block::<11, $v>(g, i0, j0, w),
                    _ => block::<12, $v>(g, i0, j0, w),
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

/// Rows `i0..i0 + R`, columns `j0..j0 + w` (`w <= V * 16`).
fn block<const R: usize, const V: usize>(g: &mut Sgemm, i0: usize, j0: usize, w: usize) {
    // `Sgemm::new` checked that rows `i0..i0 + R` of A (k values each), rows `0..k` of B and rows `i0..i0 + R` of C
    // (columns up to n) lie inside their buffers; the callers keep `i0 + R <= m` and `j0 + w <= n`.
    assert!(i0 + R <= g.m && j0 + w <= g.n && w <= V * L, "sgemm::avx512: block outside the product");
    let mask = |v: usize| -> __mmask16 {
        let lanes = w.saturating_sub(v * L).min(L);
        ((1u32 << lanes) - 1) as __mmask16
    };
    let masks: [__mmask16; V] = std::array::from_fn(mask);
    // SAFETY: this entry exists only for the proof of AVX-512 F (see `entry`); the block lies inside the buffers
    // (asserted above and checked by `Sgemm::new`), and every access outside the masked-in lanes is suppressed.
    unsafe { kernel::<R, V>(g, i0, j0, masks) }
}

/// # Safety
/// The CPU has AVX-512 F; rows `i0..i0 + R` of A and C and columns `j0..` of B and C up to the masked-in lanes lie
/// inside the buffers.
#[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl")]
unsafe fn kernel<const R: usize, const V: usize>(g: &mut Sgemm, i0: usize, j0: usize, masks: [__mmask16; V]) {
    let (k, lda, ldb, ldc) = (g.k, g.lda, g.ldb, g.ldc);
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    // Cursors on A[i0][p] and B[p][j0], advanced one column of A and one row of B per step (k steps); they are only
    // dereferenced while inside the buffers (caller), so wrapping arithmetic is enough.
    let mut a = g.a.as_ptr().wrapping_add(i0 * lda);
    let mut b = g.b.as_ptr().wrapping_add(j0);
    for _ in 0..k {
        // SAFETY: the masked-in lanes of B's row are inside `g.b` (caller).
        let bv: [__m512; V] =
            std::array::from_fn(|v| unsafe { _mm512_maskz_loadu_ps(masks[v], b.add(v * L)) });
        for (r, acc) in acc.iter_mut().enumerate() {
            // SAFETY: A[i0 + r][p] is inside `g.a` (caller).
            let x = _mm512_set1_ps(unsafe { *a.add(r * lda) });
            for v in 0..V {
                acc[v] = _mm512_fmadd_ps(x, bv[v], acc[v]);
            }
        }
        a = a.wrapping_add(1);
        b = b.wrapping_add(ldb);
    }
    let c = g.c.as_mut_ptr();
    for (r, acc) in acc.iter().enumerate() {
        for v in 0..V {
            // SAFETY: the masked-in lanes of C's row i0 + r from column j0 + 16v are inside `g.c` (caller).
            unsafe { _mm512_mask_storeu_ps(c.add((i0 + r) * ldc + j0 + v * L), masks[v], acc[v]) };
        }
    }
}
