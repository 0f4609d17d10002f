//! NEON building blocks shared by the per-format kernels (`formats/<format>/neon.rs`): exact signed byte dot
//! products with and without `sdot`, bounds-checked loads, f16 conversions and the table entries.
//!
//! f16 <-> f32 conversions use the Armv8.0 `fcvtl`/`fcvtn` instructions through inline assembly, and `sdot` is
//! emitted the same way (`vdotq_s32` is still unstable in Rust): the `float16x4_t` intrinsics need the unstable
//! `f16` type.

use std::arch::aarch64::*;
use std::arch::asm;

use crate::aarch64::Neon;
use crate::dispatch::DotFn;
use crate::formats::{as_blocks, Block};

/// Signed byte dot products: `acc` plus the 16 products of `a` and `b`, summed into 4 i32 lanes. Only the sum of
/// the lanes is meaningful (which products land in which lane differs between implementations); it is exact.
pub(crate) trait I8Dot {
    /// # Safety
    /// The implementation's CPU feature is available.
    unsafe fn dot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t;
}

/// Armv8.0 NEON: widening multiplies to i16 (exact: |a * b| <= 2^14) and pairwise accumulation into i32.
pub(crate) struct Plain;

impl I8Dot for Plain {
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn dot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        let lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
        let hi = vmull_high_s8(a, b);
        vpadalq_s16(vpadalq_s16(acc, lo), hi)
    }
}

/// Armv8.2 dot product: one `sdot` (lane `k` += sum of 4 products `4k..4k+4`).
pub(crate) struct Dotprod;

impl I8Dot for Dotprod {
    // `sdot` is enabled for the assembler by the directive below, not by `target_feature`, so that the kernels
    // (compiled for plain NEON) can inline this.
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn dot(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        // SAFETY: the caller guarantees the dotprod feature; register-only instruction.
        unsafe {
            asm!(
                ".arch_extension dotprod",
                "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
                acc = inout(vreg) acc,
                a = in(vreg) a,
                b = in(vreg) b,
                options(pure, nomem, nostack, preserves_flags)
            );
        }
        acc
    }
}

/// 16 signed bytes of `s` from `off`.
///
/// # Panics
/// If `off + 16 > s.len()` (optimised away for fixed-size block arrays).
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn ld_i8(s: &[i8], off: usize) -> int8x16_t {
    assert!(off + 16 <= s.len(), "ld_i8 out of bounds");
    // SAFETY: bounds checked above; `vld1q_s8` has no alignment requirement beyond the element's (1).
    unsafe { vld1q_s8(s.as_ptr().add(off)) }
}

/// 16 bytes of `s` from `off`.
///
/// # Panics
/// If `off + 16 > s.len()`.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn ld_u8(s: &[u8], off: usize) -> uint8x16_t {
    assert!(off + 16 <= s.len(), "ld_u8 out of bounds");
    // SAFETY: bounds checked above; byte loads have no alignment requirement.
    unsafe { vld1q_u8(s.as_ptr().add(off)) }
}

/// Four f32 of `s` from element `e`.
///
/// # Panics
/// If `e + 4 > s.len()`.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn ld_f32(s: &[f32], e: usize) -> float32x4_t {
    assert!(e + 4 <= s.len(), "ld_f32 out of bounds");
    // SAFETY: bounds checked above; `s` is f32-aligned.
    unsafe { vld1q_f32(s.as_ptr().add(e)) }
}

/// Stores four f32 into `s` from element `e`.
///
/// # Panics
/// If `e + 4 > s.len()`.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn st_f32(s: &mut [f32], e: usize, v: float32x4_t) {
    assert!(e + 4 <= s.len(), "st_f32 out of bounds");
    // SAFETY: bounds checked above; `s` is f32-aligned and exclusively borrowed.
    unsafe { vst1q_f32(s.as_mut_ptr().add(e), v) }
}

/// Widens 4 f16 (raw bits) to f32 (exact).
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn f16x4_to_f32(h: uint16x4_t) -> float32x4_t {
    let r: float32x4_t;
    // SAFETY: FCVTL is an Armv8.0 Advanced SIMD instruction; registers only.
    unsafe {
        asm!("fcvtl {r:v}.4s, {h:v}.4h", h = in(vreg) h, r = out(vreg) r, options(pure, nomem, nostack, preserves_flags));
    }
    r
}

