//! Inner loops of attention over an f16 key/value cache: query-key scores and weighted sums of
//! value rows. Each SIMD kernel computes exactly what its scalar twin computes, bit for bit: the
//! score of a key is summed in the twin's order (one SIMD lane per key, the head dimension walked
//! in order, multiply and add kept separate), and value updates are element-wise. So the decoder's
//! numerics (which mirror llama.cpp's CPU flash attention) do not depend on the SIMD level.
//!
//! Key and value rows live in a cache of rows `stride` values wide; a head is the `q.len()`
//! values from `off` in each row.

use half::f16;

/// Most head width the kernels take (wider heads use the scalar twins).
pub const MAX_HEAD: usize = 256;

/// How the products of a query-key score are summed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScoreSum {
    /// In f32, in order (`(q·k in f32) * scale`).
    F32,
    /// Each f32 product widened to f64 and summed in order, then rounded to f32 (ggml's
    /// `ggml_vec_dot_f16`); `(that) * scale`.
    F64,
}

/// `s[j] = dot(q, key j) * scale` for the `s.len()` first keys, summed as `sum` says.
///
/// # Panics
/// If the keys do not hold `s.len()` rows of `stride` values with the head at `off`.
pub fn scores(q: &[f32], keys: &[f16], stride: usize, off: usize, scale: f32, sum: ScoreSum, s: &mut [f32]) {
    check_rows(keys, stride, off, q.len(), s.len());
    #[cfg(target_arch = "x86_64")]
    if simd_ok(q.len()) {
        // SAFETY: `simd_ok` confirmed AVX2 + F16C (a table at Avx2 level or above is only built after
        // detection); the rows were bounds-checked above.
        unsafe { x86::scores(q, keys, stride, off, scale, sum, s) };
        return;
    }
    #[cfg(target_arch = "aarch64")]
    if crate::aarch64::attention::simd_ok(q.len()) {
        crate::aarch64::attention::scores(q, keys, stride, off, scale, sum, s);
        return;
    }
    scores_scalar(q, keys, stride, off, scale, sum, s);
}

/// Scalar twin of [`scores`].
pub fn scores_scalar(
    q: &[f32],
    keys: &[f16],
    stride: usize,
    off: usize,
    scale: f32,
    sum: ScoreSum,
    s: &mut [f32],
) {
    check_rows(keys, stride, off, q.len(), s.len());
    let hd = q.len();
    for (j, sj) in s.iter_mut().enumerate() {
        let k = &keys[j * stride + off..j * stride + off + hd];
        *sj = match sum {
            ScoreSum::F32 => q.iter().zip(k).map(|(&a, &b)| a * b.to_f32()).sum::<f32>() * scale,
            ScoreSum::F64 => {
                q.iter().zip(k).map(|(&a, &b)| (a * b.to_f32()) as f64).sum::<f64>() as f32 * scale
            }
        };
    }
}

/// `acc[d] += p * v[d]` (multiply, then add: no fused rounding).
pub fn axpy_f16(acc: &mut [f32], p: f32, v: &[f16]) {
    assert_eq!(acc.len(), v.len(), "axpy_f16: lengths differ");
    #[cfg(target_arch = "x86_64")]
    if simd_ok(acc.len()) {
        // SAFETY: AVX2 + F16C confirmed by `simd_ok`; lengths equal (asserted).
        unsafe { x86::axpy(acc, p, v, false) };
        return;
    }
    #[cfg(target_arch = "aarch64")]
    if crate::aarch64::attention::simd_ok(acc.len()) {
        crate::aarch64::attention::axpy(acc, p, v, false);
        return;
    }
    axpy_f16_scalar(acc, p, v);
}

/// Scalar twin of [`axpy_f16`].
pub fn axpy_f16_scalar(acc: &mut [f32], p: f32, v: &[f16]) {
    assert_eq!(acc.len(), v.len(), "axpy_f16: lengths differ");
    for (a, &x) in acc.iter_mut().zip(v) {
        *a += p * x.to_f32();
    }
}

