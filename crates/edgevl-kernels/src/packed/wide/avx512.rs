//! The wide packed kernel and its group decoder with AVX-512 VNNI ([`super`]): per block, the 8 lines of a
//! panel's 16 activation rows stay in registers while each of the group's 16 weight rows adds one chain of 8
//! `vpdpbusd` (its 4 signed bytes broadcast from memory, its offset correction the chain's start) and one FMA.

use std::arch::x86_64::*;

use super::{WideKernel, WideTile, BIAS_AT, DA_AT, DEC_BLOCK, DW_AT, LANES, MW_AT, PANEL_BLOCK, SA_AT};
use crate::packed::{PackedFormat, GROUP};
use crate::x86::avx512::transpose16;
use crate::x86::Avx512Vnni;

/// The AVX-512 VNNI wide kernel, handed out only for the proof that the CPU has AVX-512 F/BW/VL/VNNI (and F16C).
pub(crate) fn entry(_: Avx512Vnni) -> WideKernel {
    WideKernel::simd((decode, dot, super::supports))
}

/// The decoder [`entry`] hands out.
fn decode(fmt: PackedFormat, group: &[u8], nb: usize, out: &mut [u8]) {
    // `WideKernel::decode` checked the lengths; the loads and stores below rely on them.
    assert!(group.len() >= nb * (fmt.quant_tile() + fmt.scale_tile()) && out.len() >= nb * DEC_BLOCK);
    // SAFETY: handed out only for the proof of the CPU features; lengths checked above.
    unsafe {
        match fmt {
            PackedFormat::Q4_0 | PackedFormat::Q4_1 => decode_in::<true>(fmt, group, nb, out),
            PackedFormat::Q8_0 => decode_in::<false>(fmt, group, nb, out),
            _ => unreachable!("WideKernel::decode checks the format"),
        }
    }
}

/// Decodes `nb` blocks: Q4 (`NIB`) nibbles minus the format's offset, or Q8_0 bytes with their top bit flipped; the bias of each
/// row from one `vpdpbusd` chain of the lines with bytes of 1; the scales widened to f32.
///
/// # Safety
/// The CPU has the enabled features; `group` holds `nb` quant tiles then `nb` scale tiles of `fmt`, `out` `nb`
/// decoded blocks.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn decode_in<const NIB: bool>(fmt: PackedFormat, group: &[u8], nb: usize, out: &mut [u8]) {
    let (qt, st) = (fmt.quant_tile(), fmt.scale_tile());
    let (q0, s0, d0) = (group.as_ptr(), group.as_ptr().wrapping_add(nb * qt), out.as_mut_ptr());
    let (mask, off, ones, flip) = (
        _mm512_set1_epi8(0x0f),
        _mm512_set1_epi8(fmt.offset() as i8),
        _mm512_set1_epi8(1),
        _mm512_set1_epi8(-128),
    );
    for b in 0..nb {
        // SAFETY: block `b`'s quant tile, scale tile and decoded block lie inside the buffers (caller); unaligned
        // loads and stores.
        unsafe {
            let (q, s, d) = (q0.add(b * qt), s0.add(b * st), d0.add(b * DEC_BLOCK));
            let lines: [__m512i; 8] = if NIB {
                let v: [__m512i; 4] = std::array::from_fn(|t| _mm512_loadu_si512(q.add(64 * t).cast()));
                std::array::from_fn(|j| {
                    let n = if j < 4 {
                        _mm512_and_si512(v[j], mask)
                    } else {
                        _mm512_and_si512(_mm512_srli_epi16::<4>(v[j - 4]), mask)
                    };
                    _mm512_sub_epi8(n, off)
                })
            } else {
                std::array::from_fn(|j| _mm512_xor_si512(_mm512_loadu_si512(q.add(64 * j).cast()), flip))
            };
            let mut sum = _mm512_setzero_si512();
            for (j, line) in lines.iter().enumerate() {
                _mm512_storeu_si512(d.add(64 * j).cast(), *line);
                sum = _mm512_dpbusd_epi32(sum, ones, *line);
            }
            let bias = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32::<7>(sum));
            _mm512_storeu_si512(d.add(BIAS_AT).cast(), bias);
            _mm512_storeu_ps(d.add(DW_AT).cast(), _mm512_cvtph_ps(_mm256_loadu_si256(s.cast())));
            let mw = if fmt == PackedFormat::Q4_1 {
                _mm512_cvtph_ps(_mm256_loadu_si256(s.add(2 * GROUP).cast()))
            } else {
                _mm512_setzero_ps()
            };
            _mm512_storeu_ps(d.add(MW_AT).cast(), mw);
        }
    }
}

