//! The packed K-quant kernels with AVX-512 VNNI: per value group, 16 rows' int32 dots by `vpdpbusd` of the unsigned
//! values with a broadcast 4-byte activation group, times the rows' group scales (`vpmulld`); Q4_K's minimums' and
//! Q6_K's offset's terms by `vpdpwssd` of the rows' scale pairs with the activation's group sums; then the scalar
//! twins' f32 sequence per super-block ([`super::kquant`]), lane by lane.
//!
//! Integer exactness: a Q4_K group's dot is at most 32 * 15 * 127 = 60960 in magnitude, times a scale of at most 63,
//! over 8 groups: under 2^25; the minimums' sum at most 8 * 63 * 4064. A Q6_K group's dot of the unsigned values is
//! at most 16 * 63 * 127 = 128016, times a scale of at most 128, over 16 groups: under 2^29; the offset's term
//! `32 * sum_g sc_g * bsum_g` at most 32 * 16 * 128 * 2032 < 2^28.

use std::arch::x86_64::*;

use super::k_avx2::{load16, load32, pair_lane};
use super::kquant::{block_slices, K_DMIN, K_M, K_SC, Q6_CHUNK, Q6_SC, Q8K_BSUMS, SUB_TILE};
use super::{PackedFormat, PackedTile, GROUP, MAX_ACT};

/// How many super-blocks ahead the quants are prefetched (into L2: with `T0`, into L1, one thread streamed Q4_K
/// from DRAM at 24-26 GMAC/s at any distance, slower than without prefetches; with `T1` 28-33 at 2 to 8
/// super-blocks ahead, packed_bench with 55296 rows).
const PREFETCH_BLOCKS: usize = 4;

/// Computes a Q4_K or Q6_K tile (the entry of [`super::avx512`] hands these tiles here).
///
/// # Safety
/// The CPU has AVX-512 F/BW/VL/VNNI and AVX2/FMA/F16C.
pub(super) unsafe fn dot(t: &PackedTile, out: &mut [f32; GROUP * MAX_ACT]) {
    if t.n_groups > 1 {
        // One group at a time: interleaving the groups' super-blocks in one loop, as the Q4 kernels do for
        // decode, measured no faster here (2.7B Q4_K_M decode 16.1-16.8 tok/s both ways on two threads).
        // SAFETY: the caller's guarantee holds for each group's call.
        return t.each_group(out, |t, o| unsafe { dot(t, o) });
    }
    assert!(t.holds_shape(), "packed::k_avx512::dot: tile buffers shorter than its shape");
    macro_rules! by_rows {
        ($k:ident) => {
            match t.n_act {
                1 => $k::<1>(t, out),
                2 => $k::<2>(t, out),
                3 => $k::<3>(t, out),
                4 => $k::<4>(t, out),
                5 => $k::<5>(t, out),
                6 => $k::<6>(t, out),
                7 => $k::<7>(t, out),
                _ => $k::<8>(t, out),
            }
        };
    }
    // SAFETY: the caller guarantees the CPU features; the shape was checked above and the
    // kernel is the tile's format's.
    unsafe {
        match t.fmt {
            PackedFormat::Q4_K => by_rows!(kernel),
            PackedFormat::Q6_K => by_rows!(kernel_q6k),
            _ => unreachable!("not a K-quant tile"),
        }
    }
}

/// The 4-byte activation group at `i` of `ag`, broadcast.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn bcast4(ag: &[u8], i: usize) -> __m512i {
    _mm512_set1_epi32(i32::from_le_bytes([ag[i], ag[i + 1], ag[i + 2], ag[i + 3]]))
}

/// Q6_K values' high 2 bits for line `j` (0..4) of a plane line `p`, at bits 4..6 of each byte (other bits junk).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn high_bits(p: __m512i, j: usize) -> __m512i {
    match j {
        0 => _mm512_slli_epi16::<4>(p),
        1 => _mm512_slli_epi16::<2>(p),
        2 => p,
        _ => _mm512_srli_epi16::<2>(p),
    }
}

