//! The unnormalised softmax of a row of attention scores ([`crate::Kernels::exp_shifted`]): each `x` becomes
//! `exp(x * scale - max)` by [`exp_approx`] (relative error below 3e-7), `max` the largest scaled score, and the
//! exponentials are summed in 8 interleaved partial sums added in order at the end. Dividing by the sum gives the
//! softmax; the `(max, sum)` of parts of a row merge into the whole row's (flash attention).
//!
//! One portable body, written so the compiler vectorises every loop (partial maxima and sums, no fused
//! multiply-adds: Rust never contracts `a * b + c`), compiled once per SIMD level behind the level's proof: every
//! level computes the same operations in the same order, so the results are bit-identical.

use crate::ops::exp_approx;

/// Computes `(max, sum)` and rewrites the row: see the module documentation.
pub(crate) type ExpShiftedFn = fn(x: &mut [f32], scale: f32) -> (f32, f32);

/// The body every level compiles: two passes over the row, one reading it for the maximum of the scaled scores, one
/// writing the exponentials and summing them (the scaled score is recomputed there, the same product).
#[inline(always)]
fn body(x: &mut [f32], scale: f32) -> (f32, f32) {
    let mut maxes = [f32::NEG_INFINITY; 16];
    let chunks = x.chunks_exact(16);
    let mut max = chunks.remainder().iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b * scale));
    for c in chunks {
        for (a, &v) in maxes.iter_mut().zip(c) {
            *a = a.max(v * scale);
        }
    }
    max = maxes.iter().fold(max, |a, &b| a.max(b));
    // The sum in 8 partial sums over consecutive 8-value chunks, in order; 16 values a step so the exponentials fill
    // a 512-bit vector, each half then added as its own 8-value chunk.
    let exp = |v: &mut f32| *v = exp_approx(*v * scale - max);
    let mut p = [0f32; 8];
    let mut wide = x.chunks_exact_mut(16);
    for c in &mut wide {
        c.iter_mut().for_each(exp);
        let (lo, hi) = c.split_at(8);
        for (a, &v) in p.iter_mut().zip(lo) {
            *a += v;
        }
        for (a, &v) in p.iter_mut().zip(hi) {
            *a += v;
        }
    }
    let mut narrow = wide.into_remainder().chunks_exact_mut(8);
    for c in &mut narrow {
        c.iter_mut().for_each(exp);
        for (a, &v) in p.iter_mut().zip(&*c) {
            *a += v;
        }
    }
    let rest = narrow.into_remainder();
    rest.iter_mut().for_each(exp);
    let tail: f32 = rest.iter().sum();
    (max, p.iter().sum::<f32>() + tail)
}

/// The scalar twin (vectorised for the compile-time target only).
pub fn exp_shifted_scalar(x: &mut [f32], scale: f32) -> (f32, f32) {
    body(x, scale)
}

/// The body compiled for AVX2, handed out for the proof of the CPU's AVX2 level.
#[cfg(target_arch = "x86_64")]
pub(crate) fn avx2(_: crate::x86::Avx2) -> ExpShiftedFn {
    fn entry(x: &mut [f32], scale: f32) -> (f32, f32) {
        // SAFETY: handed out only for the proof that the CPU has AVX2 (`avx2`).
        unsafe { body_avx2(x, scale) }
    }
    entry
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn body_avx2(x: &mut [f32], scale: f32) -> (f32, f32) {
    body(x, scale)
}

/// The body compiled for AVX-512, handed out for the proof of the CPU's AVX-512 level.
#[cfg(target_arch = "x86_64")]
pub(crate) fn avx512(_: crate::x86::Avx512Vnni) -> ExpShiftedFn {
    fn entry(x: &mut [f32], scale: f32) -> (f32, f32) {
        // SAFETY: handed out only for the proof that the CPU has AVX-512 F/BW/VL (`avx512`).
        unsafe { body_avx512(x, scale) }
    }
    entry
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl")]
fn body_avx512(x: &mut [f32], scale: f32) -> (f32, f32) {
    body(x, scale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Kernels;

    #[test]
    fn every_level_equals_the_scalar_twin_and_the_exact_softmax() {
        let mut s = 99u64;
        let mut r = move || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 40.0 - 20.0
        };
        for n in [1, 7, 8, 15, 16, 17, 33, 100, 729, 1857] {
            let x: Vec<f32> = (0..n).map(|_| r()).collect();
            let mut want = x.clone();
            let (wmax, wsum) = exp_shifted_scalar(&mut want, 0.125);
            let exact_max = x.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b * 0.125));
            assert_eq!(wmax, exact_max);
            let exact_sum: f64 = x.iter().map(|&v| ((v * 0.125 - wmax) as f64).exp()).sum();
            assert!(((wsum as f64) - exact_sum).abs() < 1e-5 * exact_sum, "n={n}: {wsum} vs {exact_sum}");
            for k in Kernels::all_levels() {
                let mut got = x.clone();
                let (max, sum) = k.exp_shifted(&mut got, 0.125);
                assert_eq!(
                    (max.to_bits(), sum.to_bits()),
                    (wmax.to_bits(), wsum.to_bits()),
                    "{:?} n={n}",
                    k.level()
                );
                assert!(
                    got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{:?} n={n}",
                    k.level()
                );
            }
        }
    }
}
