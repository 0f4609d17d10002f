//! Inner loops of attention over an f16 key/value cache: query-key scores and weighted sums of
//! value rows. Each SIMD kernel computes exactly what its scalar twin computes, bit for bit: the
//! score of a key is summed in the twin's order (one SIMD lane per key, the head dimension walked
//! in order, multiply and add kept separate), and value updates are element-wise. So the decoder's
//! numerics (which mirror llama.cpp's CPU flash attention) do not depend on the SIMD level.
//!
//! Key and value rows live in a cache of rows `stride` values wide; a head is the `q.len()`
//! values from `off` in each row. The loops are entries of the kernel table
//! ([`crate::Kernels::attention`]): heads of whole SIMD vectors up to [`MAX_HEAD`] take the table's
//! SIMD entries, others the scalar twins (the free functions here).

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

/// `s[j] = dot(q, key j) * scale`: see [`AttentionKernels::scores`].
pub(crate) type ScoresFn =
    fn(q: &[f32], keys: &[f16], stride: usize, off: usize, scale: f32, sum: ScoreSum, s: &mut [f32]);
/// `acc += p * v`, rounded to f16 after the add when the flag is set.
pub(crate) type AxpyFn = fn(acc: &mut [f32], p: f32, v: &[f16], round: bool);
/// `acc = f16(acc * m)`.
pub(crate) type ScaleRoundFn = fn(acc: &mut [f32], m: f32);
/// `acc = fma(q * d, p, acc)` over a row of Q8_0 blocks.
pub(crate) type MadFn = fn(acc: &mut [f32], p: f32, v: &[u8]);

/// The attention loops of a kernel table ([`crate::Kernels::attention`]). Every entry checks its
/// arguments (a mismatch panics, naming it); heads whose width is not a whole number of the
/// level's SIMD vectors, or wider than [`MAX_HEAD`], take the scalar twins. The SIMD entries are
/// only ever installed by the table after detecting their CPU features.
#[derive(Clone, Copy)]
pub struct AttentionKernels {
    /// Head widths the entries below take are multiples of this (1 for the scalar twins).
    lanes: usize,
    scores: ScoresFn,
    axpy: AxpyFn,
    scale_round: ScaleRoundFn,
    mad_q8_0: MadFn,
}

impl std::fmt::Debug for AttentionKernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttentionKernels").field("lanes", &self.lanes).finish_non_exhaustive()
    }
}

impl AttentionKernels {
    /// The scalar twins.
    pub(crate) const SCALAR: AttentionKernels = AttentionKernels {
        lanes: 1,
        scores: scores_scalar,
        axpy: axpy_scalar,
        scale_round: scale_round_scalar,
        mad_q8_0: mad_q8_0_scalar,
    };

    /// SIMD entries for heads of whole `lanes`-wide vectors (each entry checks its own arguments; the caller
    /// hands them out only for the proof of their CPU features).
    pub(crate) fn simd(
        lanes: usize,
        scores: ScoresFn,
        axpy: AxpyFn,
        scale_round: ScaleRoundFn,
        mad_q8_0: MadFn,
    ) -> Self {
        AttentionKernels { lanes, scores, axpy, scale_round, mad_q8_0 }
    }

    /// Whether heads of `hd` values take this table's entries (else the scalar twins).
    #[inline]
    fn takes(&self, hd: usize) -> bool {
        hd.is_multiple_of(self.lanes) && hd <= MAX_HEAD
    }