/// `N` activation rows times one group of Q6_K rows.
///
/// # Safety
/// As [`kernel`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn kernel_q6k<const N: usize>(t: &PackedTile, out: &mut [f32; GROUP * MAX_ACT]) {
    let fmt = PackedFormat::Q6_K;
    let (qt, nb) = (fmt.quant_tile(), t.nb);
    let (m0f, m30) = (_mm512_set1_epi8(0x0f), _mm512_set1_epi8(0x30));
    let mut acc = [_mm512_setzero_ps(); N];
    for b in 0..nb {
        let (q, s, a) = block_slices::<N>(t, 0, b);
        // The scale pairs of groups 2p and 2p + 1, sign-extended to i16: for the chunks and for the offset's term.
        let sp: [__m512i; 8] =
            std::array::from_fn(|p| _mm512_cvtepi8_epi16(load32(&s[Q6_SC + 2 * GROUP * p..])));
        let mut isum = [_mm512_setzero_si512(); N];
        for c in 0..8 {
            // A hint only (prefetches never fault), as in `kernel`.
            let ahead = q.as_ptr().wrapping_add(PREFETCH_BLOCKS * qt + c * Q6_CHUNK);
            for l in 0..6 {
                _mm_prefetch::<_MM_HINT_T1>(ahead.wrapping_add(64 * l).cast());
            }
            let chunk = &q[c * Q6_CHUNK..][..Q6_CHUNK];
            let line = |i: usize| load64(&chunk[64 * i..]);
            let (p0, p1) = (line(4), line(5));
            // u = low 4 bits | high 2 bits << 4 (`vpternlogd` 0xF8: a | (b & c)).
            let lo: [__m512i; 4] = std::array::from_fn(|k| {
                _mm512_ternarylogic_epi32::<0xF8>(_mm512_and_si512(line(k), m0f), high_bits(p0, k), m30)
            });
            let hi: [__m512i; 4] = std::array::from_fn(|k| {
                let n = _mm512_and_si512(_mm512_srli_epi16::<4>(line(k)), m0f);
                _mm512_ternarylogic_epi32::<0xF8>(n, high_bits(p1, k), m30)
            });
            // Groups 2c and 2c + 1's scales, each in its row's 32-bit lane.
            let (sc0, sc1) =
                (_mm512_srai_epi32::<16>(_mm512_slli_epi32::<16>(sp[c])), _mm512_srai_epi32::<16>(sp[c]));
            for r in 0..N {
                let ag = &a[r][4 + 32 * c..][..32];
                let (mut s0, mut s1) = (_mm512_setzero_si512(), _mm512_setzero_si512());
                for k in 0..4 {
                    s0 = _mm512_dpbusd_epi32(s0, lo[k], bcast4(ag, 4 * k));
                    s1 = _mm512_dpbusd_epi32(s1, hi[k], bcast4(ag, 16 + 4 * k));
                }
                let both = _mm512_add_epi32(_mm512_mullo_epi32(s0, sc0), _mm512_mullo_epi32(s1, sc1));
                isum[r] = _mm512_add_epi32(isum[r], both);
            }
        }
        let dw = _mm512_cvtph_ps(load32(s));
        for r in 0..N {
            // The offset's term: 32 * sum_g sc_g * bsum_g, the sums of 16 quants paired as the scales are.
            let mut off = _mm512_setzero_si512();
            for (p, sp) in sp.iter().enumerate() {
                off = _mm512_dpwssd_epi32(off, *sp, bcast4(a[r], Q8K_BSUMS + 4 * p));
            }
            let exact = _mm512_sub_epi32(isum[r], _mm512_slli_epi32::<5>(off));
            let dy = _mm512_set1_ps(t.meta[r * nb + b].d);
            acc[r] = _mm512_add_ps(acc[r], _mm512_mul_ps(_mm512_mul_ps(dw, dy), _mm512_cvtepi32_ps(exact)));
        }
    }
    for (r, a) in acc.iter().enumerate() {
        // SAFETY: `r < N <= MAX_ACT`, so `r * GROUP + 16 <= out.len()`.
        unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(r * GROUP), *a) };
    }
}