/// The kernel [`entry`] hands out.
fn dot(t: &WideTile, out: &mut [f32; GROUP * LANES]) {
    // `WideTile::new` guarantees it; the loads below rely on it.
    assert!(t.holds_shape(), "packed::wide::avx512::dot: tile buffers shorter than its shape");
    // SAFETY: handed out only for the proof of the CPU features; shape checked above.
    unsafe { dot_in(t, out) }
}

/// [`dot`]'s body, compiled for the kernel's features so that the accumulators stay in registers through the
/// transpose and the stores (outside a `target_feature` function each intrinsic is an out-of-line call).
///
/// # Safety
/// The CPU has the enabled features; the tile holds its shape.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn dot_in(t: &WideTile, out: &mut [f32; GROUP * LANES]) {
    let mut rows = [_mm512_setzero_ps(); GROUP];
    // SAFETY: the caller's features and tile shape.
    unsafe {
        if t.fmt == PackedFormat::Q4_1 {
            kernel::<true, 0>(t, &mut rows);
            kernel::<true, 8>(t, &mut rows);
        } else {
            kernel::<false, 0>(t, &mut rows);
            kernel::<false, 8>(t, &mut rows);
        }
    }
    for (i, v) in transpose16(&rows).iter().enumerate() {
        // SAFETY: `i < LANES`, so `i * GROUP + 16 <= out.len()`; unaligned store.
        unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(i * GROUP), *v) };
    }
}

/// Weight rows `L0..L0 + 8` x 16 activation rows over `nb` blocks (two calls cover the group: 8 accumulators, the
/// 8 activation lines, the scales and the chain fit in the 32 registers); `MIN`: add the Q4_1 minimums' term.
///
/// # Safety
/// The CPU has the enabled features; the tile holds its shape.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn kernel<const MIN: bool, const L0: usize>(t: &WideTile, rows: &mut [__m512; GROUP]) {
    let (dec, panel) = (t.dec.as_ptr(), t.panel.as_ptr());
    let mut acc = [_mm512_setzero_ps(); 8];
    for b in 0..t.nb {
        // SAFETY: block `b` of the decoded group and of the panel lie inside their buffers (the tile's shape); the
        // loads are unaligned, the broadcasts read 4 bytes inside the block.
        unsafe {
            let (d, p) = (dec.add(b * DEC_BLOCK), panel.add(b * PANEL_BLOCK));
            let a: [__m512i; 8] = std::array::from_fn(|j| _mm512_loadu_si512(p.add(64 * j).cast()));
            let da = _mm512_loadu_ps(p.add(DA_AT).cast());
            let sa = if MIN { _mm512_loadu_ps(p.add(SA_AT).cast()) } else { _mm512_setzero_ps() };
            let bcast = |at: usize| _mm512_set1_epi32(d.add(at).cast::<i32>().read_unaligned());
            // Weight row `$l`'s chain and FMA; written out for each row (a loop over the rows is not unrolled,
            // and its accumulators would live on the stack).
            macro_rules! row {
                ($r:literal) => {
                    let l = L0 + $r;
                    let mut si = bcast(BIAS_AT + 4 * l);
                    for (j, a) in a.iter().enumerate() {
                        si = _mm512_dpbusd_epi32(si, *a, bcast(64 * j + 4 * l));
                    }
                    let dw = _mm512_set1_ps(d.add(DW_AT + 4 * l).cast::<f32>().read_unaligned());
                    acc[$r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(si), _mm512_mul_ps(dw, da), acc[$r]);
                    if MIN {
                        let mw = _mm512_set1_ps(d.add(MW_AT + 4 * l).cast::<f32>().read_unaligned());
                        acc[$r] = _mm512_fmadd_ps(mw, sa, acc[$r]);
                    }
                };
            }
            row!(0);
            row!(1);
            row!(2);
            row!(3);
            row!(4);
            row!(5);
            row!(6);
            row!(7);
        }
    }
    rows[L0..L0 + 8].copy_from_slice(&acc);
}
