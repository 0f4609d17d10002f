//! The packed kernels with AVX2: each 16-row group as two halves of 8 rows (the low and high 32 bytes of every
//! 64-byte line), `vpmaddubsw` + `vpmaddwd` for the integer block dots, then the scalar twin's f32 sequence
//! ([`super::dot_scalar`]) lane by lane.
//!
//! Integer exactness: Q4 nibbles (`u <= 15`) times activations (`|a| <= 128`) give `vpmaddubsw` pairs of at most
//! 3840, and the 8 pair vectors of a block sum to at most 30720 < 2^15 in i16. Q8_0 uses the signed quants
//! (`w = u ^ 0x80`) with the sign trick, `|w| * sign(a, w)`: pairs of at most 2 * 128 * 127 = 32512 (activation
//! quants are in -127..=127), widened to i32 before summing; that equals `sum(u * a) - 128 * sum(a)`.

use std::arch::x86_64::*;

use super::{offset, quant_tile, scale_tile, ActMeta, PackedTile, GROUP, MAX_ACT, QK};
use crate::dtype::DType;

/// Activation rows per pass over a half group (register budget: 8 weight vectors + 4 accumulators).
const ROWS_PER_PASS: usize = 4;

/// Entry point installed in the kernel table after AVX2, FMA and F16C were detected.
pub(crate) fn dot(t: &PackedTile, out: &mut [f32; GROUP * MAX_ACT]) {
    if t.n_groups > 1 {
        return t.each_group(out, dot);
    }
    let n = t.n_act.clamp(1, MAX_ACT);
    let nb = t.nb;
    let aoff = if t.dtype == DType::Q4_1 { 4 } else { 2 };
    let ok = t.w.len() >= nb * (quant_tile(t.dtype) + scale_tile(t.dtype))
        && t.acts.len() >= n * t.arb
        && t.meta.len() >= n * nb
        && t.arb >= nb * (QK + aoff);
    assert!(ok, "packed::avx2::dot: tile buffers shorter than its shape");
    for r0 in (0..n).step_by(ROWS_PER_PASS) {
        let rn = (n - r0).min(ROWS_PER_PASS);
        for half in 0..2 {
            macro_rules! go {
                ($fmt:expr) => {
                    match rn {
                        1 => call::<$fmt, 1>(t, r0, half, out),
                        2 => call::<$fmt, 2>(t, r0, half, out),
                        3 => call::<$fmt, 3>(t, r0, half, out),
                        _ => call::<$fmt, 4>(t, r0, half, out),
                    }
                };
            }
            match t.dtype {
                DType::Q4_0 => go!(Q4_0),
                DType::Q4_1 => go!(Q4_1),
                _ => go!(Q8_0),
            }
        }
    }
}

const Q4_0: u8 = 0;
const Q4_1: u8 = 1;
const Q8_0: u8 = 2;

fn call<const F: u8, const N: usize>(
    t: &PackedTile,
    r0: usize,
    half: usize,
    out: &mut [f32; GROUP * MAX_ACT],
) {
    // SAFETY: only reachable through the table entry installed after AVX2/FMA/F16C were detected; the buffer
    // lengths were checked by `dot`, and `r0 + N <= n_act`, `half < 2`.
    unsafe { kernel::<F, N>(t, r0, half, out) }
}