    /// `s[j] = dot(q, key j) * scale` for the `s.len()` first keys, summed as `sum` says.
    ///
    /// # Panics
    /// If the keys do not hold `s.len()` rows of `stride` values with the head at `off`.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub fn scores(
        &self,
        q: &[f32],
        keys: &[f16],
        stride: usize,
        off: usize,
        scale: f32,
        sum: ScoreSum,
        s: &mut [f32],
    ) {
        let f = if self.takes(q.len()) { self.scores } else { scores_scalar };
        f(q, keys, stride, off, scale, sum, s);
    }

    /// `acc[d] += p * v[d]` (multiply, then add: no fused rounding).
    ///
    /// # Panics
    /// If the lengths differ.
    #[inline]
    pub fn axpy_f16(&self, acc: &mut [f32], p: f32, v: &[f16]) {
        let f = if self.takes(acc.len()) { self.axpy } else { axpy_scalar };
        f(acc, p, v, false);
    }

    /// `acc[d] = f16(acc[d] + p * v[d])`: the update of a value accumulator kept in f16 (held as
    /// f32 values that are all exact f16 numbers; rounding to nearest, ties to even).
    ///
    /// # Panics
    /// If the lengths differ.
    #[inline]
    pub fn axpy_f16_round(&self, acc: &mut [f32], p: f32, v: &[f16]) {
        let f = if self.takes(acc.len()) { self.axpy } else { axpy_scalar };
        f(acc, p, v, true);
    }

    /// `acc[d] = f16(acc[d] * m)`.
    #[inline]
    pub fn scale_round(&self, acc: &mut [f32], m: f32) {
        let f = if self.takes(acc.len()) { self.scale_round } else { scale_round_scalar };
        f(acc, m);
    }

    /// `acc[d] = fma(v[d], p, acc[d])` for a row `v` of Q8_0 blocks (34 bytes per 32 values), each
    /// value dequantised as `q * scale` in f32 first: ggml's `dequantize_row_q8_0` followed by
    /// `ggml_vec_mad_f32`, the value update of its CPU flash attention over a q8_0 V cache.
    ///
    /// # Panics
    /// If `v` is not `acc.len() / 32` whole blocks or `acc.len()` is not a multiple of 32.
    #[inline]
    pub fn mad_q8_0(&self, acc: &mut [f32], p: f32, v: &[u8]) {
        let f = if self.takes(acc.len()) { self.mad_q8_0 } else { mad_q8_0_scalar };
        f(acc, p, v);
    }
}

/// Scalar twin of [`AttentionKernels::scores`].
///
/// # Panics
/// As [`AttentionKernels::scores`].
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

/// Scalar twin of [`AttentionKernels::axpy_f16`].
///
/// # Panics
/// If the lengths differ.
pub fn axpy_f16_scalar(acc: &mut [f32], p: f32, v: &[f16]) {
    assert_eq!(acc.len(), v.len(), "axpy_f16: lengths differ");
    for (a, &x) in acc.iter_mut().zip(v) {
        *a += p * x.to_f32();
    }
}

/// Scalar twin of [`AttentionKernels::axpy_f16_round`].
///
/// # Panics
/// If the lengths differ.
pub fn axpy_f16_round_scalar(acc: &mut [f32], p: f32, v: &[f16]) {
    assert_eq!(acc.len(), v.len(), "axpy_f16_round: lengths differ");
    for (a, &x) in acc.iter_mut().zip(v) {
        *a = f16::from_f32(*a + p * x.to_f32()).to_f32();
    }
}

/// The scalar twins of both value updates, as one entry.
fn axpy_scalar(acc: &mut [f32], p: f32, v: &[f16], round: bool) {
    if round {
        axpy_f16_round_scalar(acc, p, v);
    } else {
        axpy_f16_scalar(acc, p, v);
    }
}

/// Scalar twin of [`AttentionKernels::scale_round`].
pub fn scale_round_scalar(acc: &mut [f32], m: f32) {
    for a in acc.iter_mut() {
        *a = f16::from_f32(*a * m).to_f32();
    }
}

/// Scalar twin of [`AttentionKernels::mad_q8_0`] (the same single rounding per step: `mul_add`).
///
/// # Panics
/// As [`AttentionKernels::mad_q8_0`].
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

/// Checks that `keys` holds `n` rows of `stride` values with a head of `hd` values at `off`.
///
/// # Panics
/// If it does not (or a size overflows).
pub(crate) fn check_rows(keys: &[f16], stride: usize, off: usize, hd: usize, n: usize) {
    let ok = off.checked_add(hd).is_some_and(|e| e <= stride)
        && (n == 0
            || (n - 1)
                .checked_mul(stride)
                .and_then(|x| x.checked_add(off + hd))
                .is_some_and(|e| e <= keys.len()));
    assert!(
        ok,
        "attention: {n} rows of width {stride} (head {off}..{}) exceed {} cached values",
        off.saturating_add(hd),
        keys.len()
    );
}

