//! Inner loops of attention over an f16 key/value cache: query-key dot products and weighted sums
//! of value rows, for the decoder's one-query path (decode steps and small batches). Each SIMD
//! kernel computes exactly what its scalar twin computes, bit for bit, because the order of every
//! rounding is fixed by the definition, not by the vector width:
//! - a dot product keeps [`DOT_SUMS`] partial sums (head position `d` adds to sum `d % 16` with a
//!   fused multiply-add, positions in order), then adds them pairwise in a fixed tree (`p[l] +=
//!   p[l + w]` for `w` = 8, 4, 2, 1);
//! - a weighted sum of value rows updates each output element with one fused multiply-add per
//!   row, rows in order.
//!
//! So the decoder's numerics do not depend on the SIMD level. Key and value rows live in a cache of
//! rows `stride` values wide; a head is the `q.len()` values from `off` in each row. The loops are
//! entries of the kernel table ([`crate::Kernels::attention`]): heads that are a multiple of
//! [`DOT_SUMS`] values up to [`MAX_HEAD`] take the table's SIMD entries, others the scalar twins
//! (the free functions here).

use half::f16;

/// Most head width the kernels take (wider heads use the scalar twins).
pub const MAX_HEAD: usize = 256;

/// Partial sums of a dot product: head position `d` adds to sum `d % DOT_SUMS`.
pub const DOT_SUMS: usize = 16;

/// `s[j] = dot(q, key j)`: see [`AttentionKernels::dot_f16`].
pub(crate) type DotFn = fn(q: &[f32], keys: &[f16], stride: usize, off: usize, s: &mut [f32]);
/// `acc[d] = fma(p[j], value j [d], acc[d])` for each row `j` in order: see [`AttentionKernels::mix_f16`].
pub(crate) type MixFn = fn(acc: &mut [f32], p: &[f32], values: &[f16], stride: usize, off: usize);
/// `acc = fma(q * d, p, acc)` over a row of Q8_0 blocks.
pub(crate) type MadFn = fn(acc: &mut [f32], p: f32, v: &[u8]);

/// The attention loops of a kernel table ([`crate::Kernels::attention`]). Every entry checks its
/// arguments (a mismatch panics, naming it); heads whose width is not a multiple of [`DOT_SUMS`],
/// or wider than [`MAX_HEAD`], take the scalar twins. The SIMD entries are only ever installed by
/// the table after detecting their CPU features.
#[derive(Clone, Copy)]
pub struct AttentionKernels {
    /// Whether the entries below are SIMD ones (else the scalar twins).
    simd: bool,
    dot: DotFn,
    mix: MixFn,
    mad_q8_0: MadFn,
}

impl std::fmt::Debug for AttentionKernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttentionKernels").field("simd", &self.simd).finish_non_exhaustive()
    }
}

impl AttentionKernels {
    /// The scalar twins.
    pub(crate) const SCALAR: AttentionKernels =
        AttentionKernels { simd: false, dot: dot_f16_scalar, mix: mix_f16_scalar, mad_q8_0: mad_q8_0_scalar };

    /// SIMD entries for heads that are a multiple of [`DOT_SUMS`] values (each entry checks its own arguments; the
    /// caller hands them out only for the proof of their CPU features).
    pub(crate) fn simd(dot: DotFn, mix: MixFn, mad_q8_0: MadFn) -> Self {
        AttentionKernels { simd: true, dot, mix, mad_q8_0 }
    }

    /// Whether heads of `hd` values take this table's entries (else the scalar twins).
    #[inline]
    fn takes(&self, hd: usize) -> bool {
        self.simd && hd.is_multiple_of(DOT_SUMS) && hd <= MAX_HEAD
    }

    /// `s[j] = dot(q, key j)` for the `s.len()` first keys, summed as the module documentation says.
    ///
    /// # Panics
    /// If the keys do not hold `s.len()` rows of `stride` values with the head at `off`.
    #[inline]
    pub fn dot_f16(&self, q: &[f32], keys: &[f16], stride: usize, off: usize, s: &mut [f32]) {
        let f = if self.takes(q.len()) { self.dot } else { dot_f16_scalar };
        f(q, keys, stride, off, s);
    }