/// `acc[d] = f16(acc[d] + p * v[d])`: the update of a value accumulator kept in f16 (held as
/// f32 values that are all exact f16 numbers; rounding to nearest, ties to even).
pub fn axpy_f16_round(acc: &mut [f32], p: f32, v: &[f16]) {
    assert_eq!(acc.len(), v.len(), "axpy_f16_round: lengths differ");
    #[cfg(target_arch = "x86_64")]
    if simd_ok(acc.len()) {
        // SAFETY: AVX2 + F16C confirmed by `simd_ok`; lengths equal (asserted).
        unsafe { x86::axpy(acc, p, v, true) };
        return;
    }
    #[cfg(target_arch = "aarch64")]
    if crate::aarch64::attention::simd_ok(acc.len()) {
        crate::aarch64::attention::axpy(acc, p, v, true);
        return;
    }
    axpy_f16_round_scalar(acc, p, v);
}

/// Scalar twin of [`axpy_f16_round`].
pub fn axpy_f16_round_scalar(acc: &mut [f32], p: f32, v: &[f16]) {
    assert_eq!(acc.len(), v.len(), "axpy_f16_round: lengths differ");
    for (a, &x) in acc.iter_mut().zip(v) {
        *a = f16::from_f32(*a + p * x.to_f32()).to_f32();
    }
}

/// `acc[d] = f16(acc[d] * m)`.
pub fn scale_round(acc: &mut [f32], m: f32) {
    #[cfg(target_arch = "x86_64")]
    if simd_ok(acc.len()) {
        // SAFETY: AVX2 + F16C confirmed by `simd_ok`.
        unsafe { x86::scale_round(acc, m) };
        return;
    }
    #[cfg(target_arch = "aarch64")]
    if crate::aarch64::attention::simd_ok(acc.len()) {
        crate::aarch64::attention::scale_round(acc, m);
        return;
    }
    scale_round_scalar(acc, m);
}

/// Scalar twin of [`scale_round`].
pub fn scale_round_scalar(acc: &mut [f32], m: f32) {
    for a in acc.iter_mut() {
        *a = f16::from_f32(*a * m).to_f32();
    }
}

/// `acc[d] = fma(v[d], p, acc[d])` for a row `v` of Q8_0 blocks (34 bytes per 32 values), each
/// value dequantised as `q * scale` in f32 first: ggml's `dequantize_row_q8_0` followed by
/// `ggml_vec_mad_f32`, the value update of its CPU flash attention over a q8_0 V cache.
///
/// # Panics
/// If `v` is not `acc.len() / 32` whole blocks or `acc.len()` is not a multiple of 32.
pub fn mad_q8_0(acc: &mut [f32], p: f32, v: &[u8]) {
    check_q8_0_row(acc.len(), v.len());
    #[cfg(target_arch = "x86_64")]
    if simd_ok(acc.len()) {
        // SAFETY: AVX2 + FMA confirmed by `simd_ok` (the Avx2 level is only set after detecting
        // avx2, fma and f16c); `v` holds `acc.len() / 32` blocks (checked above).
        unsafe { x86::mad_q8_0(acc, p, v) };
        return;
    }
    mad_q8_0_scalar(acc, p, v);
}

/// Scalar twin of [`mad_q8_0`] (the same single rounding per step: `mul_add`).
pub fn mad_q8_0_scalar(acc: &mut [f32], p: f32, v: &[u8]) {
    check_q8_0_row(acc.len(), v.len());
    for (a, b) in acc.chunks_exact_mut(Q8_0_VALUES).zip(v.chunks_exact(Q8_0_BYTES)) {
        let d = f16::from_le_bytes([b[0], b[1]]).to_f32();
        for (a, &q) in a.iter_mut().zip(&b[2..]) {
            *a = (f32::from(q as i8) * d).mul_add(p, *a);
        }
    }
}

/// Values in a Q8_0 block.
const Q8_0_VALUES: usize = 32;
/// Bytes of a Q8_0 block (f16 scale, 32 signed bytes).
const Q8_0_BYTES: usize = 34;

