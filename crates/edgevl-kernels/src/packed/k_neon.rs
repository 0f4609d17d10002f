//! The packed K-quant kernels with NEON `sdot` (Armv8.2 dotprod): each 16-row group as four quarters of 4 rows (the
//! 16-byte quarters of every 64-byte line, as [`super::neon`]); per value group one `sdot` per line and activation
//! row of the unsigned values (0..=15 for Q4_K, 0..=63 for Q6_K, both valid signed bytes), times the rows' group
//! scales (`mla`); Q4_K's minimums' and Q6_K's offset's terms from the activation's group sums; then the scalar
//! twins' f32 sequence per super-block ([`super::kquant`]), lane by lane, with separate multiplies and adds (no
//! fused multiply-add, as the twins).
//!
//! Integer exactness: as the x86 kernels ([`super::k_avx512`]); every sum stays under 2^30 in magnitude.

use std::arch::aarch64::*;

use super::kquant::{block_slices, bsum, group_sum, K_DMIN, K_M, K_SC, Q6_CHUNK, Q6_SC, SUB_TILE};
use super::{PackedFormat, PackedTile, GROUP, MAX_ACT};
use crate::aarch64::neon::{f16x4_to_f32, Dotprod as Sdot, I8Dot};

/// Activation rows per pass over a quarter group.
const ROWS_PER_PASS: usize = 4;

/// Computes a Q4_K or Q6_K tile (the entry of [`super::neon`] hands these tiles here).
///
/// # Safety
/// The CPU has the dot-product instructions.
pub(super) unsafe fn dot(t: &PackedTile, out: &mut [f32; GROUP * MAX_ACT]) {
    if t.n_groups > 1 {
        // SAFETY: the caller's guarantee holds for each group's call.
        return t.each_group(out, |t, o| unsafe { dot(t, o) });
    }
    assert!(t.holds_shape(), "packed::k_neon::dot: tile buffers shorter than its shape");
    let n = t.n_act;
    for r0 in (0..n).step_by(ROWS_PER_PASS) {
        for quarter in 0..4 {
            macro_rules! by_rows {
                ($k:ident) => {
                    match (n - r0).min(ROWS_PER_PASS) {
                        1 => $k::<1>(t, r0, quarter, out),
                        2 => $k::<2>(t, r0, quarter, out),
                        3 => $k::<3>(t, r0, quarter, out),
                        _ => $k::<4>(t, r0, quarter, out),
                    }
                };
            }
            // SAFETY: the caller guarantees the CPU features; the shape was checked above,
            // `r0 + N <= n_act`, `quarter < 4`, and the kernel is the tile's format's.
            unsafe {
                match t.fmt {
                    PackedFormat::Q4_K => by_rows!(kernel),
                    PackedFormat::Q6_K => by_rows!(kernel_q6k),
                    _ => unreachable!("not a K-quant tile"),
                }
            }
        }
    }
}

/// The first 16 bytes of `b` (panics if `b` is shorter).
#[inline]
#[target_feature(enable = "neon")]
fn load16(b: &[u8]) -> uint8x16_t {
    let b = &b[..16];
    // SAFETY: `b` is 16 readable bytes; byte loads need no alignment.
    unsafe { vld1q_u8(b.as_ptr()) }
}

/// The first 8 bytes of `b` (panics if `b` is shorter).
#[inline]
#[target_feature(enable = "neon")]
fn load8(b: &[u8]) -> uint8x8_t {
    let b = &b[..8];
    // SAFETY: `b` is 8 readable bytes; byte loads need no alignment.
    unsafe { vld1_u8(b.as_ptr()) }
}

/// The 4 rows' f16 values at the start of `b`, as f32.
#[inline]
#[target_feature(enable = "neon")]
fn f16x4(b: &[u8]) -> float32x4_t {
    f16x4_to_f32(vreinterpret_u16_u8(load8(b)))
}

/// The 4-byte activation group at `i` of `ag` in every lane.
#[inline]
#[target_feature(enable = "neon")]
fn bcast4(ag: &[u8], i: usize) -> int8x16_t {
    vreinterpretq_s8_s32(vdupq_n_s32(i32::from_le_bytes([ag[i], ag[i + 1], ag[i + 2], ag[i + 3]])))
}

