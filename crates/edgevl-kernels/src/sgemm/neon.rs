//! The small GEMM with NEON: blocks of up to [`MR`] rows x 8 columns of `C` in 12 registers, then the last columns
//! (fewer than 8) by the scalar chain; `vfmaq_f32` is the scalar twin's fused multiply-add in every lane.

use std::arch::aarch64::*;

use super::{block_scalar, Sgemm, SgemmKernel};
use crate::aarch64::Neon;

/// Rows of `C` per block.
const MR: usize = 6;
/// Columns of `C` per block (two vectors).
const NR: usize = 8;

/// The kernel, handed out only for the proof that the CPU has Advanced SIMD.
pub(crate) fn entry(_: Neon) -> SgemmKernel {
    SgemmKernel::simd(run)
}

/// The entry [`entry`] hands out.
fn run(g: &mut Sgemm) {
    let (m, n) = (g.m, g.n);
    let whole = n / NR * NR;
    for i0 in (0..m).step_by(MR) {
        let r = (m - i0).min(MR);
        for j0 in (0..whole).step_by(NR) {
            match r {
                1 => block::<1>(g, i0, j0),
                2 => block::<2>(g, i0, j0),
                3 => block::<3>(g, i0, j0),
                4 => block::<4>(g, i0, j0),
                5 => block::<5>(g, i0, j0),
                _ => block::<6>(g, i0, j0),
            }
        }
        block_scalar(g, i0..i0 + r, whole..n);
    }
}

/// Rows `i0..i0 + R`, columns `j0..j0 + 8`.
fn block<const R: usize>(g: &mut Sgemm, i0: usize, j0: usize) {
    // `Sgemm::new` checked that rows `i0..i0 + R` of A (k values each), rows `0..k` of B and rows `i0..i0 + R` of C
    // (columns up to n) lie inside their buffers; the callers keep `i0 + R <= m` and `j0 + 8 <= n`.
    assert!(i0 + R <= g.m && j0 + NR <= g.n, "sgemm::neon: block outside the product");
    // SAFETY: this entry exists only for the proof of NEON (see `entry`); the block lies inside the buffers.
    unsafe { kernel::<R>(g, i0, j0) }
}

/// # Safety
/// The CPU has NEON; rows `i0..i0 + R` of A and C and columns `j0..j0 + 8` of B and C lie inside the buffers.
#[target_feature(enable = "neon")]
unsafe fn kernel<const R: usize>(g: &mut Sgemm, i0: usize, j0: usize) {
    let (k, lda, ldb, ldc) = (g.k, g.lda, g.ldb, g.ldc);
    let mut acc = [[vdupq_n_f32(0.0); 2]; R];
    // Cursors on A[i0][p] and B[p][j0], advanced one column of A and one row of B per step (k steps); they are only
    // dereferenced while inside the buffers (caller), so wrapping arithmetic is enough.
    let mut a = g.a.as_ptr().wrapping_add(i0 * lda);
    let mut b = g.b.as_ptr().wrapping_add(j0);
    for _ in 0..k {
        // SAFETY: B[p][j0..j0 + 8] is inside `g.b` (caller).
        let bv = unsafe { [vld1q_f32(b), vld1q_f32(b.add(4))] };
        for (r, acc) in acc.iter_mut().enumerate() {
            // SAFETY: A[i0 + r][p] is inside `g.a` (caller).
            let x = vdupq_n_f32(unsafe { *a.add(r * lda) });
            acc[0] = vfmaq_f32(acc[0], x, bv[0]);
            acc[1] = vfmaq_f32(acc[1], x, bv[1]);
        }
        a = a.wrapping_add(1);
        b = b.wrapping_add(ldb);
    }
    let c = g.c.as_mut_ptr();
    for (r, acc) in acc.iter().enumerate() {
        // SAFETY: C[i0 + r][j0..j0 + 8] is inside `g.c` (caller).
        unsafe {
            let row = c.add((i0 + r) * ldc + j0);
            vst1q_f32(row, acc[0]);
            vst1q_f32(row.add(4), acc[1]);
        }
    }
}
