//! The packed K-quant kernels with AVX2: each 16-row group as two halves of 8 rows (the low and high 32 bytes of
//! every 64-byte line); per value group, `vpmaddubsw` of the unsigned values with broadcast 4-byte activation
//! groups summed in i16, then `vpmaddwd` with the rows' group scales; Q4_K's minimums' and Q6_K's offset's terms by
//! `vpmaddwd` of the rows' scale pairs with the activation's group sums; then the scalar twins' f32 sequence per
//! super-block ([`super::kquant`]), lane by lane.
//!
//! Integer exactness: Q4_K nibbles (`u <= 15`) times activations (`|a| <= 127`) give `vpmaddubsw` pairs of at most
//! 3810, and a group's 8 pair vectors sum to at most 30480 < 2^15 in i16; times a scale of at most 63 in i32. Q6_K's
//! values (`u <= 63`) give pairs of at most 16002, two of them summed in i16 (32004 < 2^15) before each `vpmaddwd`
//! with the scales (at most 128 in magnitude).

use std::arch::x86_64::*;

use super::kquant::{block_slices, K_DMIN, K_M, K_SC, Q6_CHUNK, Q6_SC, Q8K_BSUMS, SUB_TILE};
use super::{PackedFormat, PackedTile, GROUP, MAX_ACT};

/// Activation rows per pass over a half group.
const ROWS_PER_PASS: usize = 4;

/// Computes a Q4_K or Q6_K tile (the entry of [`super::avx2`] hands these tiles here).
///
/// # Safety
/// The CPU has AVX2, FMA and F16C.
pub(super) unsafe fn dot(t: &PackedTile, out: &mut [f32; GROUP * MAX_ACT]) {
    if t.n_groups > 1 {
        // SAFETY: the caller's guarantee holds for each group's call.
        return t.each_group(out, |t, o| unsafe { dot(t, o) });
    }
    assert!(t.holds_shape(), "packed::k_avx2::dot: tile buffers shorter than its shape");
    let n = t.n_act;
    if n == 1 && matches!(t.fmt, PackedFormat::Q4_K) {
        // Decode: both halves in one pass, so the group's lines are read once, in order (27% faster from DRAM).
        // Q6_K stays at one half a pass: two halves' scale pairs would not fit the 16 registers.
        // SAFETY: as below, with `r0 = 0`, `N = 1` and halves 0 and 1.
        unsafe { kernel::<1, 2>(t, 0, 0, out) };
        return;
    }
    for r0 in (0..n).step_by(ROWS_PER_PASS) {
        for half in 0..2 {
            macro_rules! by_rows {
                ($k:ident $(, $h:literal)?) => {
                    match (n - r0).min(ROWS_PER_PASS) {
                        1 => $k::<1 $(, $h)?>(t, r0, half, out),
                        2 => $k::<2 $(, $h)?>(t, r0, half, out),
                        3 => $k::<3 $(, $h)?>(t, r0, half, out),
                        _ => $k::<4 $(, $h)?>(t, r0, half, out),
                    }
                };
            }
            // SAFETY: the caller guarantees the CPU features; the shape was checked above,
            // `r0 + N <= n_act`, `half < 2`, and the kernel is the tile's format's.
            unsafe {
                match t.fmt {
                    PackedFormat::Q4_K => by_rows!(kernel, 1),
                    PackedFormat::Q6_K => by_rows!(kernel_q6k),
                    _ => unreachable!("not a K-quant tile"),
                }
            }
        }
    }
}