/// 4 rows' pairs of 16-bit values (`[row][2]`, widened from `pairs`) split into the first and second of each pair,
/// as i32.
#[inline]
#[target_feature(enable = "neon")]
fn split_pairs(pairs: int16x8_t) -> (int32x4_t, int32x4_t) {
    let (even, odd) = (vuzp1q_s16(pairs, pairs), vuzp2q_s16(pairs, pairs));
    (vmovl_s16(vget_low_s16(even)), vmovl_s16(vget_low_s16(odd)))
}

/// Activation rows `r0..r0 + N` times rows `4 * quarter..4 * quarter + 4` of one group of Q4_K rows.
///
/// # Safety
/// The CPU has dotprod; `t.w` holds `nb` quant and scale tiles, `t.acts` at least `r0 + N` rows of `nb` Q8_K
/// blocks (`t.arb` bytes apart), `t.meta` `(r0 + N) * nb` entries; `quarter < 4`.
#[target_feature(enable = "neon")]
unsafe fn kernel<const N: usize>(
    t: &PackedTile,
    r0: usize,
    quarter: usize,
    out: &mut [f32; GROUP * MAX_ACT],
) {
    let (h, mask) = (4 * quarter, vdupq_n_u8(0x0f));
    let mut acc = [vdupq_n_f32(0.0); N];
    for b in 0..t.nb {
        let (q, s, a) = block_slices::<N>(t, r0, b);
        let mut isum = [vdupq_n_s32(0); N];
        for grp in 0..8 {
            // The quarter's 4 scales, widened to i32.
            let sc = vmovl_u8(load8(&s[K_SC + GROUP * grp + h..]));
            let sc = vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(sc)));
            let sub = &q[grp * SUB_TILE..];
            let v: [uint8x16_t; 4] = std::array::from_fn(|k| load16(&sub[64 * k + 16 * quarter..]));
            let lo = v.map(|v| vreinterpretq_s8_u8(vandq_u8(v, mask)));
            let hi = v.map(|v| vreinterpretq_s8_u8(vshrq_n_u8::<4>(v)));
            for r in 0..N {
                let ag = &a[r][4 + 32 * grp..][..32];
                let mut si = vdupq_n_s32(0);
                for k in 0..4 {
                    // SAFETY: the caller guarantees dotprod.
                    unsafe {
                        si = Sdot::dot(si, lo[k], bcast4(ag, 4 * k));
                        si = Sdot::dot(si, hi[k], bcast4(ag, 16 + 4 * k));
                    }
                }
                isum[r] = vmlaq_s32(isum[r], si, sc);
            }
        }
        let (dw, dmw) = (f16x4(&s[2 * h..]), f16x4(&s[K_DMIN + 2 * h..]));
        let m: [(int32x4_t, int32x4_t); 4] = std::array::from_fn(|p| {
            split_pairs(vreinterpretq_s16_u16(vmovl_u8(load8(&s[K_M + 2 * GROUP * p + 2 * h..]))))
        });
        for r in 0..N {
            let mut mins = vdupq_n_s32(0);
            for (p, (m0, m1)) in m.iter().enumerate() {
                mins = vmlaq_n_s32(mins, *m0, group_sum(a[r], 2 * p));
                mins = vmlaq_n_s32(mins, *m1, group_sum(a[r], 2 * p + 1));
            }
            let dy = vdupq_n_f32(t.meta[(r0 + r) * t.nb + b].d);
            let x = vmulq_f32(vmulq_f32(dw, dy), vcvtq_f32_s32(isum[r]));
            let y = vmulq_f32(vmulq_f32(dmw, dy), vcvtq_f32_s32(mins));
            acc[r] = vaddq_f32(acc[r], vsubq_f32(x, y));
        }
    }
    store(&acc, r0, quarter, out);
}