    /// `acc[d] = fma(p[j], value j [d], acc[d])` for the `p.len()` first value rows, in order (one fused
    /// multiply-add per element and row).
    ///
    /// # Panics
    /// If the values do not hold `p.len()` rows of `stride` values with a head of `acc.len()` at `off`.
    #[inline]
    pub fn mix_f16(&self, acc: &mut [f32], p: &[f32], values: &[f16], stride: usize, off: usize) {
        let f = if self.takes(acc.len()) { self.mix } else { mix_f16_scalar };
        f(acc, p, values, stride, off);
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

/// The fixed reduction of [`DOT_SUMS`] partial sums: `p[l] += p[l + w]` for `w` = 8, 4, 2, 1.
pub(crate) fn reduce_sums(mut p: [f32; DOT_SUMS]) -> f32 {
    let mut w = DOT_SUMS / 2;
    while w > 0 {
        for l in 0..w {
            p[l] += p[l + w];
        }
        w /= 2;
    }
    p[0]
}

/// Scalar twin of [`AttentionKernels::dot_f16`].
///
/// # Panics
/// As [`AttentionKernels::dot_f16`].
pub fn dot_f16_scalar(q: &[f32], keys: &[f16], stride: usize, off: usize, s: &mut [f32]) {
    check_rows(keys, stride, off, q.len(), s.len());
    let hd = q.len();
    for (j, sj) in s.iter_mut().enumerate() {
        let k = &keys[j * stride + off..j * stride + off + hd];
        let mut p = [0f32; DOT_SUMS];
        for (d, (&a, &b)) in q.iter().zip(k).enumerate() {
            p[d % DOT_SUMS] = a.mul_add(b.to_f32(), p[d % DOT_SUMS]);
        }
        *sj = reduce_sums(p);
    }
}

/// Scalar twin of [`AttentionKernels::mix_f16`].
///
/// # Panics
/// As [`AttentionKernels::mix_f16`].
pub fn mix_f16_scalar(acc: &mut [f32], p: &[f32], values: &[f16], stride: usize, off: usize) {
    let hd = acc.len();
    check_rows(values, stride, off, hd, p.len());
    for (j, &pj) in p.iter().enumerate() {
        let v = &values[j * stride + off..j * stride + off + hd];
        for (a, &x) in acc.iter_mut().zip(v) {
            *a = pj.mul_add(x.to_f32(), *a);
        }
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

/// The AVX2 attention loops (heads of whole groups of 16 values), handed out only for the proof that
/// the CPU has AVX2, FMA and F16C.
#[cfg(target_arch = "x86_64")]
pub(crate) use x86::kernels as avx2;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{check_q8_0_row, check_rows, f16, AttentionKernels, DOT_SUMS, MAX_HEAD};
    use crate::x86::Avx2;
    use std::arch::x86_64::*;

    /// The entries below, handed out only for the proof that the CPU has AVX2, FMA and F16C.
    pub(crate) fn kernels(_: Avx2) -> AttentionKernels {
        AttentionKernels::simd(dot_entry, mix_entry, mad_q8_0_entry)
    }

    /// Checks that a head of `hd` values is whole groups of [`DOT_SUMS`] of at most [`MAX_HEAD`].
    pub(super) fn check_head(hd: usize) {
        assert!(
            hd.is_multiple_of(DOT_SUMS) && hd <= MAX_HEAD,
            "attention: head of {hd} values for 16-sum kernels"
        );
    }

    // SAFETY (the three entries below): each is private and only handed out by `kernels`, whose argument proves
    // that the CPU has AVX2, FMA and F16C; each checks the bounds its kernel's loads and stores rely on first.

    fn dot_entry(q: &[f32], keys: &[f16], stride: usize, off: usize, s: &mut [f32]) {
        check_head(q.len());
        check_rows(keys, stride, off, q.len(), s.len());
        // SAFETY: see above.
        unsafe { dot(q, keys, stride, off, s) }
    }

    fn mix_entry(acc: &mut [f32], p: &[f32], values: &[f16], stride: usize, off: usize) {
        check_head(acc.len());
        check_rows(values, stride, off, acc.len(), p.len());
        // SAFETY: see above.
        unsafe { mix(acc, p, values, stride, off) }
    }

    fn mad_q8_0_entry(acc: &mut [f32], p: f32, v: &[u8]) {
        check_q8_0_row(acc.len(), v.len());
        // SAFETY: see above.
        unsafe { mad_q8_0(acc, p, v) }
    }

    /// Prefetches the head's values of rows `j..j + n` (those inside `rows`) ahead of their use: the rows a task
    /// reads are one long stream, and the hardware prefetcher alone ramps up too slowly at its start.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn prefetch(rows: &[f16], stride: usize, off: usize, hd: usize, j: usize, n: usize) {
        let bytes: &[u8] = bytemuck_f16(rows);
        for r in j..j + n {
            crate::x86::avx2::prefetch_row(bytes, 2 * (r * stride + off), 2 * hd);
        }
    }

    /// The bytes of `rows`.
    fn bytemuck_f16(rows: &[f16]) -> &[u8] {
        // SAFETY: f16 is 2 plain bytes without padding or invalid values; the byte slice covers the same memory
        // with the same lifetime.
        unsafe { std::slice::from_raw_parts(rows.as_ptr().cast(), 2 * rows.len()) }
    }

    /// Rows [`prefetch`]ed ahead of the one in use.
    pub(super) const AHEAD: usize = 16;

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

    /// The fixed reduction of the 16 partial sums held as `lo` (sums 0..8) and `hi` (8..16), in the order of
    /// `super::reduce_sums`: w = 8 adds the halves lane by lane, w = 4 the 128-bit halves, w = 2 and w = 1 within
    /// the low 128 bits.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn reduce(lo: __m256, hi: __m256) -> f32 {
        let t = _mm256_add_ps(lo, hi);
        let u = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps::<1>(t));
        let v = _mm_add_ps(u, _mm_movehl_ps(u, u));
        _mm_cvtss_f32(_mm_add_ss(v, _mm_movehdup_ps(v)))
    }

