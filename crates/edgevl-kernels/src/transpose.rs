//! Keys laid out for attention's small GEMM ([`crate::Kernels::transpose`]): `kt[c * n + j] = rows[j * stride + c]`
//! for `n` keys of `hd` values, each `stride` after the one before, so that `kt` holds `K^T` (`hd` rows of `n`).
//! Every prefill chunk lays out the whole cached context of each KV head this way, and the ViT each tile's keys.
//!
//! The SIMD builds move square blocks (16 x 16 with AVX-512, 8 x 8 with AVX2) through registers: one (masked) load
//! per key and one (masked) store per output row, against one scalar store per value in the scalar twin. A pure
//! data movement: every level writes the same values.

/// Writes `kt` from `rows`: see the module documentation.
pub(crate) type TransposeFn = fn(rows: &[f32], stride: usize, shape: (usize, usize), kt: &mut [f32]);

/// Panics unless `rows` holds `n` keys of `hd` values `stride` apart (`stride >= hd`) and `kt` has room for `n * hd`.
pub(crate) fn check(rows: &[f32], stride: usize, (n, hd): (usize, usize), kt: &[f32]) {
    assert!(
        stride >= hd && (n == 0 || rows.len() >= (n - 1) * stride + hd) && kt.len() >= n * hd,
        "transpose: {n} keys of {hd} values {stride} apart do not fit {} values, or K^T {}",
        rows.len(),
        kt.len()
    );
}

/// The scalar twin: eight keys a step, so that each row of `kt` receives eight consecutive values at once rather than
/// one value per key (about 3x faster than a scatter per key).
pub(crate) fn transpose_scalar(rows: &[f32], stride: usize, (n, hd): (usize, usize), kt: &mut [f32]) {
    check(rows, stride, (n, hd), kt);
    const STEP: usize = 8;
    let whole = n - n % STEP;
    for j0 in (0..whole).step_by(STEP) {
        let keys: [&[f32]; STEP] = std::array::from_fn(|i| &rows[(j0 + i) * stride..][..hd]);
        for (c, out) in kt.chunks_exact_mut(n).take(hd).enumerate() {
            for (o, key) in out[j0..j0 + STEP].iter_mut().zip(&keys) {
                *o = key[c];
            }
        }
    }
    for j in whole..n {
        for (out, &x) in kt.chunks_exact_mut(n).zip(&rows[j * stride..][..hd]) {
            out[j] = x;
        }
    }
}

/// Calls `block(j0, nk, c0, nc)` for each `B x B` block of the transposition, keys outermost: keys `j0..j0 + nk`,
/// values `c0..c0 + nc` (`nk, nc <= B`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn for_blocks<const B: usize>((n, hd): (usize, usize), mut block: impl FnMut(usize, usize, usize, usize)) {
    for j0 in (0..n).step_by(B) {
        for c0 in (0..hd).step_by(B) {
            block(j0, (n - j0).min(B), c0, (hd - c0).min(B));
        }
    }
}