/// Stores the pass's accumulators: activation row `r0 + r`, rows `4 * quarter..` of the group.
#[inline]
#[target_feature(enable = "neon")]
fn store<const N: usize>(
    acc: &[float32x4_t; N],
    r0: usize,
    quarter: usize,
    out: &mut [f32; GROUP * MAX_ACT],
) {
    for (r, v) in acc.iter().enumerate() {
        let dst = &mut out[(r0 + r) * GROUP + 4 * quarter..][..4];
        // SAFETY: `dst` is 4 writable floats.
        unsafe { vst1q_f32(dst.as_mut_ptr(), *v) };
    }
}

/// Q6_K values' high 2 bits for line `j` (0..4) of a plane line `p`, masked to bits 4..6 of each byte.
#[inline]
#[target_feature(enable = "neon")]
fn high_bits(p: uint8x16_t, j: usize) -> uint8x16_t {
    let shifted = match j {
        0 => vshlq_n_u8::<4>(p),
        1 => vshlq_n_u8::<2>(p),
        2 => p,
        _ => vshrq_n_u8::<2>(p),
    };
    vandq_u8(shifted, vdupq_n_u8(0x30))
}

/// Activation rows `r0..r0 + N` times rows `4 * quarter..4 * quarter + 4` of one group of Q6_K rows.
///
/// # Safety
/// As [`kernel`].
#[target_feature(enable = "neon")]
unsafe fn kernel_q6k<const N: usize>(
    t: &PackedTile,
    r0: usize,
    quarter: usize,
    out: &mut [f32; GROUP * MAX_ACT],
) {
    let (h, mask) = (4 * quarter, vdupq_n_u8(0x0f));
    let mut acc = [vdupq_n_f32(0.0); N];
    for b in 0..t.nb {
        let (q, s, a) = block_slices::<N>(t, r0, b);
        // Groups 2p and 2p + 1's scales of the quarter's 4 rows, sign-extended.
        let sc: [(int32x4_t, int32x4_t); 8] = std::array::from_fn(|p| {
            split_pairs(vmovl_s8(vreinterpret_s8_u8(load8(&s[Q6_SC + 2 * GROUP * p + 2 * h..]))))
        });
        let mut isum = [vdupq_n_s32(0); N];
        for (c, (sc0, sc1)) in sc.iter().enumerate() {
            let chunk = &q[c * Q6_CHUNK..][..Q6_CHUNK];
            let line = |i: usize| load16(&chunk[64 * i + 16 * quarter..]);
            let (p0, p1) = (line(4), line(5));
            let lo: [int8x16_t; 4] = std::array::from_fn(|k| {
                vreinterpretq_s8_u8(vorrq_u8(vandq_u8(line(k), mask), high_bits(p0, k)))
            });
            let hi: [int8x16_t; 4] = std::array::from_fn(|k| {
                vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8::<4>(line(k)), high_bits(p1, k)))
            });
            for r in 0..N {
                let ag = &a[r][4 + 32 * c..][..32];
                let (mut s0, mut s1) = (vdupq_n_s32(0), vdupq_n_s32(0));
                for k in 0..4 {
                    // SAFETY: the caller guarantees dotprod.
                    unsafe {
                        s0 = Sdot::dot(s0, lo[k], bcast4(ag, 4 * k));
                        s1 = Sdot::dot(s1, hi[k], bcast4(ag, 16 + 4 * k));
                    }
                }
                isum[r] = vmlaq_s32(vmlaq_s32(isum[r], s0, *sc0), s1, *sc1);
            }
        }
        let dw = f16x4(&s[2 * h..]);
        for r in 0..N {
            // The offset's term: 32 * sum_g sc_g * bsum_g.
            let mut off = vdupq_n_s32(0);
            for (p, (sc0, sc1)) in sc.iter().enumerate() {
                off = vmlaq_n_s32(off, *sc0, bsum(a[r], 2 * p));
                off = vmlaq_n_s32(off, *sc1, bsum(a[r], 2 * p + 1));
            }
            let exact = vsubq_s32(isum[r], vshlq_n_s32::<5>(off));
            let dy = vdupq_n_f32(t.meta[(r0 + r) * t.nb + b].d);
            acc[r] = vaddq_f32(acc[r], vmulq_f32(vmulq_f32(dw, dy), vcvtq_f32_s32(exact)));
        }
    }
    store(&acc, r0, quarter, out);
}
