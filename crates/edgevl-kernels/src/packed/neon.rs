//! The packed kernels with NEON `sdot` (Armv8.2 dotprod): each 16-row group as four quarters of 4 rows (the
//! 16-byte quarters of every 64-byte line: lane `l` of quarter `h` holds the 4 consecutive k-bytes of row
//! `4h + l`, which is what `sdot` sums into its lane `l`), one `sdot` per line and activation row for the integer
//! block dots, then the scalar twin's f32 sequence ([`super::dot_scalar`]) lane by lane. Q4_K and Q6_K tiles go to
//! [`super::k_neon`].
//!
//! Integer exactness: `sdot` sums products of signed bytes into i32 lanes (at most 32 * 128 * 128 per block).
//! Q8_0 uses the signed quants (`w = u ^ 0x80`), so the lane sum is `sum(u * a) - 128 * sum(a)` directly; Q4 uses
//! the nibbles (0..=15) as signed bytes, and Q4_0 then subtracts `8 * sum(a)` as the twin does; Q5_0 adds to each
//! nibble its fifth bit from the plane (values 0..=31) and subtracts `16 * sum(a)`.

use std::arch::aarch64::*;

use super::{ActMeta, PackedFormat, PackedKernel, PackedTile, GROUP, MAX_ACT, Q5_PLANE_AT};
use crate::aarch64::neon::{f16x4_to_f32, Dotprod as Sdot, I8Dot};
use crate::aarch64::Dotprod;

/// Activation rows per pass over a quarter group (registers: 8 weight vectors + 4 accumulators + temporaries).
const ROWS_PER_PASS: usize = 4;

/// The NEON packed kernel, handed out only for the proof that the CPU has the dot-product instructions.
pub(crate) fn entry(_: Dotprod) -> PackedKernel {
    PackedKernel::simd(dot)
}

/// The entry [`entry`] hands out.
fn dot(t: &PackedTile, out: &mut [f32; GROUP * MAX_ACT]) {
    if t.n_groups > 1 {
        return t.each_group(out, dot);
    }
    if matches!(t.fmt, PackedFormat::Q4_K | PackedFormat::Q6_K) {
        // SAFETY: this entry is handed out only for the proof of the CPU features `k_neon` needs.
        return unsafe { super::k_neon::dot(t, out) };
    }
    let n = t.n_act;
    // The loads below rely on it.
    assert!(t.holds_shape(), "packed::neon::dot: tile buffers shorter than its shape");
    for r0 in (0..n).step_by(ROWS_PER_PASS) {
        let rn = (n - r0).min(ROWS_PER_PASS);
        for quarter in 0..4 {
            macro_rules! go {
                ($fmt:expr) => {
                    match rn {
                        1 => call::<$fmt, 1>(t, r0, quarter, out),
                        2 => call::<$fmt, 2>(t, r0, quarter, out),
                        3 => call::<$fmt, 3>(t, r0, quarter, out),
                        _ => call::<$fmt, 4>(t, r0, quarter, out),
                    }
                };
            }
            match t.fmt {
                PackedFormat::Q4_0 => go!(Q4_0),
                PackedFormat::Q4_1 => go!(Q4_1),
                PackedFormat::Q8_0 => go!(Q8_0),
                PackedFormat::Q5_0 => go!(Q5_0),
                PackedFormat::Q4_K | PackedFormat::Q6_K => unreachable!("K-quant tiles returned above"),
            }
        }
    }
}

/// The formats' codes, the kernels' const parameter `F`.
const Q4_0: u8 = PackedFormat::Q4_0 as u8;
const Q4_1: u8 = PackedFormat::Q4_1 as u8;
const Q8_0: u8 = PackedFormat::Q8_0 as u8;
const Q5_0: u8 = PackedFormat::Q5_0 as u8;

fn call<const F: u8, const N: usize>(
    t: &PackedTile,
    r0: usize,
    quarter: usize,
    out: &mut [f32; GROUP * MAX_ACT],
) {
    // SAFETY: only reachable from the private entry `dot`, handed out by `entry` for the proof that the CPU has
    // NEON and dotprod; `dot` checked the buffer lengths and the format `F` is the tile's; `r0 + N <= n_act`,
    // `quarter < 4`.
    unsafe { kernel::<F, N>(t, r0, quarter, out) }
}