/// `N` activation rows times one group of Q4_K rows.
///
/// # Safety
/// The CPU supports the enabled features; `t.w` holds `nb` quant and scale tiles, `t.acts` `N` rows of `nb`
/// Q8_K blocks (`t.arb` bytes apart), `t.meta` `N * nb` entries.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn kernel<const N: usize>(t: &PackedTile, out: &mut [f32; GROUP * MAX_ACT]) {
    let fmt = PackedFormat::Q4_K;
    let (qt, nb) = (fmt.quant_tile(), t.nb);
    let mask = _mm512_set1_epi8(0x0f);
    let mut acc = [_mm512_setzero_ps(); N];
    for b in 0..nb {
        let (q, s, a) = block_slices::<N>(t, 0, b);
        let mut isum = [_mm512_setzero_si512(); N];
        for grp in 0..8 {
            // A hint only (prefetches never fault): this group's quants `PREFETCH_BLOCKS` super-blocks ahead, for
            // the single-row decode case where the hardware prefetcher alone leaves bandwidth unused.
            let ahead = q.as_ptr().wrapping_add(PREFETCH_BLOCKS * qt + grp * SUB_TILE);
            for l in 0..4 {
                _mm_prefetch::<_MM_HINT_T1>(ahead.wrapping_add(64 * l).cast());
            }
            let sc = _mm512_cvtepu8_epi32(load16(&s[K_SC + GROUP * grp..]));
            let sub = &q[grp * SUB_TILE..][..SUB_TILE];
            let v: [__m512i; 4] = std::array::from_fn(|k| load64(&sub[64 * k..]));
            let lo: [__m512i; 4] = std::array::from_fn(|k| _mm512_and_si512(v[k], mask));
            let hi: [__m512i; 4] =
                std::array::from_fn(|k| _mm512_and_si512(_mm512_srli_epi16::<4>(v[k]), mask));
            for r in 0..N {
                let ag = &a[r][4 + 32 * grp..][..32];
                let (mut s0, mut s1) = (_mm512_setzero_si512(), _mm512_setzero_si512());
                for k in 0..4 {
                    s0 = _mm512_dpbusd_epi32(s0, lo[k], bcast4(ag, 4 * k));
                    s1 = _mm512_dpbusd_epi32(s1, hi[k], bcast4(ag, 16 + 4 * k));
                }
                isum[r] = _mm512_add_epi32(isum[r], _mm512_mullo_epi32(_mm512_add_epi32(s0, s1), sc));
            }
        }
        let dw = _mm512_cvtph_ps(load32(s));
        let dmw = _mm512_cvtph_ps(load32(&s[K_DMIN..]));
        let m: [__m512i; 4] =
            std::array::from_fn(|p| _mm512_cvtepu8_epi16(load32(&s[K_M + 2 * GROUP * p..])));
        for r in 0..N {
            // The 8 groups' 32-value sums as i16, pairs of groups in each 32-bit lane.
            let bs = load32(&a[r][Q8K_BSUMS..]);
            let pairs = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256::<1>(bs));
            let mut mins = _mm512_setzero_si512();
            for (p, mp) in m.iter().enumerate() {
                mins = _mm512_dpwssd_epi32(mins, *mp, _mm512_set1_epi32(pair_lane(pairs, p)));
            }
            let dy = _mm512_set1_ps(t.meta[r * nb + b].d);
            let x = _mm512_mul_ps(_mm512_mul_ps(dw, dy), _mm512_cvtepi32_ps(isum[r]));
            let y = _mm512_mul_ps(_mm512_mul_ps(dmw, dy), _mm512_cvtepi32_ps(mins));
            acc[r] = _mm512_add_ps(acc[r], _mm512_sub_ps(x, y));
        }
    }
    for (r, a) in acc.iter().enumerate() {
        // SAFETY: `r < N <= MAX_ACT`, so `r * GROUP + 16 <= out.len()`.
        unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(r * GROUP), *a) };
    }
}

/// The first 64 bytes of `b` (unaligned; panics if `b` is shorter).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn load64(b: &[u8]) -> __m512i {
    let b = &b[..64];
    // SAFETY: `b` is 64 readable bytes; the load is unaligned.
    unsafe { _mm512_loadu_si512(b.as_ptr().cast()) }
}