fn check_q8_0_row(n: usize, bytes: usize) {
    assert!(
        n.is_multiple_of(Q8_0_VALUES) && bytes == n / Q8_0_VALUES * Q8_0_BYTES,
        "mad_q8_0: {n} values do not fill the {bytes} bytes of Q8_0 blocks"
    );
}

/// The SIMD kernels apply: the process-wide table is at AVX2 level or above (so AVX2, FMA and
/// F16C were detected, and `EDGEVL_FORCE_SCALAR` is off) and the head is whole 8-lane vectors.
#[cfg(target_arch = "x86_64")]
fn simd_ok(hd: usize) -> bool {
    use crate::dispatch::{kernels, SimdLevel};
    hd.is_multiple_of(8) && hd <= MAX_HEAD && kernels().level() >= SimdLevel::Avx2
}

fn check_rows(keys: &[f16], stride: usize, off: usize, hd: usize, n: usize) {
    let ok = off.checked_add(hd).is_some_and(|e| e <= stride)
        && (n == 0
            || (n - 1)
                .checked_mul(stride)
                .and_then(|x| x.checked_add(off + hd))
                .is_some_and(|e| e <= keys.len()));
    assert!(
        ok,
        "attention: {n} rows of width {stride} (head {off}..{}) exceed {} cached values",
        off + hd,
        keys.len()
    );
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{f16, ScoreSum};
    use std::arch::x86_64::*;

    /// Eight f16 values from `p` widened to f32 (exact).
    ///
    /// # Safety
    /// F16C available; `p` points at 8 readable f16 values.
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn load8(p: *const f16) -> __m256 {
        // SAFETY: 16 readable bytes at `p` (caller); unaligned load.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) }
    }

    /// Rounds 8 f32 lanes to f16 and back (round to nearest even, as `half`).
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    fn round16(x: __m256) -> __m256 {
        _mm256_cvtph_ps(_mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x))
    }

    /// Transposes 8 rows of 8 lanes: out[t] lane j = rows[j] lane t.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        [
            _mm256_permute2f128_ps::<0x20>(u0, u4),
            _mm256_permute2f128_ps::<0x20>(u1, u5),
            _mm256_permute2f128_ps::<0x20>(u2, u6),
            _mm256_permute2f128_ps::<0x20>(u3, u7),
            _mm256_permute2f128_ps::<0x31>(u0, u4),
            _mm256_permute2f128_ps::<0x31>(u1, u5),
            _mm256_permute2f128_ps::<0x31>(u2, u6),
            _mm256_permute2f128_ps::<0x31>(u3, u7),
        ]
    }

    /// Scores of 8 keys at a time, one lane per key, dimensions in order; the last `n % 8` keys
    /// by the scalar twin.
    ///
    /// # Safety
    /// AVX2 + F16C available; `q.len() % 8 == 0`; `keys` holds `s.len()` rows as checked by
    /// `check_rows`.
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn scores(
        q: &[f32],
        keys: &[f16],
        stride: usize,
        off: usize,
        scale: f32,
        sum: ScoreSum,
        s: &mut [f32],
    ) {
        let hd = q.len();
        let n8 = s.len() / 8 * 8;
        let vscale = _mm256_set1_ps(scale);
        for j0 in (0..n8).step_by(8) {
            // Like the twin's `Sum`, start from -0.0.
            let mut acc = _mm256_set1_ps(-0.0);
            let mut lo = _mm256_set1_pd(-0.0);
            let mut hi = _mm256_set1_pd(-0.0);
            for d0 in (0..hd).step_by(8) {
                let mut rows = [_mm256_setzero_ps(); 8];
                for (j, r) in rows.iter_mut().enumerate() {
                    // SAFETY: key j0 + j < s.len() and d0 + 8 <= hd: inside the checked rows.
                    *r = unsafe { load8(keys.as_ptr().add((j0 + j) * stride + off + d0)) };
                }
                let cols = transpose8(rows);
                for (t, c) in cols.iter().enumerate() {
                    let p = _mm256_mul_ps(_mm256_set1_ps(q[d0 + t]), *c);
                    match sum {
                        ScoreSum::F32 => acc = _mm256_add_ps(acc, p),
                        ScoreSum::F64 => {
                            lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(p)));
                            hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(p)));
                        }
                    }
                }
            }
            if sum == ScoreSum::F64 {
                acc = _mm256_set_m128(_mm256_cvtpd_ps(hi), _mm256_cvtpd_ps(lo));
            }
            let out = _mm256_mul_ps(acc, vscale);
            // SAFETY: j0 + 8 <= s.len().
            unsafe { _mm256_storeu_ps(s.as_mut_ptr().add(j0), out) };
        }
        let rest = &keys[n8 * stride..];
        super::scores_scalar(q, rest, stride, off, scale, sum, &mut s[n8..]);
    }

    /// `acc = acc + p * v`, rounded to f16 after the add when `round`.
    ///
    /// # Safety
    /// AVX2 + F16C available; `acc.len() == v.len()`, a multiple of 8.
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn axpy(acc: &mut [f32], p: f32, v: &[f16], round: bool) {
        let vp = _mm256_set1_ps(p);
        for d in (0..acc.len()).step_by(8) {
            // SAFETY: d + 8 <= acc.len() == v.len().
            unsafe {
                let a = _mm256_loadu_ps(acc.as_ptr().add(d));
                let mut r = _mm256_add_ps(a, _mm256_mul_ps(vp, load8(v.as_ptr().add(d))));
                if round {
                    r = round16(r);
                }
                _mm256_storeu_ps(acc.as_mut_ptr().add(d), r);
            }
        }
    }

    /// `acc = f16(acc * m)`.
    ///
    /// # Safety
    /// AVX2 + F16C available; `acc.len()` a multiple of 8.
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn scale_round(acc: &mut [f32], m: f32) {
        let vm = _mm256_set1_ps(m);
        for d in (0..acc.len()).step_by(8) {
            // SAFETY: d + 8 <= acc.len().
            unsafe {
                let a = _mm256_loadu_ps(acc.as_ptr().add(d));
                _mm256_storeu_ps(acc.as_mut_ptr().add(d), round16(_mm256_mul_ps(a, vm)));
            }
        }
    }

    /// `acc = fma(q * d, p, acc)` over Q8_0 blocks, 8 values at a time.
    ///
    /// # Safety
    /// AVX2 + FMA available; `v` holds `acc.len() / 32` whole blocks of 34 bytes.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn mad_q8_0(acc: &mut [f32], p: f32, v: &[u8]) {
        let vp = _mm256_set1_ps(p);
        for (a, b) in acc.chunks_exact_mut(32).zip(v.chunks_exact(34)) {
            let d = _mm256_set1_ps(f16::from_le_bytes([b[0], b[1]]).to_f32());
            for g in 0..4 {
                // SAFETY: bytes 2 + 8g .. 10 + 8g and values 8g .. 8g + 8 lie inside the block.
                unsafe {
                    let q = _mm256_cvtepi8_epi32(_mm_loadl_epi64(b.as_ptr().add(2 + 8 * g).cast()));
                    let x = _mm256_mul_ps(_mm256_cvtepi32_ps(q), d);
                    let pa = a.as_mut_ptr().add(8 * g);
                    _mm256_storeu_ps(pa, _mm256_fmadd_ps(x, vp, _mm256_loadu_ps(pa)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn rand_f16(rng: &mut impl Rng, n: usize, scale: f32) -> Vec<f16> {
        (0..n).map(|_| f16::from_f32(rng.gen_range(-scale..scale))).collect()
    }

    #[test]
    fn scores_are_bit_identical_to_the_scalar_twin() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for (hd, stride, off, n) in [
            (64, 192, 64, 1),
            (64, 64, 0, 7),
            (64, 192, 128, 8),
            (128, 256, 0, 37),
            (8, 8, 0, 17),
            (12, 24, 12, 9),
        ] {
            let keys = rand_f16(&mut rng, n * stride, 2.0);
            // Queries rounded to f16 (as the flash path) and not.
            let q: Vec<f32> = (0..hd).map(|_| rng.gen_range(-3.0f32..3.0)).collect();
            for sum in [ScoreSum::F32, ScoreSum::F64] {
                let (mut a, mut b) = (vec![0f32; n], vec![0f32; n]);
                scores(&q, &keys, stride, off, 0.125, sum, &mut a);
                scores_scalar(&q, &keys, stride, off, 0.125, sum, &mut b);
                let (a, b): (Vec<u32>, Vec<u32>) =
                    (a.iter().map(|v| v.to_bits()).collect(), b.iter().map(|v| v.to_bits()).collect());
                assert_eq!(a, b, "hd {hd} n {n} {sum:?}");
            }
        }
    }

    #[test]
    fn scores_match_an_f64_reference() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let (hd, n) = (64, 13);
        let keys = rand_f16(&mut rng, n * hd, 1.0);
        let q: Vec<f32> = (0..hd).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
        let mut s = vec![0f32; n];
        scores(&q, &keys, hd, 0, 0.5, ScoreSum::F64, &mut s);
        for (j, &sj) in s.iter().enumerate() {
            let want: f64 = (0..hd).map(|d| q[d] as f64 * keys[j * hd + d].to_f64()).sum::<f64>() * 0.5;
            assert!((sj as f64 - want).abs() < 1e-5, "key {j}: {sj} vs {want}");
        }
    }

    #[test]
    fn value_updates_are_bit_identical_to_the_scalar_twins() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for hd in [8, 64, 128, 12] {
            let v = rand_f16(&mut rng, hd, 4.0);
            let acc0: Vec<f32> =
                (0..hd).map(|_| f16::from_f32(rng.gen_range(-8.0f32..8.0)).to_f32()).collect();
            let p = rng.gen_range(0.0f32..1.0);
            let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            let (mut a, mut b) = (acc0.clone(), acc0.clone());
            axpy_f16(&mut a, p, &v);
            axpy_f16_scalar(&mut b, p, &v);
            assert_eq!(bits(&a), bits(&b), "axpy hd {hd}");
            let (mut a, mut b) = (acc0.clone(), acc0.clone());
            axpy_f16_round(&mut a, p, &v);
            axpy_f16_round_scalar(&mut b, p, &v);
            assert_eq!(bits(&a), bits(&b), "axpy_round hd {hd}");
            assert!(a.iter().all(|&x| f16::from_f32(x).to_f32() == x), "results are f16 values");
            let (mut a, mut b) = (acc0.clone(), acc0);
            scale_round(&mut a, p);
            scale_round_scalar(&mut b, p);
            assert_eq!(bits(&a), bits(&b), "scale_round hd {hd}");
        }
    }

    #[test]
    fn mad_q8_0_is_bit_identical_to_its_twin_and_matches_dequantise_then_fma() {
        use crate::formats::{blocks_as_bytes, q8_0};
        let mut rng = rand::rngs::StdRng::seed_from_u64(6);
        for hd in [32, 64, 128, 96] {
            let x: Vec<f32> = (0..hd).map(|_| rng.gen_range(-5.0f32..5.0)).collect();
            let blocks = q8_0::quantize_ref(&x);
            let v = blocks_as_bytes(&blocks);
            let acc0: Vec<f32> = (0..hd).map(|_| rng.gen_range(-8.0f32..8.0)).collect();
            let p = rng.gen_range(0.0f32..1.0);
            let (mut a, mut b) = (acc0.clone(), acc0.clone());
            mad_q8_0(&mut a, p, v);
            mad_q8_0_scalar(&mut b, p, v);
            let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a), bits(&b), "hd {hd}");
            // Reference: dequantise with the format's own scalar code, then one fused update.
            let mut deq = vec![0f32; hd];
            <q8_0::Q8_0 as crate::formats::WeightFormat>::dequantize(&blocks, &mut deq);
            for d in 0..hd {
                let want = (deq[d] as f64 * p as f64 + acc0[d] as f64) as f32;
                assert!(
                    (a[d] - want).abs() <= want.abs() * 1e-6 + 1e-6,
                    "hd {hd} dim {d}: {} vs {want}",
                    a[d]
                );
            }
        }
    }
}