/// Activation rows `r0..r0 + N` times rows `8 * half..8 * half + 8` of one group of Q4_K rows for the `H` halves
/// from `half0` (both in one pass for decode).
///
/// # Safety
/// The CPU supports the enabled features; `t.w` holds `nb` quant and scale tiles, `t.acts` at least `r0 + N` rows
/// of `nb` Q8_K blocks (`t.arb` bytes apart), `t.meta` `(r0 + N) * nb` entries; `half0 + H <= 2`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn kernel<const N: usize, const H: usize>(
    t: &PackedTile,
    r0: usize,
    half0: usize,
    out: &mut [f32; GROUP * MAX_ACT],
) {
    let nb = t.nb;
    let mask = _mm256_set1_epi8(0x0f);
    let mut acc = [[_mm256_setzero_ps(); N]; H];
    for b in 0..nb {
        let (q, s, a) = block_slices::<N>(t, r0, b);
        let mut isums = [[_mm256_setzero_si256(); N]; H];
        for grp in 0..8 {
            if half0 == 0 {
                prefetch_ahead(&q[grp * SUB_TILE..], PackedFormat::Q4_K, SUB_TILE / 64);
            }
            let sub = &q[grp * SUB_TILE..][..SUB_TILE];
            for (hh, isum) in isums.iter_mut().enumerate() {
                let h = 8 * (half0 + hh);
                // The half's 8 scales, each in both i16 of its row's 32-bit lane.
                let sc = _mm256_cvtepu8_epi32(load8(&s[K_SC + GROUP * grp + h..]));
                let sc = _mm256_or_si256(sc, _mm256_slli_epi32::<16>(sc));
                let mut p = [_mm256_setzero_si256(); N];
                for k in 0..4 {
                    let v = load32(&sub[64 * k + 4 * h..]);
                    let (lo, hi) =
                        (_mm256_and_si256(v, mask), _mm256_and_si256(_mm256_srli_epi16::<4>(v), mask));
                    for r in 0..N {
                        let ag = &a[r][4 + 32 * grp..][..32];
                        let two = _mm256_add_epi16(
                            _mm256_maddubs_epi16(lo, bcast4(ag, 4 * k)),
                            _mm256_maddubs_epi16(hi, bcast4(ag, 16 + 4 * k)),
                        );
                        p[r] = _mm256_add_epi16(p[r], two);
                    }
                }
                for r in 0..N {
                    isum[r] = _mm256_add_epi32(isum[r], _mm256_madd_epi16(p[r], sc));
                }
            }
        }
        for (hh, (acc, isum)) in acc.iter_mut().zip(&isums).enumerate() {
            let h = 8 * (half0 + hh);
            let dw = _mm256_cvtph_ps(load16(&s[2 * h..]));
            let dmw = _mm256_cvtph_ps(load16(&s[K_DMIN + 2 * h..]));
            let m: [__m256i; 4] =
                std::array::from_fn(|p| _mm256_cvtepu8_epi16(load16(&s[K_M + 2 * GROUP * p + 2 * h..])));
            for r in 0..N {
                // The 8 groups' 32-value sums as i16, pairs of groups in each 32-bit lane.
                let bs = load32(&a[r][Q8K_BSUMS..]);
                let pairs = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256::<1>(bs));
                let mut mins = _mm256_setzero_si256();
                for (p, mp) in m.iter().enumerate() {
                    mins = _mm256_add_epi32(
                        mins,
                        _mm256_madd_epi16(*mp, _mm256_set1_epi32(pair_lane(pairs, p))),
                    );
                }
                let dy = _mm256_set1_ps(t.meta[(r0 + r) * nb + b].d);
                let x = _mm256_mul_ps(_mm256_mul_ps(dw, dy), _mm256_cvtepi32_ps(isum[r]));
                let y = _mm256_mul_ps(_mm256_mul_ps(dmw, dy), _mm256_cvtepi32_ps(mins));
                acc[r] = _mm256_add_ps(acc[r], _mm256_sub_ps(x, y));
            }
        }
    }
    store::<N, H>(&acc, r0, half0, out);
}

/// Stores the accumulators of activation rows `r0..r0 + N` and the `H` halves from `half0`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn store<const N: usize, const H: usize>(
    acc: &[[__m256; N]; H],
    r0: usize,
    half0: usize,
    out: &mut [f32; GROUP * MAX_ACT],
) {
    for (hh, acc) in acc.iter().enumerate() {
        for (r, a) in acc.iter().enumerate() {
            let at = (r0 + r) * GROUP + 8 * (half0 + hh);
            // The 8 lanes of row `r0 + r`'s half (panics if outside `out`).
            let o = &mut out[at..at + 8];
            // SAFETY: `o` is 8 writable floats; the store is unaligned.
            unsafe { _mm256_storeu_ps(o.as_mut_ptr(), *a) };
        }
    }
}

/// How many super-blocks ahead the first half's pass prefetches the quants (into L2, as the AVX-512 kernels).
const PREFETCH_BLOCKS: usize = 4;

/// A hint only (prefetches never fault): the `lines` cache lines at `q`'s start, [`PREFETCH_BLOCKS`] quant tiles
/// of `fmt` ahead, into L2.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn prefetch_ahead(q: &[u8], fmt: PackedFormat, lines: usize) {
    let ahead = q.as_ptr().wrapping_add(PREFETCH_BLOCKS * fmt.quant_tile());
    for l in 0..lines {
        _mm_prefetch::<_MM_HINT_T1>(ahead.wrapping_add(64 * l).cast());
    }
}

/// The 32-bit lane of `v` holding group pair `p`'s two i16 (0..4).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn pair_lane(v: __m128i, p: usize) -> i32 {
    match p {
        0 => _mm_extract_epi32::<0>(v),
        1 => _mm_extract_epi32::<1>(v),
        2 => _mm_extract_epi32::<2>(v),
        _ => _mm_extract_epi32::<3>(v),
    }
}

/// The 4-byte activation group at `i` of `ag`, broadcast.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn bcast4(ag: &[u8], i: usize) -> __m256i {
    _mm256_set1_epi32(i32::from_le_bytes([ag[i], ag[i + 1], ag[i + 2], ag[i + 3]]))
}

/// Q6_K values' high 2 bits for line `j` (0..4) of a plane line `p`, masked to bits 4..6 of each byte.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn high_bits(p: __m256i, j: usize) -> __m256i {
    let shifted = match j {
        0 => _mm256_slli_epi16::<4>(p),
        1 => _mm256_slli_epi16::<2>(p),
        2 => p,
        _ => _mm256_srli_epi16::<2>(p),
    };
    _mm256_and_si256(shifted, _mm256_set1_epi8(0x30))
}

