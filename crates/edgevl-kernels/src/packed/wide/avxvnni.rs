//! The wide packed kernel and its group decoder with AVX-VNNI ([`super`]) for Q8_0 weights, on CPUs with 256-bit
//! `vpdpbusd` but no AVX-512 (Intel client cores from Alder Lake on): the AVX-512 kernel's layouts and arithmetic,
//! each 64-byte line taken as two 32-byte halves. Per half (8 activation rows in the 8 lanes of a vector) and block,
//! each of 8 weight rows adds one chain of 8 `vpdpbusd`, a panel line at a time (the row's 4 signed bytes
//! broadcast, its offset correction the chain's start), then one FMA; the 8 chains, a line and the broadcasts fill
//! the 16 vector registers (the float sums spill), so the group's 16 weight rows take 2 passes over the blocks.
//!
//! Q8_0 only: measured on a Xeon (Emerald Rapids) capped at AVX-VNNI against the row-lane AVX-VNNI kernel, the so400m
//! ViT's 9-view encode (batches of 4 views) was 9% faster on two threads, on par on one, and a one-core one-tile
//! microbenchmark (`vit_peak`) slower; Q4_0 (2.7B pp512) was no faster and Q4_1 (SmolLM2-135M pp512) 12% slower, so
//! those stay on the row-lane kernel (docs/benchmarks.md, "AVX-VNNI wide kernel for Q8_0").

use std::arch::x86_64::*;

use super::{WideKernel, WideTile, BIAS_AT, DA_AT, DEC_BLOCK, DW_AT, LANES, MW_AT, PANEL_BLOCK};
use crate::packed::{PackedFormat, GROUP};
use crate::x86::avx2::transpose8;
use crate::x86::AvxVnni;

/// Weight rows per pass over the blocks (the register budget above).
const ROWS_PER_PASS: usize = 8;
/// Activation rows in the lanes of a 256-bit vector of i32.
const HALF: usize = LANES / 2;

/// The AVX-VNNI wide kernel, handed out only for the proof that the CPU has AVX-VNNI, AVX2, FMA and F16C.
pub(crate) fn entry(_: AvxVnni) -> WideKernel {
    WideKernel::simd((decode, dot, takes))
}

/// The formats [`entry`]'s kernel takes: Q8_0 (module doc).
fn takes(fmt: PackedFormat) -> bool {
    fmt == PackedFormat::Q8_0
}

/// The decoder [`entry`] hands out.
fn decode(fmt: PackedFormat, group: &[u8], nb: usize, out: &mut [u8]) {
    // `WideKernel::decode` checked the format and the lengths; the loads and stores below rely on them.
    assert!(
        takes(fmt)
            && group.len() >= nb * (fmt.quant_tile() + fmt.scale_tile())
            && out.len() >= nb * DEC_BLOCK
    );
    // SAFETY: handed out only for the proof of the CPU features; format and lengths checked above.
    unsafe { decode_in(fmt, group, nb, out) }
}

/// Decodes `nb` Q8_0 blocks, a half of each 64-byte line at a time (weight rows 0-7, then 8-15): the bytes with
/// their top bit flipped; the bias of each row from one `vpdpbusd` chain of the lines with bytes of 1; the scales
/// widened to f32, the minimums zero.
///
/// # Safety
/// The CPU has the enabled features; `group` holds `nb` quant tiles then `nb` scale tiles of Q8_0, `out` `nb`
/// decoded blocks.
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
unsafe fn decode_in(fmt: PackedFormat, group: &[u8], nb: usize, out: &mut [u8]) {
    let (qt, st) = (fmt.quant_tile(), fmt.scale_tile());
    let (q0, s0, d0) = (group.as_ptr(), group.as_ptr().wrapping_add(nb * qt), out.as_mut_ptr());
    let (ones, flip) = (_mm256_set1_epi8(1), _mm256_set1_epi8(-128));
    for b in 0..nb {
        for h in 0..2 {
            // SAFETY: block `b`'s quant tile, scale tile and decoded block lie inside the buffers (caller), and half
            // `h` of each 64-byte line or 16-value scale vector inside its block; unaligned loads and stores.
            unsafe {
                let (q, s, d) =
                    (q0.add(b * qt + 32 * h), s0.add(b * st + 16 * h), d0.add(b * DEC_BLOCK + 32 * h));
                let mut sum = _mm256_setzero_si256();
                for j in 0..8 {
                    let line = _mm256_xor_si256(_mm256_loadu_si256(q.add(64 * j).cast()), flip);
                    _mm256_storeu_si256(d.add(64 * j).cast(), line);
                    sum = _mm256_dpbusd_avx_epi32(sum, ones, line);
                }
                let bias = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32::<7>(sum));
                _mm256_storeu_si256(d.add(BIAS_AT).cast(), bias);
                _mm256_storeu_ps(d.add(DW_AT).cast(), _mm256_cvtph_ps(_mm_loadu_si128(s.cast())));
                _mm256_storeu_ps(d.add(MW_AT).cast(), _mm256_setzero_ps());
            }
        }
    }
}

