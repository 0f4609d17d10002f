//! NEON versions of the attention inner loops ([`crate::attention`]), bit-identical to the scalar twins: a dot
//! product keeps the 16 partial sums of the module's definition in four 4-lane vectors (fused multiply-adds, head
//! positions in order) and reduces them in the same fixed tree; a weighted sum updates each output element with one
//! fused multiply-add per value row, rows in order.

use std::arch::aarch64::*;

use half::f16;

use super::neon::{f16x4_to_f32, ld_f32, st_f32};
use super::Neon;
use crate::attention::{check_rows, mad_q8_0_scalar, AttentionKernels, DOT_SUMS, MAX_HEAD};

/// The NEON entries, handed out only for a NEON proof (the mad over Q8_0 values has no NEON version: the scalar
/// twin).
pub(crate) fn kernels(_: Neon) -> AttentionKernels {
    AttentionKernels::simd(dot, mix, mad_q8_0_scalar)
}

/// Checks that a head of `hd` values is whole groups of [`DOT_SUMS`] of at most [`MAX_HEAD`].
fn check_head(hd: usize) {
    assert!(
        hd.is_multiple_of(DOT_SUMS) && hd <= MAX_HEAD,
        "attention: head of {hd} values for 16-sum kernels"
    );
}

/// Four f16 values of `v` from `e`, widened to f32.
///
/// # Panics
/// If `e + 4 > v.len()`.
#[inline]
#[target_feature(enable = "neon")]
fn load4(v: &[f16], e: usize) -> float32x4_t {
    assert!(e + 4 <= v.len(), "load4 out of bounds");
    // SAFETY: bounds checked above; `f16` is 2 bytes with alignment 2, as `u16`.
    f16x4_to_f32(unsafe { vld1_u16(v.as_ptr().add(e).cast()) })
}

/// Dot products of each key with `q`.
fn dot(q: &[f32], keys: &[f16], stride: usize, off: usize, s: &mut [f32]) {
    check_head(q.len());
    check_rows(keys, stride, off, q.len(), s.len());
    // SAFETY: `dot` is private and only handed out by `kernels`, whose argument proves NEON; the loads are
    // bounds-checked.
    unsafe { dot_neon(q, keys, stride, off, s) }
}

/// One key at a time: sum `4r + l` in lane `l` of vector `r`; the reduction of `reduce_sums` (w = 8: vectors 0+2 and
/// 1+3; w = 4: their sum; w = 2: low + high halves; w = 1: the two lanes).
#[target_feature(enable = "neon")]
fn dot_neon(q: &[f32], keys: &[f16], stride: usize, off: usize, s: &mut [f32]) {
    let hd = q.len();
    for (j, sj) in s.iter_mut().enumerate() {
        let base = j * stride + off;
        let mut a = [vdupq_n_f32(0.0); 4];
        for d0 in (0..hd).step_by(DOT_SUMS) {
            for (r, ar) in a.iter_mut().enumerate() {
                *ar = vfmaq_f32(*ar, ld_f32(q, d0 + 4 * r), load4(keys, base + d0 + 4 * r));
            }
        }
        let c = vaddq_f32(vaddq_f32(a[0], a[2]), vaddq_f32(a[1], a[3]));
        let e = vadd_f32(vget_low_f32(c), vget_high_f32(c));
        *sj = vget_lane_f32::<0>(e) + vget_lane_f32::<1>(e);
    }
}

/// The weighted sum of value rows.
fn mix(acc: &mut [f32], p: &[f32], values: &[f16], stride: usize, off: usize) {
    check_head(acc.len());
    check_rows(values, stride, off, acc.len(), p.len());
    // SAFETY: `mix` is private and only handed out by `kernels`, whose argument proves NEON; the loads and stores are
    // bounds-checked.
    unsafe { mix_neon(acc, p, values, stride, off) }
}

/// Output values a pass of [`mix_neon`] keeps in registers (8 vectors).
const MIX_BLOCK: usize = 32;

#[target_feature(enable = "neon")]
fn mix_neon(acc: &mut [f32], p: &[f32], values: &[f16], stride: usize, off: usize) {
    let hd = acc.len();
    for b0 in (0..hd).step_by(MIX_BLOCK) {
        let nv = (hd - b0).min(MIX_BLOCK) / 4;
        let mut a = [vdupq_n_f32(0.0); MIX_BLOCK / 4];
        for (i, ai) in a[..nv].iter_mut().enumerate() {
            *ai = ld_f32(acc, b0 + 4 * i);
        }
        for (j, &pj) in p.iter().enumerate() {
            let vp = vdupq_n_f32(pj);
            let base = j * stride + off + b0;
            for (i, ai) in a[..nv].iter_mut().enumerate() {
                *ai = vfmaq_f32(*ai, vp, load4(values, base + 4 * i));
            }
        }
        for (i, ai) in a[..nv].iter().enumerate() {
            st_f32(acc, b0 + 4 * i, *ai);
        }
    }
}