    /// Dot products of 4 keys at a time (8 independent accumulator chains: 16 sums a key as two 8-lane vectors),
    /// then the last `n % 4` keys one at a time (the same sums in the same order).
    ///
    /// # Safety
    /// AVX2 + FMA + F16C available; `q.len() % 16 == 0`; `keys` holds `s.len()` rows as checked by `check_rows`.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot(q: &[f32], keys: &[f16], stride: usize, off: usize, s: &mut [f32]) {
        /// Dot products of keys `j0..j0 + R` with `q`.
        ///
        /// # Safety
        /// As `dot`, with `j0 + R <= s.len()`.
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn keys_from<const R: usize>(
            q: &[f32],
            keys: &[f16],
            stride: usize,
            off: usize,
            j0: usize,
        ) -> [f32; R] {
            let mut acc = [[_mm256_setzero_ps(); 2]; R];
            for d0 in (0..q.len()).step_by(DOT_SUMS) {
                // SAFETY: d0 + 16 <= hd = q.len().
                let (q0, q1) =
                    unsafe { (_mm256_loadu_ps(q.as_ptr().add(d0)), _mm256_loadu_ps(q.as_ptr().add(d0 + 8))) };
                for (r, a) in acc.iter_mut().enumerate() {
                    // SAFETY: key j0 + r < s.len() and d0 + 16 <= hd: inside the checked rows.
                    unsafe {
                        let k = keys.as_ptr().add((j0 + r) * stride + off + d0);
                        a[0] = _mm256_fmadd_ps(q0, load8(k), a[0]);
                        a[1] = _mm256_fmadd_ps(q1, load8(k.add(8)), a[1]);
                    }
                }
            }
            acc.map(|a| reduce(a[0], a[1]))
        }
        let n4 = s.len() / 4 * 4;
        for j0 in (0..n4).step_by(4) {
            prefetch(keys, stride, off, q.len(), j0 + AHEAD, 4);
            // SAFETY: j0 + 4 <= s.len().
            s[j0..j0 + 4].copy_from_slice(&unsafe { keys_from::<4>(q, keys, stride, off, j0) });
        }
        for (j, sj) in s.iter_mut().enumerate().skip(n4) {
            // SAFETY: j < s.len().
            *sj = unsafe { keys_from::<1>(q, keys, stride, off, j) }[0];
        }
    }

    /// Output values a pass of [`mix`] keeps in registers (8 vectors).
    const MIX_BLOCK: usize = 64;

    /// The weighted sum, [`MIX_BLOCK`] output values at a time in registers, every row of the block in order (each
    /// output element sees the rows in the same order as in the scalar twin).
    ///
    /// # Safety
    /// AVX2 + FMA + F16C available; `acc.len() % 16 == 0`; `values` holds `p.len()` rows as checked by
    /// `check_rows` for a head of `acc.len()` values.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn mix(acc: &mut [f32], p: &[f32], values: &[f16], stride: usize, off: usize) {
        let hd = acc.len();
        for b0 in (0..hd).step_by(MIX_BLOCK) {
            let nv = (hd - b0).min(MIX_BLOCK) / 8;
            let mut a = [_mm256_setzero_ps(); MIX_BLOCK / 8];
            for (i, ai) in a[..nv].iter_mut().enumerate() {
                // SAFETY: b0 + 8i + 8 <= hd = acc.len().
                *ai = unsafe { _mm256_loadu_ps(acc.as_ptr().add(b0 + 8 * i)) };
            }
            for (j, &pj) in p.iter().enumerate() {
                if b0 == 0 {
                    prefetch(values, stride, off, hd, j + AHEAD, 1);
                }
                let vp = _mm256_set1_ps(pj);
                // SAFETY: row j < p.len() and b0 + 8 nv <= hd: inside the checked rows.
                let v = unsafe { values.as_ptr().add(j * stride + off + b0) };
                for (i, ai) in a[..nv].iter_mut().enumerate() {
                    // SAFETY: as above.
                    *ai = _mm256_fmadd_ps(vp, unsafe { load8(v.add(8 * i)) }, *ai);
                }
            }
            for (i, ai) in a[..nv].iter().enumerate() {
                // SAFETY: b0 + 8i + 8 <= hd = acc.len().
                unsafe { _mm256_storeu_ps(acc.as_mut_ptr().add(b0 + 8 * i), *ai) };
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

/// The AVX-512 attention loops, handed out only for the proof that the CPU has the AVX-512 level.
#[cfg(target_arch = "x86_64")]
pub(crate) use x86_512::kernels as avx512;

#[cfg(target_arch = "x86_64")]
mod x86_512 {
    use super::x86::{check_head, prefetch, AHEAD};
    use super::{check_rows, f16, AttentionKernels, DOT_SUMS, MAX_HEAD};
    use crate::x86::Avx512Vnni;
    use std::arch::x86_64::*;

    /// The entries below (and the AVX2 level's `mad_q8_0`), handed out only for the proof that the CPU has
    /// AVX-512 F on top of AVX2, FMA and F16C.
    pub(crate) fn kernels(t: Avx512Vnni) -> AttentionKernels {
        let avx2 = super::avx2(t.avx2());
        AttentionKernels::simd(dot_entry, mix_entry, avx2.mad_q8_0)
    }

    // SAFETY (the two entries below): each is private and only handed out by `kernels`, whose argument proves
    // that the CPU has AVX-512 F, AVX2, FMA and F16C; each checks the bounds its kernel's loads and stores rely on
    // first.

    fn dot_entry(q: &[f32], keys: &[f16], stride: usize, off: usize, s: &mut [f32]) {
        check_head(q.len());
        check_rows(keys, stride, off, q.len(), s.len());
        // SAFETY: see above.
        unsafe { dot(q, keys, stride, off, s) }
    }

    fn mix_entry(acc: &mut [f32], p: &[f32], values: &[f16], stride: usize, off: usize) {
        check_head(acc.len());
        check_rows(values, stride, off, acc.len(), p.len());
        // SAFETY: see above.
        unsafe { mix(acc, p, values, stride, off) }
    }

    /// Sixteen f16 values from `p` widened to f32 (exact).
    ///
    /// # Safety
    /// AVX-512 F available; `p` points at 16 readable f16 values.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load16(p: *const f16) -> __m512 {
        // SAFETY: 32 readable bytes at `p` (caller); unaligned load.
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())) }
    }

    /// The fixed reduction of the 16 partial sums in the lanes of `z`, in the order of `super::reduce_sums`:
    /// w = 8 adds the 256-bit halves lane by lane, w = 4 the 128-bit halves, w = 2 and w = 1 within the low 128
    /// bits.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn reduce(z: __m512) -> f32 {
        let t = _mm256_add_ps(
            _mm512_castps512_ps256(z),
            _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(z))),
        );
        let u = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps::<1>(t));
        let v = _mm_add_ps(u, _mm_movehl_ps(u, u));
        _mm_cvtss_f32(_mm_add_ss(v, _mm_movehdup_ps(v)))
    }

    /// Dot products of 8 keys at a time (8 independent accumulator chains: the 16 sums of a key are the lanes
    /// of one vector), then the last `n % 8` keys one at a time (the same sums in the same order).
    ///
    /// # Safety
    /// AVX-512 F + F16C available; `q.len() % 16 == 0`; `keys` holds `s.len()` rows as checked by `check_rows`.
    #[target_feature(enable = "avx512f,f16c,fma")]
    unsafe fn dot(q: &[f32], keys: &[f16], stride: usize, off: usize, s: &mut [f32]) {
        /// Dot products of keys `j0..j0 + R` with `q`.
        ///
        /// # Safety
        /// As `dot`, with `j0 + R <= s.len()`.
        #[inline]
        #[target_feature(enable = "avx512f,f16c,fma")]
        unsafe fn keys_from<const R: usize>(
            q: &[f32],
            keys: &[f16],
            stride: usize,
            off: usize,
            j0: usize,
        ) -> [f32; R] {
            let mut acc = [_mm512_setzero_ps(); R];
            for d0 in (0..q.len()).step_by(DOT_SUMS) {
                // SAFETY: d0 + 16 <= hd = q.len().
                let qv = unsafe { _mm512_loadu_ps(q.as_ptr().add(d0)) };
                for (r, a) in acc.iter_mut().enumerate() {
                    // SAFETY: key j0 + r < s.len() and d0 + 16 <= hd: inside the checked rows.
                    *a = _mm512_fmadd_ps(
                        qv,
                        unsafe { load16(keys.as_ptr().add((j0 + r) * stride + off + d0)) },
                        *a,
                    );
                }
            }
            acc.map(|a| reduce(a))
        }
        let n8 = s.len() / 8 * 8;
        for j0 in (0..n8).step_by(8) {
            prefetch(keys, stride, off, q.len(), j0 + AHEAD, 8);
            // SAFETY: j0 + 8 <= s.len().
            s[j0..j0 + 8].copy_from_slice(&unsafe { keys_from::<8>(q, keys, stride, off, j0) });
        }
        for (j, sj) in s.iter_mut().enumerate().skip(n8) {
            // SAFETY: j < s.len().
            *sj = unsafe { keys_from::<1>(q, keys, stride, off, j) }[0];
        }
    }

    /// The weighted sum with the whole head (at most 16 vectors) in registers, every row in order (each output
    /// element sees the rows in the same order as in the scalar twin).
    ///
    /// # Safety
    /// AVX-512 F + F16C available; `acc.len() % 16 == 0` and `<= MAX_HEAD`; `values` holds `p.len()` rows as
    /// checked by `check_rows` for a head of `acc.len()` values.
    #[target_feature(enable = "avx512f,f16c,fma")]
    unsafe fn mix(acc: &mut [f32], p: &[f32], values: &[f16], stride: usize, off: usize) {
        let nv = acc.len() / 16;
        let mut a = [_mm512_setzero_ps(); MAX_HEAD / 16];
        for (i, ai) in a[..nv].iter_mut().enumerate() {
            // SAFETY: 16i + 16 <= acc.len().
            *ai = unsafe { _mm512_loadu_ps(acc.as_ptr().add(16 * i)) };
        }
        for (j, &pj) in p.iter().enumerate() {
            prefetch(values, stride, off, acc.len(), j + AHEAD, 1);
            let vp = _mm512_set1_ps(pj);
            // SAFETY: row j < p.len() and 16 nv <= hd: inside the checked rows.
            let v = unsafe { values.as_ptr().add(j * stride + off) };
            for (i, ai) in a[..nv].iter_mut().enumerate() {
                // SAFETY: as above.
                *ai = _mm512_fmadd_ps(vp, unsafe { load16(v.add(16 * i)) }, *ai);
            }
        }
        for (i, ai) in a[..nv].iter().enumerate() {
            // SAFETY: 16i + 16 <= acc.len().
            unsafe { _mm512_storeu_ps(acc.as_mut_ptr().add(16 * i), *ai) };
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

    /// Head widths and layouts: whole groups of 16 (SIMD entries), others (scalar twins), odd strides and offsets,
    /// key counts around the 4-key step.
    const SHAPES: [(usize, usize, usize, usize); 8] = [
        (64, 192, 64, 1),
        (64, 64, 0, 7),
        (64, 192, 128, 8),
        (128, 256, 0, 37),
        (16, 16, 0, 17),
        (80, 83, 3, 9),
        (12, 24, 12, 9),
        (256, 260, 4, 5),
    ];

    #[test]
    fn dot_products_are_bit_identical_to_the_scalar_twin() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for k in Kernels::all_levels() {
            let att = k.attention();
            for (hd, stride, off, n) in SHAPES {
                let keys = rand_f16(&mut rng, n * stride, 2.0);
                let q: Vec<f32> = (0..hd).map(|_| rng.gen_range(-3.0f32..3.0)).collect();
                let (mut a, mut b) = (vec![0f32; n], vec![0f32; n]);
                att.dot_f16(&q, &keys, stride, off, &mut a);
                dot_f16_scalar(&q, &keys, stride, off, &mut b);
                assert_eq!(bits(&a), bits(&b), "{:?} hd {hd} n {n}", k.level());
            }
        }
    }

    #[test]
    fn dot_products_match_an_f64_reference() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let (hd, n) = (128, 13);
        let keys = rand_f16(&mut rng, n * hd, 1.0);
        let q: Vec<f32> = (0..hd).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
        let mut s = vec![0f32; n];
        Kernels::detect().attention().dot_f16(&q, &keys, hd, 0, &mut s);
        for (j, &sj) in s.iter().enumerate() {
            let want: f64 = (0..hd).map(|d| q[d] as f64 * keys[j * hd + d].to_f64()).sum::<f64>();
            assert!((sj as f64 - want).abs() < 1e-5, "key {j}: {sj} vs {want}");
        }
    }

    #[test]
    fn weighted_sums_are_bit_identical_to_the_scalar_twin_and_match_an_f64_reference() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for k in Kernels::all_levels() {
            let att = k.attention();
            for (hd, stride, off, n) in SHAPES {
                let values = rand_f16(&mut rng, n * stride, 4.0);
                let p: Vec<f32> = (0..n).map(|_| rng.gen_range(0.0f32..1.0)).collect();
                let acc0: Vec<f32> = (0..hd).map(|_| rng.gen_range(-8.0f32..8.0)).collect();
                let (mut a, mut b) = (acc0.clone(), acc0.clone());
                att.mix_f16(&mut a, &p, &values, stride, off);
                mix_f16_scalar(&mut b, &p, &values, stride, off);
                assert_eq!(bits(&a), bits(&b), "{:?} hd {hd} n {n}", k.level());
                for d in 0..hd {
                    let want = acc0[d] as f64
                        + (0..n).map(|j| p[j] as f64 * values[j * stride + off + d].to_f64()).sum::<f64>();
                    assert!(
                        (a[d] as f64 - want).abs() < 1e-4 * (1.0 + want.abs()),
                        "hd {hd} dim {d}: {} vs {want}",
                        a[d]
                    );
                }
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
            let r = std::panic::catch_unwind(|| att.dot_f16(&[0.0; 64], &keys, 64, 0, &mut [0.0; 2]));
            assert!(r.is_err(), "{:?}: dot products past the cache", k.level());
            let r = std::panic::catch_unwind(|| att.mix_f16(&mut [0.0; 64], &[1.0; 2], &keys, 64, 0));
            assert!(r.is_err(), "{:?}: weighted sum past the cache", k.level());
            let r = std::panic::catch_unwind(|| att.mix_f16(&mut [0.0; 64], &[1.0], &keys, 64, 16));
            assert!(r.is_err(), "{:?}: head past the row", k.level());
            let r = std::panic::catch_unwind(|| att.mad_q8_0(&mut [0.0; 64], 1.0, &[0u8; 34]));
            assert!(r.is_err(), "{:?}: mad_q8_0 past the row", k.level());
        }
    }
}