/// The kernel [`entry`] hands out.
fn dot(t: &WideTile, out: &mut [f32; GROUP * LANES]) {
    // `WideTile::new` guarantees the shape; the loads below rely on it and the arithmetic on the format.
    assert!(t.holds_shape() && takes(t.fmt), "packed::wide::avxvnni::dot: not a Q8_0 tile of its shape");
    // SAFETY: handed out only for the proof of the CPU features; shape and format checked above.
    unsafe { dot_in(t, out) }
}

/// [`dot`]'s body, compiled for the kernel's features so that the transposes and the stores are inlined (outside a
/// `target_feature` function each intrinsic is an out-of-line call).
///
/// # Safety
/// The CPU has the enabled features; the tile holds its shape.
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
unsafe fn dot_in(t: &WideTile, out: &mut [f32; GROUP * LANES]) {
    for h in 0..2 {
        // rows[l]: weight row l's outputs for activation rows 8h..8h + 8, a lane each.
        let mut rows = [_mm256_setzero_ps(); GROUP];
        for l0 in (0..GROUP).step_by(ROWS_PER_PASS) {
            let acc = &mut rows[l0..l0 + ROWS_PER_PASS];
            // SAFETY: the caller's features and tile shape; `h < 2`, `l0 + 8 <= GROUP`.
            unsafe { kernel(t, h, l0, acc) };
        }
        for (part, cols) in rows.chunks_exact(HALF).enumerate() {
            let cols: &[__m256; HALF] = cols.try_into().expect("GROUP is two halves");
            for (i, v) in transpose8(cols).iter().enumerate() {
                // SAFETY: `i < 8`, `h < 2`, `part < 2`: `(8h + i) * GROUP + 8 * part + 8 <= GROUP * LANES`; unaligned.
                unsafe { _mm256_storeu_ps(out.as_mut_ptr().add((HALF * h + i) * GROUP + HALF * part), *v) };
            }
        }
    }
}

/// Weight rows `l0..l0 + 8` x activation rows `8h..8h + 8` of a Q8_0 tile over `nb` blocks into `acc` (a lane an
/// activation row). Per block, line by line: each of the 8 rows' chains takes the line's `vpdpbusd` (8 independent
/// chains cover the instruction's latency; 4 did not), then each row's FMA.
///
/// # Safety
/// The CPU has the enabled features; the tile holds its shape; `h < 2`, `l0 + 8 <= GROUP`, `acc.len() == 8`.
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
unsafe fn kernel(t: &WideTile, h: usize, l0: usize, acc: &mut [__m256]) {
    let (dec, panel) = (t.dec.as_ptr(), t.panel.as_ptr());
    let mut sums = [_mm256_setzero_ps(); ROWS_PER_PASS];
    for b in 0..t.nb {
        // SAFETY: block `b` of the decoded group and of the panel lie inside their buffers (the tile's shape), half
        // `h` of each line and of the activation scales inside the block; the loads are unaligned, the broadcasts
        // read 4 bytes inside the block.
        unsafe {
            let (d, p) = (dec.add(b * DEC_BLOCK + 4 * l0), panel.add(b * PANEL_BLOCK + 32 * h));
            let bcast = |at: usize| _mm256_set1_epi32(d.add(at).cast::<i32>().read_unaligned());
            let mut si: [__m256i; ROWS_PER_PASS] = std::array::from_fn(|r| bcast(BIAS_AT + 4 * r));
            for j in 0..8 {
                let a = _mm256_loadu_si256(p.add(64 * j).cast());
                // Written out for each row (a loop over the rows is not unrolled, and its chains would live on the
                // stack).
                macro_rules! line {
                    ($($r:literal)*) => {
                        $(si[$r] = _mm256_dpbusd_avx_epi32(si[$r], a, bcast(64 * j + 4 * $r));)*
                    };
                }
                line!(0 1 2 3 4 5 6 7);
            }
            let da = _mm256_loadu_ps(p.add(DA_AT).cast());
            for (r, (sum, si)) in sums.iter_mut().zip(si).enumerate() {
                let dw = _mm256_set1_ps(d.add(DW_AT + 4 * r).cast::<f32>().read_unaligned());
                *sum = _mm256_fmadd_ps(_mm256_cvtepi32_ps(si), _mm256_mul_ps(dw, da), *sum);
            }
        }
    }
    acc.copy_from_slice(&sums);
}