/// Rows `r0..r0 + N` of the activations times rows `8 * half..8 * half + 8` of the group.
///
/// # Safety
/// The CPU supports the enabled features; `t.w` holds `nb` quant and scale tiles, `t.acts` at least `r0 + N` rows
/// of `nb` activation blocks (`t.arb` bytes apart), `t.meta` `(r0 + N) * nb` entries; `half < 2`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn kernel<const F: u8, const N: usize>(
    t: &PackedTile,
    r0: usize,
    half: usize,
    out: &mut [f32; GROUP * MAX_ACT],
) {
    let nb = t.nb;
    let (qt, st) = (quant_tile(t.dtype), scale_tile(t.dtype));
    let ab = if F == Q4_1 { QK + 4 } else { QK + 2 };
    let aoff = if F == Q4_1 { 4 } else { 2 };
    let o = offset(t.dtype);
    // Cursors advanced block by block. SAFETY (every `add` below): they stay inside (or one block past the end of)
    // the buffers whose lengths `dot` checked.
    let mut q = unsafe { t.w.as_ptr().add(32 * half) };
    let mut s = unsafe { t.w.as_ptr().add(nb * qt + 16 * half) };
    let mut a: [*const u8; ROWS_PER_PASS] = [t.acts.as_ptr(); ROWS_PER_PASS];
    let mut mt: [*const ActMeta; ROWS_PER_PASS] = [t.meta.as_ptr(); ROWS_PER_PASS];
    for r in 0..N {
        a[r] = unsafe { t.acts.as_ptr().add((r0 + r) * t.arb + aoff) };
        mt[r] = unsafe { t.meta.as_ptr().add((r0 + r) * nb) };
    }
    let mask = _mm256_set1_epi8(0x0f);
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); ROWS_PER_PASS];
    for _ in 0..nb {
        // SAFETY (loads below): the current block's tiles lie inside `t.w`, its activations inside `t.acts` and
        // its meta inside `t.meta`; all loads are unaligned.
        let dw = _mm256_cvtph_ps(unsafe { _mm_loadu_si128(s.cast()) });
        let mw = if F == Q4_1 {
            _mm256_cvtph_ps(unsafe { _mm_loadu_si128(s.add(2 * GROUP).cast()) })
        } else {
            _mm256_setzero_ps()
        };
        let bcast =
            |p: *const u8, k: usize| _mm256_set1_epi32(unsafe { p.add(k).cast::<i32>().read_unaligned() });
        if F == Q8_0 {
            let mut w = [_mm256_setzero_si256(); 8];
            let flip = _mm256_set1_epi8(-128);
            for (k, w) in w.iter_mut().enumerate() {
                // Back to the signed quants.
                *w = _mm256_xor_si256(unsafe { _mm256_loadu_si256(q.add(64 * k).cast()) }, flip);
            }
            for r in 0..N {
                let mut si = _mm256_setzero_si256();
                for (k, w) in w.iter().enumerate() {
                    let x = bcast(a[r], 4 * k);
                    let p = _mm256_maddubs_epi16(_mm256_sign_epi8(*w, *w), _mm256_sign_epi8(x, *w));
                    si = _mm256_add_epi32(si, _mm256_madd_epi16(p, ones));
                }
                let m = unsafe { *mt[r] };
                let d = _mm256_mul_ps(dw, _mm256_set1_ps(m.d));
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(si), d, acc[r]);
            }
        } else {
            let mut lo = [_mm256_setzero_si256(); 4];
            let mut hi = [_mm256_setzero_si256(); 4];
            for k in 0..4 {
                let v = unsafe { _mm256_loadu_si256(q.add(64 * k).cast()) };
                lo[k] = _mm256_and_si256(v, mask);
                hi[k] = _mm256_and_si256(_mm256_srli_epi16::<4>(v), mask);
            }
            for r in 0..N {
                let mut s16 = _mm256_setzero_si256();
                for k in 0..4 {
                    s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(lo[k], bcast(a[r], 4 * k)));
                    s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(hi[k], bcast(a[r], 16 + 4 * k)));
                }
                let m = unsafe { *mt[r] };
                let mut si = _mm256_madd_epi16(s16, ones);
                if F == Q4_0 {
                    si = _mm256_add_epi32(si, _mm256_set1_epi32(-o * m.sum));
                }
                let d = _mm256_mul_ps(dw, _mm256_set1_ps(m.d));
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(si), d, acc[r]);
                if F == Q4_1 {
                    acc[r] = _mm256_fmadd_ps(mw, _mm256_set1_ps(m.s), acc[r]);
                }
            }
        }
        q = unsafe { q.add(qt) };
        s = unsafe { s.add(st) };
        for r in 0..N {
            a[r] = unsafe { a[r].add(ab) };
            mt[r] = unsafe { mt[r].add(1) };
        }
    }
    for (r, v) in acc.iter().take(N).enumerate() {
        // SAFETY: `r0 + r < MAX_ACT` and `half < 2`, so the 8 lanes end at most at `MAX_ACT * GROUP`.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr().add((r0 + r) * GROUP + 8 * half), *v) };
    }
}