/// Rows `r0..r0 + N` of the activations times rows `4 * quarter..4 * quarter + 4` of the group.
///
/// # Safety
/// The CPU has dotprod; `t.w` holds `nb` quant and scale tiles, `t.acts` at least `r0 + N` rows of `nb` activation
/// blocks (`t.arb` bytes apart), `t.meta` `(r0 + N) * nb` entries; `quarter < 4`.
#[target_feature(enable = "neon")]
unsafe fn kernel<const F: u8, const N: usize>(
    t: &PackedTile,
    r0: usize,
    quarter: usize,
    out: &mut [f32; GROUP * MAX_ACT],
) {
    let nb = t.nb;
    // The tile's format (`dot` matched it to `F`), so its sizes are compile-time constants here.
    let fmt = PackedFormat::from_code(F);
    debug_assert_eq!(fmt, t.fmt);
    let (qt, st, o) = (fmt.quant_tile(), fmt.scale_tile(), fmt.offset());
    let (ab, aoff) = (fmt.act_block(), fmt.act_offset());
    // Cursors advanced block by block; each stays inside its buffer (the lengths `dot` checked), one block past
    // its end after the last block. Every load below reads the current block through them.
    // SAFETY: quarter `quarter` of the first quant and scale tiles lies inside `t.w`.
    let (mut q, mut s) = unsafe { (t.w.as_ptr().add(16 * quarter), t.w.as_ptr().add(nb * qt + 8 * quarter)) };
    let mut a: [*const u8; ROWS_PER_PASS] = [t.acts.as_ptr(); ROWS_PER_PASS];
    let mut mt: [*const ActMeta; ROWS_PER_PASS] = [t.meta.as_ptr(); ROWS_PER_PASS];
    for r in 0..N {
        // SAFETY: activation row `r0 + r` (after its first block header) and its meta lie inside `t.acts`, `t.meta`.
        unsafe {
            a[r] = t.acts.as_ptr().add((r0 + r) * t.arb + aoff);
            mt[r] = t.meta.as_ptr().add((r0 + r) * nb);
        }
    }
    let mask = vdupq_n_u8(0x0f);
    let mut acc = [vdupq_n_f32(0.0); ROWS_PER_PASS];
    for _ in 0..nb {
        // SAFETY: the 4 scales of this quarter lie inside the current scale tile; byte loads need no alignment.
        let dw = f16x4_to_f32(vreinterpret_u16_u8(unsafe { vld1_u8(s) }));
        let mw = if F == Q4_1 {
            // SAFETY: the 4 minimums of this quarter lie inside the current (Q4_1) scale tile.
            f16x4_to_f32(vreinterpret_u16_u8(unsafe { vld1_u8(s.add(2 * GROUP)) }))
        } else {
            vdupq_n_f32(0.0)
        };
        // The 4 activation bytes `k..k + 4` of a row in every lane.
        let bcast = |p: *const u8, k: usize| {
            // SAFETY: `p` is a row's cursor and `k + 4 <= 32`: inside the current block's quants; unaligned read.
            let four = unsafe { p.add(k).cast::<i32>().read_unaligned() };
            vreinterpretq_s8_s32(vdupq_n_s32(four))
        };
        if F == Q8_0 {
            let mut w = [vdupq_n_s8(0); 8];
            for (k, w) in w.iter_mut().enumerate() {
                // Back to the signed quants.
                // SAFETY: 16 bytes of line `k` of the current quant tile.
                *w = vreinterpretq_s8_u8(veorq_u8(unsafe { vld1q_u8(q.add(64 * k)) }, vdupq_n_u8(0x80)));
            }
            for r in 0..N {
                let mut si = vdupq_n_s32(0);
                for (k, w) in w.iter().enumerate() {
                    // SAFETY: the caller guarantees dotprod.
                    si = unsafe { Sdot::dot(si, *w, bcast(a[r], 4 * k)) };
                }
                // SAFETY: row `r`'s meta cursor points at the current block's entry.
                let m = unsafe { *mt[r] };
                let d = vmulq_f32(dw, vdupq_n_f32(m.d));
                acc[r] = vfmaq_f32(acc[r], vcvtq_f32_s32(si), d);
            }
        } else {
            let mut lo = [vdupq_n_s8(0); 4];
            let mut hi = [vdupq_n_s8(0); 4];
            let plane = if F == Q5_0 {
                // SAFETY: a Q5_0 tile: this quarter's 16 bytes of the current quant tile's plane.
                unsafe { vld1q_u8(q.add(Q5_PLANE_AT)) }
            } else {
                vdupq_n_u8(0)
            };
            for k in 0..4 {
                // SAFETY: 16 bytes of line `k` of the current quant tile.
                let v = unsafe { vld1q_u8(q.add(64 * k)) };
                let (mut l, mut h) = (vandq_u8(v, mask), vshrq_n_u8::<4>(v));
                if F == Q5_0 {
                    // Plane bits `k` and `k + 4` moved to bit 4 (a negative count shifts right).
                    let bit4 = vdupq_n_u8(0x10);
                    l = vorrq_u8(l, vandq_u8(vshlq_u8(plane, vdupq_n_s8(4 - k as i8)), bit4));
                    h = vorrq_u8(h, vandq_u8(vshlq_u8(plane, vdupq_n_s8(-(k as i8))), bit4));
                }
                lo[k] = vreinterpretq_s8_u8(l);
                hi[k] = vreinterpretq_s8_u8(h);
            }
            for r in 0..N {
                let mut si = vdupq_n_s32(0);
                for k in 0..4 {
                    // SAFETY: the caller guarantees dotprod.
                    unsafe {
                        si = Sdot::dot(si, lo[k], bcast(a[r], 4 * k));
                        si = Sdot::dot(si, hi[k], bcast(a[r], 16 + 4 * k));
                    }
                }
                // SAFETY: row `r`'s meta cursor points at the current block's entry.
                let m = unsafe { *mt[r] };
                if F == Q4_0 || F == Q5_0 {
                    si = vaddq_s32(si, vdupq_n_s32(-o * m.sum));
                }
                let d = vmulq_f32(dw, vdupq_n_f32(m.d));
                acc[r] = vfmaq_f32(acc[r], vcvtq_f32_s32(si), d);
                if F == Q4_1 {
                    acc[r] = vfmaq_f32(acc[r], mw, vdupq_n_f32(m.s));
                }
            }
        }
        // SAFETY: the weight and meta cursors move to their next block (one past their buffer's end after the last).
        unsafe {
            q = q.add(qt);
            s = s.add(st);
            for r in 0..N {
                a[r] = a[r].wrapping_add(ab); // may end `aoff` bytes past `t.acts`: not read there
                mt[r] = mt[r].add(1);
            }
        }
    }
    for (r, v) in acc.iter().take(N).enumerate() {
        // SAFETY: `r0 + r < MAX_ACT` and `quarter < 4`, so the 4 lanes end at most at `MAX_ACT * GROUP`.
        unsafe { vst1q_f32(out.as_mut_ptr().add((r0 + r) * GROUP + 4 * quarter), *v) };
    }
}