/// The AVX2 attention loops (heads of whole 8-lane vectors), handed out only for the proof that
/// the CPU has AVX2, FMA and F16C.
#[cfg(target_arch = "x86_64")]
pub(crate) use x86::kernels as avx2;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{check_q8_0_row, check_rows, f16, AttentionKernels, ScoreSum, MAX_HEAD};
    use crate::x86::Avx2;
    use std::arch::x86_64::*;

    /// Lanes of an AVX2 f32 vector: the head widths the entries take are multiples of it.
    const LANES: usize = 8;

    /// The entries below, handed out only for the proof that the CPU has AVX2, FMA and F16C.
    pub(crate) fn kernels(_: Avx2) -> AttentionKernels {
        AttentionKernels::simd(LANES, scores_entry, axpy_entry, scale_round_entry, mad_q8_0_entry)
    }

    /// Checks that a head of `hd` values is whole vectors of at most [`MAX_HEAD`].
    fn check_head(hd: usize) {
        assert!(
            hd.is_multiple_of(LANES) && hd <= MAX_HEAD,
            "attention: head of {hd} values for 8-lane kernels"
        );
    }

    // SAFETY (the four entries below): each is private and only handed out by `kernels`, whose argument proves
    // that the CPU has AVX2, FMA and F16C; each checks the bounds its kernel's loads and stores rely on first.

    fn scores_entry(
        q: &[f32],
        keys: &[f16],
        stride: usize,
        off: usize,
        scale: f32,
        sum: ScoreSum,
        s: &mut [f32],
    ) {
        check_head(q.len());
        check_rows(keys, stride, off, q.len(), s.len());
        // SAFETY: see above.
        unsafe { scores(q, keys, stride, off, scale, sum, s) }
    }

    fn axpy_entry(acc: &mut [f32], p: f32, v: &[f16], round: bool) {
        check_head(acc.len());
        assert_eq!(acc.len(), v.len(), "axpy_f16: lengths differ");
        // SAFETY: see above.
        unsafe { axpy(acc, p, v, round) }
    }

    fn scale_round_entry(acc: &mut [f32], m: f32) {
        check_head(acc.len());
        // SAFETY: see above.
        unsafe { scale_round(acc, m) }
    }

    fn mad_q8_0_entry(acc: &mut [f32], p: f32, v: &[u8]) {
        check_q8_0_row(acc.len(), v.len());
        // SAFETY: see above.
        unsafe { mad_q8_0(acc, p, v) }
    }

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
    unsafe fn scores(
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
    unsafe fn axpy(acc: &mut [f32], p: f32, v: &[f16], round: bool) {
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
    unsafe fn scale_round(acc: &mut [f32], m: f32) {
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
    unsafe fn mad_q8_0(acc: &mut [f32], p: f32, v: &[u8]) {
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
    use crate::Kernels;
    use rand::{Rng, SeedableRng};

    fn rand_f16(rng: &mut impl Rng, n: usize, scale: f32) -> Vec<f16> {
        (0..n).map(|_| f16::from_f32(rng.gen_range(-scale..scale))).collect()
    }

    fn bits(x: &[f32]) -> Vec<u32> {
        x.iter().map(|v| v.to_bits()).collect()
    }

    #[test]
    fn scores_are_bit_identical_to_the_scalar_twin() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for k in Kernels::all_levels() {
            let att = k.attention();
            for (hd, stride, off, n) in [
                (64, 192, 64, 1),
                (64, 64, 0, 7),
                (64, 192, 128, 8),
                (128, 256, 0, 37),
                (8, 8, 0, 17),
                (12, 24, 12, 9),
            ] {
                let keys = rand_f16(&mut rng, n * stride, 2.0);
                let q: Vec<f32> = (0..hd).map(|_| rng.gen_range(-3.0f32..3.0)).collect();
                for sum in [ScoreSum::F32, ScoreSum::F64] {
                    let (mut a, mut b) = (vec![0f32; n], vec![0f32; n]);
                    att.scores(&q, &keys, stride, off, 0.125, sum, &mut a);
                    scores_scalar(&q, &keys, stride, off, 0.125, sum, &mut b);
                    assert_eq!(bits(&a), bits(&b), "{:?} hd {hd} n {n} {sum:?}", k.level());
                }
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
        Kernels::detect().attention().scores(&q, &keys, hd, 0, 0.5, ScoreSum::F64, &mut s);
        for (j, &sj) in s.iter().enumerate() {
            let want: f64 = (0..hd).map(|d| q[d] as f64 * keys[j * hd + d].to_f64()).sum::<f64>() * 0.5;
            assert!((sj as f64 - want).abs() < 1e-5, "key {j}: {sj} vs {want}");
        }
    }

    #[test]
    fn value_updates_are_bit_identical_to_the_scalar_twins() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for k in Kernels::all_levels() {
            let att = k.attention();
            for hd in [8, 64, 128, 12] {
                let v = rand_f16(&mut rng, hd, 4.0);
                let acc0: Vec<f32> =
                    (0..hd).map(|_| f16::from_f32(rng.gen_range(-8.0f32..8.0)).to_f32()).collect();
                let p = rng.gen_range(0.0f32..1.0);
                let (mut a, mut b) = (acc0.clone(), acc0.clone());
                att.axpy_f16(&mut a, p, &v);
                axpy_f16_scalar(&mut b, p, &v);
                assert_eq!(bits(&a), bits(&b), "{:?} axpy hd {hd}", k.level());
                let (mut a, mut b) = (acc0.clone(), acc0.clone());
                att.axpy_f16_round(&mut a, p, &v);
                axpy_f16_round_scalar(&mut b, p, &v);
                assert_eq!(bits(&a), bits(&b), "{:?} axpy_round hd {hd}", k.level());
                assert!(a.iter().all(|&x| f16::from_f32(x).to_f32() == x), "results are f16 values");
                let (mut a, mut b) = (acc0.clone(), acc0);
                att.scale_round(&mut a, p);
                scale_round_scalar(&mut b, p);
                assert_eq!(bits(&a), bits(&b), "{:?} scale_round hd {hd}", k.level());
            }
        }
    }

    #[test]
    fn mad_q8_0_is_bit_identical_to_its_twin_and_matches_dequantise_then_fma() {
        use crate::formats::{blocks_as_bytes, q8_0};
        let mut rng = rand::rngs::StdRng::seed_from_u64(6);
        for k in Kernels::all_levels() {
            for hd in [32, 64, 128, 96] {
                let x: Vec<f32> = (0..hd).map(|_| rng.gen_range(-5.0f32..5.0)).collect();
                let blocks = q8_0::quantize_ref(&x);
                let v = blocks_as_bytes(&blocks);
                let acc0: Vec<f32> = (0..hd).map(|_| rng.gen_range(-8.0f32..8.0)).collect();
                let p = rng.gen_range(0.0f32..1.0);
                let (mut a, mut b) = (acc0.clone(), acc0.clone());
                k.attention().mad_q8_0(&mut a, p, v);
                mad_q8_0_scalar(&mut b, p, v);
                assert_eq!(bits(&a), bits(&b), "{:?} hd {hd}", k.level());
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

    #[test]
    fn simd_entries_check_their_arguments() {
        for k in Kernels::all_levels() {
            let att = k.attention();
            let keys = vec![f16::ZERO; 64];
            // Two rows of width 64 do not fit in 64 cached values.
            let r = std::panic::catch_unwind(|| {
                att.scores(&[0.0; 64], &keys, 64, 0, 1.0, ScoreSum::F32, &mut [0.0; 2])
            });
            assert!(r.is_err(), "{:?}: scores past the cache", k.level());
            let r = std::panic::catch_unwind(|| att.axpy_f16(&mut [0.0; 64], 1.0, &keys[..32]));
            assert!(r.is_err(), "{:?}: axpy of unequal lengths", k.level());
            let r = std::panic::catch_unwind(|| att.mad_q8_0(&mut [0.0; 64], 1.0, &[0u8; 34]));
            assert!(r.is_err(), "{:?}: mad_q8_0 past the row", k.level());
        }
    }
}