/// The AVX2 build: 8 x 8 blocks.
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use super::{check, TransposeFn};
    use crate::x86::avx2::transpose8;
    use std::arch::x86_64::*;

    /// The build, handed out only for the proof that the CPU has AVX2.
    pub(crate) fn entry(_: crate::x86::Avx2) -> TransposeFn {
        run
    }

    fn run(rows: &[f32], stride: usize, shape: (usize, usize), kt: &mut [f32]) {
        check(rows, stride, shape, kt);
        // SAFETY: handed out only for the proof of AVX2; shapes checked above.
        unsafe { body(rows, stride, shape, kt) }
    }

    /// Lanes `0..k` set (`k <= 8`), as `vmaskmovps` reads a mask.
    #[target_feature(enable = "avx2,fma,f16c")]
    fn lanes(k: usize) -> __m256i {
        _mm256_cmpgt_epi32(_mm256_set1_epi32(k as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
    }

    /// # Safety
    /// The CPU has AVX2, FMA and F16C; the shapes passed [`check`].
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn body(rows: &[f32], stride: usize, shape: (usize, usize), kt: &mut [f32]) {
        let (src, dst, n) = (rows.as_ptr(), kt.as_mut_ptr(), shape.0);
        super::for_blocks::<8>(shape, |j0, nk, c0, nc| {
            let (kmask, cmask) = (lanes(nk), lanes(nc));
            let r: [__m256; 8] = std::array::from_fn(|i| {
                if i < nk {
                    // SAFETY: key j0 + i < n, its values c0..c0 + nc lie inside `rows` (checked); the masked-off
                    // lanes are not read.
                    unsafe { _mm256_maskload_ps(src.add((j0 + i) * stride + c0), cmask) }
                } else {
                    _mm256_setzero_ps()
                }
            });
            for (c, v) in transpose8(&r).iter().enumerate().take(nc) {
                // SAFETY: row c0 + c < hd of `kt`, keys j0..j0 + nk <= n: inside `kt` (checked); masked-off lanes
                // are not written.
                unsafe { _mm256_maskstore_ps(dst.add((c0 + c) * n + j0), kmask, *v) };
            }
        });
    }
}

/// The AVX-512 build: 16 x 16 blocks.
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use super::{check, TransposeFn};
    use crate::x86::avx512::transpose16;
    use std::arch::x86_64::*;

    /// The build, handed out only for the proof that the CPU has AVX-512 F/BW/VL/VNNI.
    pub(crate) fn entry(_: crate::x86::Avx512Vnni) -> TransposeFn {
        run
    }

    fn run(rows: &[f32], stride: usize, shape: (usize, usize), kt: &mut [f32]) {
        check(rows, stride, shape, kt);
        // SAFETY: handed out only for the proof of the features; shapes checked above.
        unsafe { body(rows, stride, shape, kt) }
    }

    /// Lanes `0..k` set (`k <= 16`).
    fn lanes(k: usize) -> __mmask16 {
        (((1u32) << k) - 1) as __mmask16
    }

    /// # Safety
    /// The CPU has the enabled features; the shapes passed [`check`].
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn body(rows: &[f32], stride: usize, shape: (usize, usize), kt: &mut [f32]) {
        let (src, dst, n) = (rows.as_ptr(), kt.as_mut_ptr(), shape.0);
        super::for_blocks::<16>(shape, |j0, nk, c0, nc| {
            let (kmask, cmask) = (lanes(nk), lanes(nc));
            let r: [__m512; 16] = std::array::from_fn(|i| {
                if i < nk {
                    // SAFETY: key j0 + i < n, its values c0..c0 + nc lie inside `rows` (checked); masked-off lanes
                    // are not read (and cannot fault).
                    unsafe { _mm512_maskz_loadu_ps(cmask, src.add((j0 + i) * stride + c0)) }
                } else {
                    _mm512_setzero_ps()
                }
            });
            for (c, v) in transpose16(&r).iter().enumerate().take(nc) {
                // SAFETY: row c0 + c < hd of `kt`, keys j0..j0 + nk <= n: inside `kt` (checked); masked-off lanes
                // are not written.
                unsafe { _mm512_mask_storeu_ps(dst.add((c0 + c) * n + j0), kmask, *v) };
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Kernels;

    #[test]
    fn every_level_writes_the_definition() {
        for (n, hd, stride) in [
            (1, 1, 1),
            (7, 3, 5),
            (8, 72, 1152),
            (9, 4, 4),
            (17, 5, 9),
            (15, 16, 16),
            (33, 17, 40),
            (47, 80, 80),
            (130, 128, 128),
            (729, 72, 1152),
        ] {
            let rows: Vec<f32> = (0..(n - 1) * stride + hd).map(|i| i as f32 * 0.5 - 3.0).collect();
            let mut want = vec![f32::NAN; n * hd];
            transpose_scalar(&rows, stride, (n, hd), &mut want);
            for j in 0..n {
                for c in 0..hd {
                    assert_eq!(want[c * n + j], rows[j * stride + c], "n={n} hd={hd} j={j} c={c}");
                }
            }
            for k in Kernels::all_levels() {
                // One value past the end: the SIMD builds may not write it.
                let mut got = vec![f32::NAN; n * hd + 1];
                k.transpose(&rows, stride, (n, hd), &mut got);
                assert!(got[n * hd].is_nan(), "{:?} n={n} hd={hd}: wrote past K^T", k.level());
                assert!(
                    got[..n * hd].iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{:?} n={n} hd={hd} stride={stride}",
                    k.level()
                );
            }
        }
    }

    #[test]
    #[should_panic(expected = "do not fit")]
    fn short_rows_are_refused() {
        let mut kt = vec![0f32; 12];
        Kernels::detect().transpose(&[0f32; 10], 4, (3, 4), &mut kt);
    }
}
