//! The packed kernels with AVX-512 VNNI: per block, 16 rows' int32 dots by `vpdpbusd` of the unsigned weight bytes
//! with a broadcast 4-byte activation group, then one f32 FMA per activation row (the scalar twin's sequence,
//! [`super::dot_scalar`], lane by lane).

use std::arch::x86_64::*;

use super::{offset, quant_tile, scale_tile, ActMeta, PackedTile, GROUP, MAX_ACT, QK};
use crate::dtype::DType;

/// Entry point installed in the kernel table after AVX-512 F/BW/VL/VNNI were detected.
pub(crate) fn dot(t: &PackedTile, out: &mut [f32; GROUP * MAX_ACT]) {
    let n = t.n_act.clamp(1, MAX_ACT);
    let nb = t.nb;
    let ok = t.w.len() >= nb * (quant_tile(t.dtype) + scale_tile(t.dtype))
        && t.acts.len() >= n * t.arb
        && t.meta.len() >= n * nb
        && t.arb >= nb * (QK + act_off(t.dtype));
    assert!(ok, "packed::avx512::dot: tile buffers shorter than its shape");
    macro_rules! go {
        ($fmt:expr) => {
            match n {
                1 => call::<$fmt, 1>(t, out),
                2 => call::<$fmt, 2>(t, out),
                3 => call::<$fmt, 3>(t, out),
                4 => call::<$fmt, 4>(t, out),
                5 => call::<$fmt, 5>(t, out),
                6 => call::<$fmt, 6>(t, out),
                7 => call::<$fmt, 7>(t, out),
                _ => call::<$fmt, 8>(t, out),
            }
        };
    }
    match t.dtype {
        DType::Q4_0 => go!(Q4_0),
        DType::Q4_1 => go!(Q4_1),
        _ => go!(Q8_0),
    }
}

/// How many blocks ahead the quants are prefetched.
const PREFETCH_BLOCKS: usize = 16;

const Q4_0: u8 = 0;
const Q4_1: u8 = 1;
const Q8_0: u8 = 2;

/// Bytes before the quants of an activation block (Q8_1 for Q4_1, Q8_0 otherwise).
fn act_off(dtype: DType) -> usize {
    if dtype == DType::Q4_1 {
        4
    } else {
        2
    }
}

fn call<const F: u8, const N: usize>(t: &PackedTile, out: &mut [f32; GROUP * MAX_ACT]) {
    // SAFETY: this function is only reachable through the table entry installed after AVX-512 F/BW/VL/VNNI (and
    // AVX2/FMA/F16C) were detected; the buffer lengths were checked by `dot`.
    unsafe { kernel::<F, N>(t, out) }
}

/// Repeats `$m!(r)` for `r` in `0..MAX_ACT` (rows `r >= N` compile to nothing), so that the accumulators indexed
/// by constants stay in registers.
macro_rules! each_row {
    ($m:ident) => {
        $m!(0);
        $m!(1);
        $m!(2);
        $m!(3);
        $m!(4);
        $m!(5);
        $m!(6);
        $m!(7);
    };
}