/// Activation rows `r0..r0 + N` times rows `8 * half..8 * half + 8` of one group of Q6_K rows.
///
/// # Safety
/// As [`kernel`].
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn kernel_q6k<const N: usize>(
    t: &PackedTile,
    r0: usize,
    half: usize,
    out: &mut [f32; GROUP * MAX_ACT],
) {
    let nb = t.nb;
    let (m0f, h) = (_mm256_set1_epi8(0x0f), 8 * half);
    let mut acc = [_mm256_setzero_ps(); N];
    for b in 0..nb {
        let (q, s, a) = block_slices::<N>(t, r0, b);
        // The half's scale pairs of groups 2p and 2p + 1, sign-extended to i16: for the chunks and the offset's term.
        let sp: [__m256i; 8] =
            std::array::from_fn(|p| _mm256_cvtepi8_epi16(load16(&s[Q6_SC + 2 * GROUP * p + 2 * h..])));
        let mut isum = [_mm256_setzero_si256(); N];
        for c in 0..8 {
            if half == 0 {
                prefetch_ahead(&q[c * Q6_CHUNK..], PackedFormat::Q6_K, Q6_CHUNK / 64);
            }
            let chunk = &q[c * Q6_CHUNK..][..Q6_CHUNK];
            let line = |i: usize| load32(&chunk[64 * i + 4 * h..]);
            let (p0, p1) = (line(4), line(5));
            let lo: [__m256i; 4] =
                std::array::from_fn(|k| _mm256_or_si256(_mm256_and_si256(line(k), m0f), high_bits(p0, k)));
            let hi: [__m256i; 4] = std::array::from_fn(|k| {
                let n = _mm256_and_si256(_mm256_srli_epi16::<4>(line(k)), m0f);
                _mm256_or_si256(n, high_bits(p1, k))
            });
            // Groups 2c and 2c + 1's scales, each in both i16 of its row's 32-bit lane.
            let sc0 = _mm256_shufflehi_epi16::<0b10_10_00_00>(_mm256_shufflelo_epi16::<0b10_10_00_00>(sp[c]));
            let sc1 = _mm256_shufflehi_epi16::<0b11_11_01_01>(_mm256_shufflelo_epi16::<0b11_11_01_01>(sp[c]));
            for r in 0..N {
                let ag = &a[r][4 + 32 * c..][..32];
                let pair = |w: &[__m256i; 4], at: usize, k: usize| {
                    let x = _mm256_maddubs_epi16(w[k], bcast4(ag, at + 4 * k));
                    _mm256_add_epi16(x, _mm256_maddubs_epi16(w[k + 1], bcast4(ag, at + 4 * k + 4)))
                };
                let g0 = _mm256_add_epi32(
                    _mm256_madd_epi16(pair(&lo, 0, 0), sc0),
                    _mm256_madd_epi16(pair(&lo, 0, 2), sc0),
                );
                let g1 = _mm256_add_epi32(
                    _mm256_madd_epi16(pair(&hi, 16, 0), sc1),
                    _mm256_madd_epi16(pair(&hi, 16, 2), sc1),
                );
                isum[r] = _mm256_add_epi32(isum[r], _mm256_add_epi32(g0, g1));
            }
        }
        let dw = _mm256_cvtph_ps(load16(&s[2 * h..]));
        for r in 0..N {
            // The offset's term: 32 * sum_g sc_g * bsum_g, the sums of 16 quants paired as the scales are.
            let mut off = _mm256_setzero_si256();
            for (p, sp) in sp.iter().enumerate() {
                off = _mm256_add_epi32(off, _mm256_madd_epi16(*sp, bcast4(a[r], Q8K_BSUMS + 4 * p)));
            }
            let exact = _mm256_sub_epi32(isum[r], _mm256_slli_epi32::<5>(off));
            let dy = _mm256_set1_ps(t.meta[(r0 + r) * nb + b].d);
            acc[r] = _mm256_add_ps(acc[r], _mm256_mul_ps(_mm256_mul_ps(dw, dy), _mm256_cvtepi32_ps(exact)));
        }
    }
    store::<N, 1>(&[acc], r0, half, out);
}

/// The first 16 bytes of `b` (unaligned; panics if `b` is shorter).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn load16(b: &[u8]) -> __m128i {
    let b = &b[..16];
    // SAFETY: `b` is 16 readable bytes; the load is unaligned.
    unsafe { _mm_loadu_si128(b.as_ptr().cast()) }
}

/// The first 32 bytes of `b` (unaligned; panics if `b` is shorter).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn load32(b: &[u8]) -> __m256i {
    let b = &b[..32];
    // SAFETY: `b` is 32 readable bytes; the load is unaligned.
    unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
}

/// The first 8 bytes of `b` in the low half (unaligned; panics if `b` is shorter).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load8(b: &[u8]) -> __m128i {
    let b = &b[..8];
    // SAFETY: `b` is 8 readable bytes; the load is unaligned.
    unsafe { _mm_loadl_epi64(b.as_ptr().cast()) }
}
