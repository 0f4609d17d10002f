//! Small f32 matrix products in the "outer product" form attention needs: `C = A B` with `A` (`m x k`) and `B`
//! (`k x n`) both row-major, as `S = Q K^T` (the keys transposed once per head, `B = K^T`) and `O = P V` (`B = V`,
//! the cached rows as they are). Each kernel keeps an `MR x NR` block of `C` in registers and, for every `p`,
//! broadcasts `A[i][p]` against a vector of `B[p][j..]`, so no horizontal sum is ever needed: a head 64-80 wide
//! (`k` of `S`) runs at the FMA units' rate, where the inner-product float GEMM ([`crate::fgemm`]) spends half its
//! time reducing 16 partial sums per output.
//!
//! Numerics (the same at every level, so the SIMD kernels equal the scalar twin bit for bit): every output is one
//! chain of fused multiply-adds in `p` order from zero, `c = fma(a[i][p], b[p][j], c)` for `p = 0, 1, ..., k - 1`.

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon;

use crate::entry::KernelEntry;
use crate::error::KernelError;

/// One checked product `C = A B` ([`Sgemm::new`]): the fields are private, so a kernel can rely on the shapes.
#[derive(Debug)]
pub struct Sgemm<'a> {
    m: usize,
    n: usize,
    k: usize,
    a: &'a [f32],
    lda: usize,
    b: &'a [f32],
    ldb: usize,
    c: &'a mut [f32],
    ldc: usize,
}

impl<'a> Sgemm<'a> {
    /// `C[i][j] = sum_p A[i][p] B[p][j]` for `i < m`, `j < n`, `p < k`, where `A[i][p] = a[i * lda + p]`,
    /// `B[p][j] = b[p * ldb + j]` and `C[i][j] = c[i * ldc + j]` (the elements of `c` between rows are left as
    /// they are). Longer buffers are fine.
    ///
    /// # Errors
    /// If a leading dimension is shorter than its row (`lda < k`, `ldb < n`, `ldc < n`), a buffer is shorter than
    /// its rows, or a size overflows.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        (m, n, k): (usize, usize, usize),
        a: &'a [f32],
        lda: usize,
        b: &'a [f32],
        ldb: usize,
        c: &'a mut [f32],
        ldc: usize,
    ) -> Result<Self, KernelError> {
        let stride = |what, expected: usize, found: usize| {
            if found < expected {
                Err(KernelError::Length { what, expected, found, unit: "elements" })
            } else {
                Ok(())
            }
        };
        stride("sgemm lda", k, lda)?;
        stride("sgemm ldb", n, ldb)?;
        stride("sgemm ldc", n, ldc)?;
        // Elements a row-major matrix of `rows` rows of `cols` values `ld` apart spans.
        let span = |rows: usize, cols: usize, ld: usize| {
            if rows == 0 || cols == 0 {
                Some(0)
            } else {
                (rows - 1).checked_mul(ld).and_then(|x| x.checked_add(cols))
            }
        };
        let overflow = KernelError::SizeOverflow { dtype: crate::DType::F32, rows: m.max(k), cols: n.max(k) };
        let (la, lb, lc) = match (span(m, k, lda), span(k, n, ldb), span(m, n, ldc)) {
            (Some(a), Some(b), Some(c)) => (a, b, c),
            _ => return Err(overflow),
        };
        stride("sgemm A", la, a.len())?;
        stride("sgemm B", lb, b.len())?;
        stride("sgemm C", lc, c.len())?;
        Ok(Sgemm { m, n, k, a, lda, b, ldb, c, ldc })
    }
}

/// Computes a checked product.
pub(crate) type SgemmFn = fn(g: &mut Sgemm);

/// The small-GEMM entry of a kernel table ([`crate::Kernels::sgemm`]): the scalar twin, or a SIMD kernel the table
/// installed after detecting its CPU features.
pub type SgemmKernel = KernelEntry<SgemmFn>;

impl SgemmKernel {
    /// The scalar twin.
    pub(crate) const SCALAR: SgemmKernel = KernelEntry::scalar(sgemm_scalar);

    /// Computes the product, with the numerics of the module documentation (bit-identical at every level).
    #[inline]
    pub fn run(&self, g: &mut Sgemm) {
        (self.get())(g);
    }
}

/// The blocks of an `m x n` product the x86 kernels compute, as `(i0, rows, j0, cols)`: rows in blocks of `mr`
/// (the last may be shorter), columns in blocks of `nr` (the last may be shorter).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) fn blocks(
    m: usize,
    n: usize,
    mr: usize,
    nr: usize,
) -> impl Iterator<Item = (usize, usize, usize, usize)> {
    (0..m)
        .step_by(mr)
        .flat_map(move |i0| (0..n).step_by(nr).map(move |j0| (i0, (m - i0).min(mr), j0, (n - j0).min(nr))))
}

