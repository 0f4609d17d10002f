//! NEON versions of the attention inner loops ([`crate::attention`]), bit-identical to the scalar twins: a score
//! is summed one lane per key with the head dimension walked in order (multiply, then add: no fused rounding),
//! and value updates are element-wise.

use std::arch::aarch64::*;

use half::f16;

use super::neon::{f16x4_to_f32, ld_f32, round_f16, st_f32};
use super::Neon;
use crate::attention::{check_rows, mad_q8_0_scalar, AttentionKernels, ScoreSum, MAX_HEAD};

/// Lanes of a NEON f32 vector: the head widths the entries take are multiples of it.
const LANES: usize = 4;

/// The NEON entries, handed out only for a NEON proof (the mad over Q8_0 values has no NEON version: the scalar
/// twin).
pub(crate) fn kernels(_: Neon) -> AttentionKernels {
    AttentionKernels::simd(LANES, scores, axpy, scale_round, mad_q8_0_scalar)
}

/// Checks that a head of `hd` values is whole vectors of at most [`MAX_HEAD`].
fn check_head(hd: usize) {
    assert!(hd.is_multiple_of(LANES) && hd <= MAX_HEAD, "attention: head of {hd} values for 4-lane kernels");
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

/// Transposes 4 rows of 4 lanes: out[t] lane j = rows[j] lane t.
#[inline]
#[target_feature(enable = "neon")]
fn transpose4(r: [float32x4_t; 4]) -> [float32x4_t; 4] {
    let t01 = vtrnq_f32(r[0], r[1]);
    let t23 = vtrnq_f32(r[2], r[3]);
    let lo = |a: float32x4_t, b: float32x4_t| {
        vreinterpretq_f32_f64(vzip1q_f64(vreinterpretq_f64_f32(a), vreinterpretq_f64_f32(b)))
    };
    let hi = |a: float32x4_t, b: float32x4_t| {
        vreinterpretq_f32_f64(vzip2q_f64(vreinterpretq_f64_f32(a), vreinterpretq_f64_f32(b)))
    };
    [lo(t01.0, t23.0), lo(t01.1, t23.1), hi(t01.0, t23.0), hi(t01.1, t23.1)]
}

/// Scores of 4 keys at a time, one lane per key, dimensions in order; the last `n % 4` keys by the scalar twin.
fn scores(q: &[f32], keys: &[f16], stride: usize, off: usize, scale: f32, sum: ScoreSum, s: &mut [f32]) {
    check_head(q.len());
    check_rows(keys, stride, off, q.len(), s.len());
    // SAFETY: `scores` is private and only handed out by `kernels`, whose argument proves NEON; the loads are
    // bounds-checked.
    unsafe { scores_neon(q, keys, stride, off, scale, sum, s) }
}

#[target_feature(enable = "neon")]
fn scores_neon(q: &[f32], keys: &[f16], stride: usize, off: usize, scale: f32, sum: ScoreSum, s: &mut [f32]) {
    let hd = q.len();
    let n4 = s.len() / 4 * 4;
    for j0 in (0..n4).step_by(4) {
        // Like the twin's `Sum`, start from -0.0.
        let mut acc = vdupq_n_f32(-0.0);
        let (mut lo, mut hi) = (vdupq_n_f64(-0.0), vdupq_n_f64(-0.0));
        for d0 in (0..hd).step_by(4) {
            let rows: [float32x4_t; 4] = std::array::from_fn(|j| load4(keys, (j0 + j) * stride + off + d0));
            for (t, c) in transpose4(rows).iter().enumerate() {
                let p = vmulq_n_f32(*c, q[d0 + t]);
                match sum {
                    ScoreSum::F32 => acc = vaddq_f32(acc, p),
                    ScoreSum::F64 => {
                        lo = vaddq_f64(lo, vcvt_f64_f32(vget_low_f32(p)));
                        hi = vaddq_f64(hi, vcvt_high_f64_f32(p));
                    }
                }
            }
        }
        if sum == ScoreSum::F64 {
            // FCVTN rounds to nearest even, as `f64 as f32`.
            acc = vcvt_high_f32_f64(vcvt_f32_f64(lo), hi);
        }
        st_f32(s, j0, vmulq_n_f32(acc, scale));
    }
    let rest = &keys[n4 * stride..];
    crate::attention::scores_scalar(q, rest, stride, off, scale, sum, &mut s[n4..]);
}

/// `acc = acc + p * v`, rounded to f16 after the add when `round`.
fn axpy(acc: &mut [f32], p: f32, v: &[f16], round: bool) {
    check_head(acc.len());
    assert_eq!(acc.len(), v.len(), "axpy_f16: lengths differ");
    // SAFETY: `axpy` is private and only handed out by `kernels`, whose argument proves NEON; the loads and stores
    // are bounds-checked.
    unsafe { axpy_neon(acc, p, v, round) }
}

#[target_feature(enable = "neon")]
fn axpy_neon(acc: &mut [f32], p: f32, v: &[f16], round: bool) {
    for d in (0..acc.len()).step_by(4) {
        let mut r = vaddq_f32(ld_f32(acc, d), vmulq_n_f32(load4(v, d), p));
        if round {
            r = round_f16(r);
        }
        st_f32(acc, d, r);
    }
}

/// `acc = f16(acc * m)`.
fn scale_round(acc: &mut [f32], m: f32) {
    check_head(acc.len());
    // SAFETY: `scale_round` is private and only handed out by `kernels`, whose argument proves NEON; the loads and
    // stores are bounds-checked.
    unsafe { scale_round_neon(acc, m) }
}

#[target_feature(enable = "neon")]
fn scale_round_neon(acc: &mut [f32], m: f32) {
    for d in (0..acc.len()).step_by(4) {
        st_f32(acc, d, round_f16(vmulq_n_f32(ld_f32(acc, d), m)));
    }
}