/// # Safety
/// The CPU supports the enabled features; `t.w` holds `nb` quant and scale tiles, `t.acts` `N` rows of at least
/// `nb` activation blocks each (`t.arb` bytes apart), `t.meta` `N * nb` entries.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn kernel<const F: u8, const N: usize>(t: &PackedTile, out: &mut [f32; GROUP * MAX_ACT]) {
    let nb = t.nb;
    let dtype = t.dtype;
    let (qt, st) = (quant_tile(dtype), scale_tile(dtype));
    let ab = if F == Q4_1 { QK + 4 } else { QK + 2 };
    let aoff = if F == Q4_1 { 4 } else { 2 };
    let o = offset(dtype);
    // Cursors advanced block by block (no index arithmetic in the loop). SAFETY (every `add` below): the cursors
    // stay inside (or one block past the end of) the buffers whose lengths `dot` checked.
    let mut q = t.w.as_ptr();
    let mut s = unsafe { q.add(nb * qt) };
    let mut a: [*const u8; MAX_ACT] = [t.acts.as_ptr(); MAX_ACT];
    let mut mt: [*const ActMeta; MAX_ACT] = [t.meta.as_ptr(); MAX_ACT];
    for r in 0..N {
        a[r] = unsafe { t.acts.as_ptr().add(r * t.arb + aoff) };
        mt[r] = unsafe { t.meta.as_ptr().add(r * nb) };
    }
    let mask = _mm512_set1_epi8(0x0f);
    let mut acc = [_mm512_setzero_ps(); MAX_ACT];
    for _ in 0..nb {
        // A hint only (prefetches never fault): the quants a few blocks ahead, for the single-row decode case
        // where the hardware prefetcher alone leaves bandwidth unused.
        _mm_prefetch::<_MM_HINT_T0>(q.wrapping_add(PREFETCH_BLOCKS * qt).cast());
        _mm_prefetch::<_MM_HINT_T0>(q.wrapping_add(PREFETCH_BLOCKS * qt + 64).cast());
        _mm_prefetch::<_MM_HINT_T0>(q.wrapping_add(PREFETCH_BLOCKS * qt + 128).cast());
        _mm_prefetch::<_MM_HINT_T0>(q.wrapping_add(PREFETCH_BLOCKS * qt + 192).cast());
        // SAFETY (loads below): the current block of the quant/scale tiles lies inside `t.w`, of each activation
        // row inside `t.acts`, of each meta row inside `t.meta`; all loads are unaligned.
        let dw = _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(s.cast()) });
        let mw = if F == Q4_1 {
            _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(s.add(2 * GROUP).cast()) })
        } else {
            _mm512_setzero_ps()
        };
        let bcast =
            |p: *const u8, k: usize| _mm512_set1_epi32(unsafe { p.add(k).cast::<i32>().read_unaligned() });
        if F == Q8_0 {
            let mut w = [_mm512_setzero_si512(); 8];
            for (k, w) in w.iter_mut().enumerate() {
                *w = unsafe { _mm512_loadu_si512(q.add(64 * k).cast()) };
            }
            macro_rules! row {
                ($r:expr) => {
                    if $r < N {
                        let m = unsafe { *mt[$r] };
                        // Two chains of 4 `vpdpbusd` (exact integer sums, added at the end).
                        let mut s0 = _mm512_set1_epi32(-o * m.sum);
                        let mut s1 = _mm512_setzero_si512();
                        for k in 0..4 {
                            s0 = _mm512_dpbusd_epi32(s0, w[k], bcast(a[$r], 4 * k));
                            s1 = _mm512_dpbusd_epi32(s1, w[k + 4], bcast(a[$r], 16 + 4 * k));
                        }
                        let si = _mm512_add_epi32(s0, s1);
                        let d = _mm512_mul_ps(dw, _mm512_set1_ps(m.d));
                        acc[$r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(si), d, acc[$r]);
                    }
                };
            }
            each_row!(row);
        } else {
            let mut lo = [_mm512_setzero_si512(); 4];
            let mut hi = [_mm512_setzero_si512(); 4];
            for k in 0..4 {
                let v = unsafe { _mm512_loadu_si512(q.add(64 * k).cast()) };
                lo[k] = _mm512_and_si512(v, mask);
                hi[k] = _mm512_and_si512(_mm512_srli_epi16::<4>(v), mask);
            }
            macro_rules! row {
                ($r:expr) => {
                    if $r < N {
                        let m = unsafe { *mt[$r] };
                        let mut s0 =
                            if F == Q4_0 { _mm512_set1_epi32(-o * m.sum) } else { _mm512_setzero_si512() };
                        let mut s1 = _mm512_setzero_si512();
                        for k in 0..4 {
                            s0 = _mm512_dpbusd_epi32(s0, lo[k], bcast(a[$r], 4 * k));
                            s1 = _mm512_dpbusd_epi32(s1, hi[k], bcast(a[$r], 16 + 4 * k));
                        }
                        let si = _mm512_add_epi32(s0, s1);
                        let d = _mm512_mul_ps(dw, _mm512_set1_ps(m.d));
                        acc[$r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(si), d, acc[$r]);
                        if F == Q4_1 {
                            acc[$r] = _mm512_fmadd_ps(mw, _mm512_set1_ps(m.s), acc[$r]);
                        }
                    }
                };
            }
            each_row!(row);
        }
        q = unsafe { q.add(qt) };
        s = unsafe { s.add(st) };
        for r in 0..N {
            a[r] = unsafe { a[r].add(ab) };
            mt[r] = unsafe { mt[r].add(1) };
        }
    }
    for (r, a) in acc.iter().take(N).enumerate() {
        // SAFETY: `r < N <= MAX_ACT`, so `r * GROUP + 16 <= out.len()`.
        unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(r * GROUP), *a) };
    }
}