/// Output `(i, j)`: the fused multiply-add chain of the module documentation.
#[inline(always)]
fn element(g: &Sgemm, i: usize, j: usize) -> f32 {
    let a = &g.a[i * g.lda..][..g.k];
    let mut acc = 0f32;
    for (p, &x) in a.iter().enumerate() {
        acc = x.mul_add(g.b[p * g.ldb + j], acc);
    }
    acc
}

/// Outputs `(i, j)` for `i` in `rows`, `j` in `cols` by the scalar chain (the twin, and the SIMD kernels' edges).
pub(crate) fn block_scalar(g: &mut Sgemm, rows: std::ops::Range<usize>, cols: std::ops::Range<usize>) {
    for i in rows {
        for j in cols.clone() {
            let v = element(g, i, j);
            g.c[i * g.ldc + j] = v;
        }
    }
}

/// The scalar twin of every small-GEMM kernel.
fn sgemm_scalar(g: &mut Sgemm) {
    let (m, n) = (g.m, g.n);
    block_scalar(g, 0..m, 0..n);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Kernels;

    fn lcg(seed: u64) -> impl FnMut() -> f32 {
        let mut s = seed;
        move || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        }
    }

    #[test]
    fn every_level_equals_the_scalar_twin_bit_for_bit_on_odd_shapes() {
        let mut r = lcg(7);
        for &(m, n, k) in &[
            (1, 1, 1),
            (7, 33, 72),
            (6, 32, 64),
            (13, 72, 729),
            (48, 729, 72),
            (5, 17, 3),
            (12, 80, 200),
            (23, 31, 17),
            (9, 50, 33),
            (8, 16, 8),
            (10, 45, 5),
            (3, 0, 5),
            (0, 4, 4),
            (4, 4, 0),
        ] {
            let (lda, ldb, ldc) = (k + 3, n + 5, n + 2);
            let a: Vec<f32> = (0..m * lda).map(|_| r()).collect();
            let b: Vec<f32> = (0..k * ldb).map(|_| r()).collect();
            let mut want = vec![f32::NAN; m * ldc];
            let mut g = Sgemm::new((m, n, k), &a, lda, &b, ldb, &mut want, ldc).unwrap();
            Kernels::scalar().sgemm().run(&mut g);
            for i in 0..m {
                for j in 0..n {
                    let f64_ref: f64 = (0..k).map(|p| a[i * lda + p] as f64 * b[p * ldb + j] as f64).sum();
                    let got = want[i * ldc + j] as f64;
                    assert!(
                        (got - f64_ref).abs() <= 1e-5 * (1.0 + k as f64),
                        "scalar ({i},{j}) {got} vs {f64_ref}"
                    );
                }
            }
            for kern in Kernels::all_levels() {
                let mut got = vec![f32::NAN; m * ldc];
                let mut g = Sgemm::new((m, n, k), &a, lda, &b, ldb, &mut got, ldc).unwrap();
                kern.sgemm().run(&mut g);
                for i in 0..m {
                    for j in 0..n {
                        let (x, y) = (got[i * ldc + j], want[i * ldc + j]);
                        assert_eq!(
                            x.to_bits(),
                            y.to_bits(),
                            "{:?} m{m} n{n} k{k} ({i},{j}): {x} vs {y}",
                            kern.level()
                        );
                    }
                    // The gaps between rows are untouched.
                    assert!(
                        got[i * ldc + n..(i + 1) * ldc].iter().all(|x| x.is_nan()),
                        "{:?} wrote a gap",
                        kern.level()
                    );
                }
            }
        }
    }

    #[test]
    fn short_buffers_and_strides_are_errors() {
        let (a, b) = (vec![0f32; 12], vec![0f32; 16]);
        let mut c = vec![0f32; 12];
        assert!(Sgemm::new((3, 4, 4), &a, 4, &b, 4, &mut c, 4).is_ok());
        assert!(Sgemm::new((3, 4, 4), &a, 3, &b, 4, &mut c, 4).is_err(), "lda < k");
        assert!(Sgemm::new((3, 4, 4), &a, 4, &b, 3, &mut c, 4).is_err(), "ldb < n");
        assert!(Sgemm::new((4, 4, 4), &a, 4, &b, 4, &mut c, 4).is_err(), "A short");
        assert!(Sgemm::new((3, 4, 4), &a, 4, &b, 4, &mut c, 5).is_err(), "C short");
        assert!(Sgemm::new((3, 4, 4), &a, 4, &b[..15], 4, &mut c, 4).is_err(), "B short");
        assert!(Sgemm::new((usize::MAX, 4, 4), &a, usize::MAX, &b, 4, &mut c, 4).is_err(), "overflow");
    }
}