/// Four f16 scales (raw bits, as stored little-endian) widened to f32 with one instruction: the same values as
/// `crate::formats::f16_to_f32`, without `half`'s per-call feature check.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn f16x4(h: [[u8; 2]; 4]) -> [f32; 4] {
    let bits = h.iter().rev().fold(0u64, |acc, b| (acc << 16) | u64::from(u16::from_le_bytes(*b)));
    let v = f16x4_to_f32(vcreate_u16(bits));
    [vgetq_lane_f32::<0>(v), vgetq_lane_f32::<1>(v), vgetq_lane_f32::<2>(v), vgetq_lane_f32::<3>(v)]
}

/// Widens 8 f16 (raw bits) to f32 (exact): elements 0..4 and 4..8.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn f16x8_to_f32(h: uint16x8_t) -> [float32x4_t; 2] {
    let (lo, hi): (float32x4_t, float32x4_t);
    // SAFETY: FCVTL/FCVTL2 are Armv8.0 Advanced SIMD instructions; registers only. `lo` is not `lateout`, so it
    // does not share a register with `h`, which the second instruction still reads.
    unsafe {
        asm!(
            "fcvtl {lo:v}.4s, {h:v}.4h",
            "fcvtl2 {hi:v}.4s, {h:v}.8h",
            h = in(vreg) h,
            lo = out(vreg) lo,
            hi = out(vreg) hi,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    [lo, hi]
}

/// Rounds 4 f32 lanes to f16 (raw bits; round to nearest, ties to even, as `half::f16::from_f32`).
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn f32_to_f16x4(x: float32x4_t) -> uint16x4_t {
    let r: uint16x4_t;
    // SAFETY: FCVTN is an Armv8.0 Advanced SIMD instruction; registers only.
    unsafe {
        asm!("fcvtn {r:v}.4h, {x:v}.4s", x = in(vreg) x, r = out(vreg) r, options(pure, nomem, nostack, preserves_flags));
    }
    r
}

/// Runs `kernel(weight row blocks, activation row blocks)` for every weight row of `w` and each of the `n_act`
/// activation rows ([`crate::dispatch::DotFn`] layout); each output depends only on its two rows.
#[inline(always)]
pub(crate) fn dot_rows<W: Block, A: Block>(
    w: &[u8],
    w_row_bytes: usize,
    acts: &[u8],
    act_row_bytes: usize,
    n_act: usize,
    out: &mut [f32],
    kernel: impl Fn(&[W], &[A]) -> f32,
) {
    let n_act = n_act.clamp(1, 4);
    for (wr, o) in w.chunks_exact(w_row_bytes).zip(out.chunks_exact_mut(n_act)) {
        let wb = as_blocks::<W>(wr);
        for (o, a) in o.iter_mut().zip(acts.chunks(act_row_bytes)) {
            *o = kernel(wb, as_blocks::<A>(a));
        }
    }
}

/// Defines the table entries of a block format from a row kernel `$kernel::<D: I8Dot>(weight_blocks,
/// activation_blocks) -> f32` (an `unsafe fn` whose safety condition is `D`'s CPU feature): `dot` (plain NEON),
/// handed out only for a [`crate::aarch64::Neon`] proof, and `dot_dotprod` (with `sdot`), only for a
/// [`crate::aarch64::Dotprod`] proof. The entries themselves are private to the module.
macro_rules! neon_dot_entry {
    // One private entry `$entry` running `$kernel` with the integer-dot flavour `$D`, handed out by `$name` for a
    // `$Token`.
    (@entry $name:ident, $entry:ident, $Token:ident, $D:ident, $W:ty, $A:ty, $kernel:ident, $doc:literal) => {
        #[doc = $doc]
        pub(crate) fn $name(_: $crate::aarch64::$Token) -> $crate::dispatch::DotFn {
            $entry
        }

        /// The entry the function of the same flavour hands out.
        fn $entry(w: &[u8], w_row_bytes: usize, acts: &[u8], act_row_bytes: usize, n_act: usize, out: &mut [f32]) {
            $crate::aarch64::neon::dot_rows::<$W, $A>(w, w_row_bytes, acts, act_row_bytes, n_act, out, |w, a| {
                // SAFETY: this entry is private and only handed out for the proof that the CPU has `$D`'s feature
                // (a `$Token`); the kernel reads its blocks through bounds-checked loads only.
                unsafe {
                    $kernel::<$crate::aarch64::neon::$D>(w, a)
                }
            });
        }
    };
    ($W:ty, $A:ty, $kernel:ident) => {
        $crate::aarch64::neon::neon_dot_entry!(@entry dot, entry_plain, Neon, Plain, $W, $A, $kernel,
            "Table entry ([`crate::dispatch::DotFn`]) with plain NEON, handed out only for a NEON proof.");
        $crate::aarch64::neon::neon_dot_entry!(@entry dot_dotprod, entry_dotprod, Dotprod, Dotprod, $W, $A, $kernel,
            "Table entry ([`crate::dispatch::DotFn`]) with `sdot`, handed out only for a dotprod proof.");
    };
}
pub(crate) use neon_dot_entry;

pub(crate) use crate::formats::{FLOAT_BF16, FLOAT_F16, FLOAT_F32};

/// 8 elements `e..e+8` of a row of encoding `K` (raw little-endian bytes) as f32.
///
/// # Panics
/// If the row is too short.
#[inline]
#[target_feature(enable = "neon")]
fn load8<const K: u8>(s: &[u8], e: usize) -> [float32x4_t; 2] {
    match K {
        FLOAT_F32 => [vreinterpretq_f32_u8(ld_u8(s, 4 * e)), vreinterpretq_f32_u8(ld_u8(s, 4 * e + 16))],
        FLOAT_F16 => f16x8_to_f32(vreinterpretq_u16_u8(ld_u8(s, 2 * e))),
        _ => {
            let h = vreinterpretq_u16_u8(ld_u8(s, 2 * e));
            [
                vreinterpretq_f32_u32(vshll_n_u16::<16>(vget_low_u16(h))),
                vreinterpretq_f32_u32(vshll_high_n_u16::<16>(h)),
            ]
        }
    }
}

/// The table entry ([`DotFn`]) of float weights of encoding `K` ([`FLOAT_F32`], [`FLOAT_F16`], [`FLOAT_BF16`]),
/// handed out only for a NEON proof.
pub(crate) fn float_dot<const K: u8>(_: Neon) -> DotFn {
    float_entry::<K>
}

/// Float dot products of consecutive weight rows with up to 4 activation rows, all of encoding `K`
/// ([`crate::dispatch::DotFn`] layout): 4 x 4 f32 lanes of fused multiply-add accumulators over 16 elements at a
/// time, then a scalar tail. Results differ from the scalar twin (f64 sums) by f32 rounding only.
fn float_entry<const K: u8>(
    w: &[u8],
    w_row_bytes: usize,
    acts: &[u8],
    act_row_bytes: usize,
    n_act: usize,
    out: &mut [f32],
) {
    let elem = if K == FLOAT_F32 { 4 } else { 2 };
    let n = w_row_bytes / elem;
    for (wr, o) in w.chunks_exact(w_row_bytes).zip(out.chunks_exact_mut(n_act.clamp(1, 4))) {
        for (o, a) in o.iter_mut().zip(acts.chunks(act_row_bytes)) {
            // SAFETY: `float_entry` is private and only handed out by `float_dot`, whose argument proves NEON;
            // `dot_float_row` reads through bounds-checked loads only.
            *o = unsafe { dot_float_row::<K>(wr, a, n) };
        }
    }
}

/// Dot product of the first `n` elements of two rows of encoding `K`.
///
/// # Panics
/// If a row is shorter than `n` elements.
#[inline]
#[target_feature(enable = "neon")]
fn dot_float_row<const K: u8>(wr: &[u8], a: &[u8], n: usize) -> f32 {
    let main = n - n % 16;
    let mut acc = [vdupq_n_f32(0.0); 4];
    for e in (0..main).step_by(16) {
        for h in 0..2 {
            let (x, y) = (load8::<K>(wr, e + 8 * h), load8::<K>(a, e + 8 * h));
            acc[2 * h] = vfmaq_f32(acc[2 * h], x[0], y[0]);
            acc[2 * h + 1] = vfmaq_f32(acc[2 * h + 1], x[1], y[1]);
        }
    }
    let s = vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3]));
    let tail: f32 = (main..n)
        .map(|e| crate::formats::float_elem::<K>(wr, e) * crate::formats::float_elem::<K>(a, e))
        .sum();
    vaddvq_f32(s) + tail
}
