//! The packed kernels with AVX2: each 16-row group as two halves of 8 rows (the low and high 32 bytes of every
//! 64-byte line), `vpmaddubsw` + `vpmaddwd` for the integer block dots, then the scalar twin's f32 sequence
//! ([`super::dot_scalar`]) lane by lane. Q4_K and Q6_K tiles go to [`super::k_avx2`].
//!
//! With AVX-VNNI ([`entry_vnni`]) the same kernels take their integer block dots from `vpdpbusd` instead: the
//! unsigned weight bytes (Q4 nibbles, Q5_0's 5-bit values, Q8_0's stored `u = w ^ 0x80`) times the signed
//! activation quants, summed into i32 lanes with no intermediate i16 (so no bound to keep), and `o * sum(a)`
//! subtracted for the offset formats (Q8_0 too, `o = 128`). The sums are the same integers, so the results are the
//! same bits as the AVX2 kernels' and the scalar twin's.
//!
//! Integer exactness: Q4 nibbles (`u <= 15`) times activations (`|a| <= 128`) give `vpmaddubsw` pairs of at most
//! 3840, and the 8 pair vectors of a block sum to at most 30720 < 2^15 in i16; Q5_0's values (`u <= 31`) give
//! pairs of at most 7936, so its sums are widened to i32 every 4 pair vectors (at most 31744). Q8_0 uses the signed quants
//! (`w = u ^ 0x80`) with the sign trick, `|w| * sign(a, w)`: pairs of at most 2 * 128 * 127 = 32512 (activation
//! quants are in -127..=127), widened to i32 before summing; that equals `sum(u * a) - 128 * sum(a)`.

use std::arch::x86_64::*;

use super::{ActMeta, PackedFormat, PackedKernel, PackedTile, GROUP, MAX_ACT, Q5_PLANE_AT};
use crate::x86::{Avx2, AvxVnni};

/// Activation rows per pass over a half group (register budget: one line's weight vectors, 4 integer sums and 4
/// accumulators).
const ROWS_PER_PASS: usize = 4;

/// The AVX2 packed kernel, handed out only for the proof that the CPU has AVX2, FMA and F16C.
pub(crate) fn entry(_: Avx2) -> PackedKernel {
    PackedKernel::simd(dot::<false>)
}

/// The AVX-VNNI packed kernel (the AVX2 one with `vpdpbusd` for the integer dots), handed out only for the proof
/// that the CPU has AVX-VNNI and AVX2, FMA and F16C.
pub(crate) fn entry_vnni(_: AvxVnni) -> PackedKernel {
    PackedKernel::simd(dot::<true>)
}

/// The entries [`entry`] (`V = false`) and [`entry_vnni`] (`V = true`) hand out.
fn dot<const V: bool>(t: &PackedTile, out: &mut [f32; GROUP * MAX_ACT]) {
    let (n, g) = (t.n_act, t.n_groups);
    // `PackedTile::new` guarantees it; the loads below rely on it.
    assert!(t.holds_shape(), "packed::avx2::dot: tile buffers shorter than its shape");
    if matches!(t.fmt, PackedFormat::Q4_K | PackedFormat::Q6_K) {
        // SAFETY: this entry is handed out only for the proof of the CPU features `k_avx2` needs.
        return unsafe { super::k_avx2::dot(t, out) };
    }
    if n == 1 {
        macro_rules! one {
            ($fmt:expr) => {
                match g {
                    1 => call_one::<$fmt, 1, V>(t, out),
                    2 => call_one::<$fmt, 2, V>(t, out),
                    3 => call_one::<$fmt, 3, V>(t, out),
                    _ => call_one::<$fmt, 4, V>(t, out),
                }
            };
        }
        return match t.fmt {
            PackedFormat::Q4_0 => one!(Q4_0),
            PackedFormat::Q4_1 => one!(Q4_1),
            PackedFormat::Q8_0 => one!(Q8_0),
            PackedFormat::Q5_0 => one!(Q5_0),
            PackedFormat::Q4_K | PackedFormat::Q6_K => unreachable!("K-quant tiles returned above"),
        };
    }
    for r0 in (0..n).step_by(ROWS_PER_PASS) {
        let rn = (n - r0).min(ROWS_PER_PASS);
        for half in 0..2 {
            macro_rules! go {
                ($fmt:expr) => {
                    match rn {
                        1 => call::<$fmt, 1, V>(t, r0, half, out),
                        2 => call::<$fmt, 2, V>(t, r0, half, out),
                        3 => call::<$fmt, 3, V>(t, r0, half, out),
                        _ => call::<$fmt, 4, V>(t, r0, half, out),
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

/// [`kernel`] for activation rows `r0..r0 + N` and half `half` of the group, with `vpdpbusd` if `V`.
fn call<const F: u8, const N: usize, const V: bool>(
    t: &PackedTile,
    r0: usize,
    half: usize,
    out: &mut [f32; GROUP * MAX_ACT],
) {
    // SAFETY: only reachable from the private entry `dot`, handed out by `entry` for the proof that the CPU has
    // AVX2, FMA and F16C, and with `V` only by `entry_vnni` for the proof that it has AVX-VNNI too; `dot` checked
    // the buffer lengths and the format `F` is the tile's; `r0 + N <= n_act`, `half < 2`.
    unsafe {
        if V {
            kernel_vnni::<F, N>(t, r0, half, out)
        } else {
            kernel_avx2::<F, N>(t, r0, half, out)
        }
    }
}

/// [`kernel_one`] for a tile of one activation row and `G` groups, with `vpdpbusd` if `V`.
fn call_one<const F: u8, const G: usize, const V: bool>(t: &PackedTile, out: &mut [f32; GROUP * MAX_ACT]) {
    // SAFETY: only reachable from the private entry `dot`, handed out by `entry` for the proof that the CPU has
    // AVX2, FMA and F16C, and with `V` only by `entry_vnni` for the proof that it has AVX-VNNI too; `dot` checked
    // the buffer lengths of each of the tile's `G` groups, `n_act == 1` and that `F` is the tile's format.
    unsafe {
        if V {
            kernel_one_vnni::<F, G>(t, out)
        } else {
            kernel_one_avx2::<F, G>(t, out)
        }
    }
}

/// Emits `$name`, the kernel `$inner` compiled with the features `$features` and its integer dots by `vpdpbusd` if
/// `$v` (the `#[target_feature]` functions the AVX2 and the AVX-VNNI entries reach their kernels through).
macro_rules! compiled_for {
    ($name:ident, $inner:ident, $features:literal, $v:literal, ($($arg:ident: $ty:ty),*), $n:ident) => {
        #[doc = concat!("[`", stringify!($inner), "`] compiled for `", $features, "`.")]
        ///
        /// # Safety
        #[doc = concat!("As [`", stringify!($inner), "`]'s, and the CPU supports `", $features, "`.")]
        #[target_feature(enable = $features)]
        unsafe fn $name<const F: u8, const $n: usize>($($arg: $ty),*) {
            // SAFETY: the caller's guarantees are the kernel's; this function has the features it needs.
            unsafe { $inner::<F, $n, $v>($($arg),*) }
        }
    };
}

/// The kernels' output tile.
type Out<'a> = &'a mut [f32; GROUP * MAX_ACT];
compiled_for!(
    kernel_avx2, kernel, "avx2,fma,f16c", false,
    (t: &PackedTile, r0: usize, half: usize, out: Out<'_>), N
);
compiled_for!(
    kernel_vnni, kernel, "avx2,fma,f16c,avxvnni", true,
    (t: &PackedTile, r0: usize, half: usize, out: Out<'_>), N
);
compiled_for!(kernel_one_avx2, kernel_one, "avx2,fma,f16c", false, (t: &PackedTile, out: Out<'_>), G);
compiled_for!(kernel_one_vnni, kernel_one, "avx2,fma,f16c,avxvnni", true, (t: &PackedTile, out: Out<'_>), G);

/// `acc + vpdpbusd(u, s)`: each i32 lane plus the sum of its 4 products of unsigned bytes of `u` with signed
/// bytes of `s`, exact.
///
/// # Safety
/// The CPU supports AVX-VNNI.
#[inline(always)]
unsafe fn dpbusd(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
    // SAFETY: the CPU has AVX-VNNI (caller); register-only operation.
    unsafe { _mm256_dpbusd_avx_epi32(acc, u, s) }
}

/// A Q8_0 line's weight operands for [`q8_dot`], from its 32 stored bytes `u = w ^ 0x80`: with `V` the stored
/// unsigned bytes as they are (`fma_block` subtracts `128 * sum(a)`); otherwise the magnitudes `|w|` and the signed
/// quants `w` of the sign trick (module doc).
///
/// # Safety
/// The CPU supports AVX2.
#[inline(always)]
unsafe fn q8_line<const V: bool>(stored: __m256i) -> (__m256i, __m256i) {
    // SAFETY: the CPU has AVX2 (caller); register-only operations.
    unsafe {
        if V {
            (stored, stored)
        } else {
            let w = _mm256_xor_si256(stored, _mm256_set1_epi8(-128));
            (_mm256_sign_epi8(w, w), w)
        }
    }
}

/// `si` plus the exact i32 dots of a Q8_0 line (its operands from [`q8_line`]) with the broadcast activation bytes
/// `x`: with `V` one `vpdpbusd`, otherwise `vpmaddubsw(|w|, sign(x, w))` widened by `vpmaddwd`.
///
/// # Safety
/// The CPU supports AVX2 and, if `V`, AVX-VNNI.
#[inline(always)]
unsafe fn q8_dot<const V: bool>(si: __m256i, (u, w): (__m256i, __m256i), x: __m256i) -> __m256i {
    // SAFETY: the CPU has AVX2 and, if `V`, AVX-VNNI (caller); register-only operations.
    unsafe {
        if V {
            dpbusd(si, u, x)
        } else {
            let p = _mm256_maddubs_epi16(u, _mm256_sign_epi8(x, w));
            _mm256_add_epi32(si, _mm256_madd_epi16(p, _mm256_set1_epi16(1)))
        }
    }
}

/// How many blocks ahead [`kernel_one`] prefetches the quants.
const PREFETCH_BLOCKS: usize = 16;

/// One activation row (decode) times `G` consecutive groups in one pass over their blocks, the groups' blocks
/// interleaved (the loop ends, and its exit is mispredicted, once per `G` groups rather than once per group), both
/// 32-byte halves of every 64-byte line at once (the general kernel makes a pass per half, so a stream of weights
/// is read as two interleaved strided ones) and the quants a few blocks ahead prefetched. Each lane gets the
/// general kernel's integer sums and f32 sequence, so the results are the same bits.
///
/// # Safety
/// The CPU supports AVX2, FMA, F16C and, if `V`, AVX-VNNI (this is only inlined into [`kernel_one_avx2`] and
/// [`kernel_one_vnni`], compiled with them); `t.w` holds `G` groups of `nb` quant and scale tiles each, `t.acts` one
/// row of `nb` activation blocks, `t.meta` `nb` entries.
#[inline(always)]
unsafe fn kernel_one<const F: u8, const G: usize, const V: bool>(
    t: &PackedTile,
    out: &mut [f32; GROUP * MAX_ACT],
) {
    let nb = t.nb;
    // The tile's format (`dot` matched it to `F`), so its sizes are compile-time constants here.
    let fmt = PackedFormat::from_code(F);
    debug_assert_eq!(fmt, t.fmt);
    let (qt, st) = (fmt.quant_tile(), fmt.scale_tile());
    let (ab, aoff) = (fmt.act_block(), fmt.act_offset());
    let gb = t.w.len() / G;
    // Cursors advanced block by block, as in `kernel`.
    // SAFETY: group `j`'s first quant tile and first scale tile lie inside `t.w`.
    let mut q: [*const u8; G] = std::array::from_fn(|j| unsafe { t.w.as_ptr().add(j * gb) });
    // SAFETY: as above.
    let mut s: [*const u8; G] = std::array::from_fn(|j| unsafe { q[j].add(nb * qt) });
    // SAFETY: the first block's activation quants lie inside `t.acts`.
    let mut a = unsafe { t.acts.as_ptr().add(aoff) };
    let mut mt = t.meta.as_ptr();
    // SAFETY: the CPU has AVX (caller); register-only.
    let mut acc = [[unsafe { _mm256_setzero_ps() }; 2]; G];
    for _ in 0..nb {
        // SAFETY: the meta cursor points at the current block's entry.
        let m = unsafe { *mt };
        for j in 0..G {
            // A hint only (prefetches never fault): the quants a few blocks ahead, into L2 (one thread streaming a Q4_0
            // matrix from DRAM: 36-39 GMAC/s, 31-34 with `T0`, into L1).
            for l in 0..qt / 64 {
                // SAFETY: the CPU has SSE (caller); a prefetch never faults, whatever the address.
                unsafe {
                    _mm_prefetch::<_MM_HINT_T1>(q[j].wrapping_add(PREFETCH_BLOCKS * qt + 64 * l).cast())
                };
            }
            // SAFETY: `q[j]`, `s[j]` point at group `j`'s current quant and scale tiles, `a` at the current block's
            // activation quants; the CPU has the features (caller).
            unsafe { add_block_one::<F, V>(q[j], s[j], a, m, &mut acc[j]) };
            // SAFETY: group `j`'s cursors move to its next block; after the last, the quant cursor points at the
            // group's scale tiles and the scale cursor at the group's end, both within `t.w`.
            unsafe {
                q[j] = q[j].add(qt);
                s[j] = s[j].add(st);
            }
        }
        // SAFETY: the meta cursor moves to its next block (one past its buffer's end after the last). The
        // activation cursor starts `aoff` bytes into its block, so after the last block it may point past the end
        // of `t.acts`: moved with `wrapping_add` and not read there.
        unsafe { mt = mt.add(1) };
        a = a.wrapping_add(ab);
    }
    for (j, acc) in acc.iter().enumerate() {
        for (h, v) in acc.iter().enumerate() {
            // SAFETY: lanes `16j + 8h..16j + 8h + 8` end at `16 G <= 16 MAX_GROUPS <= out.len()`.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(GROUP * j + 8 * h), *v) };
        }
    }
}

/// Adds one block of the one activation row to a group's 16 accumulators (two vectors of 8 lanes): the general
/// kernel's integer sums and f32 sequence for each lane.
///
/// # Safety
/// The CPU supports the features of [`kernel_one`]; `q` points to a whole quant tile, `s` to its group's scale tile
/// of the same block, `a` to the block's 32 activation quants.
#[inline(always)]
unsafe fn add_block_one<const F: u8, const V: bool>(
    q: *const u8,
    s: *const u8,
    a: *const u8,
    m: ActMeta,
    acc: &mut [__m256; 2],
) {
    // SAFETY: the CPU has the features (caller: this is only inlined into `kernel_one`, compiled with them); every
    // load below reads inside the tiles and activation block the pointers point to (caller); all are unaligned.
    unsafe {
        // The 8 scales (and, for Q4_1, minimums) of each half.
        let dw: [__m256; 2] = std::array::from_fn(|h| _mm256_cvtph_ps(_mm_loadu_si128(s.add(16 * h).cast())));
        let mw = if F == Q4_1 {
            std::array::from_fn(|h| _mm256_cvtph_ps(_mm_loadu_si128(s.add(2 * GROUP + 16 * h).cast())))
        } else {
            [_mm256_setzero_ps(); 2]
        };
        // `k + 4 <= 32`: inside the block's activation quants.
        let bcast = |k: usize| _mm256_set1_epi32(a.add(k).cast::<i32>().read_unaligned());
        // Line `k`, half `h`: 32 bytes of the quant tile.
        let line = |k: usize, h: usize| _mm256_loadu_si256(q.add(64 * k + 32 * h).cast());
        let si: [__m256i; 2] = if F == Q8_0 {
            let mut si = [_mm256_setzero_si256(); 2];
            for k in 0..8 {
                let x = bcast(4 * k);
                for (h, si) in si.iter_mut().enumerate() {
                    *si = q8_dot::<V>(*si, q8_line::<V>(line(k, h)), x);
                }
            }
            si
        } else {
            // Q5_0: the plane's two halves.
            let plane: [__m256i; 2] = std::array::from_fn(|h| {
                if F == Q5_0 {
                    _mm256_loadu_si256(q.add(Q5_PLANE_AT + 32 * h).cast())
                } else {
                    _mm256_setzero_si256()
                }
            });
            let mut s16 = [_mm256_setzero_si256(); 2];
            let mut si = [_mm256_setzero_si256(); 2];
            for k in 0..4 {
                let (xl, xh) = (bcast(4 * k), bcast(16 + 4 * k));
                for h in 0..2 {
                    let (lo, hi) = nibbles::<F>(line(k, h), plane[h], k);
                    add_line::<F, V>(k, (lo, xl), (hi, xh), &mut s16[h], &mut si[h]);
                }
            }
            block_sums::<F, V, 2>(s16, si)
        };
        for h in 0..2 {
            acc[h] = fma_block::<F, V>(si[h], (dw[h], mw[h]), m, acc[h]);
        }
    }
}

/// The low and high nibbles of a 32-byte line `v` of line index `k` (they pair with activation bytes `4k..` and
/// `16 + 4k..`); for Q5_0 with their fifth bits, bits `k` and `k + 4` of the plane `plane`'s bytes moved to bit 4
/// (16-bit shifts by at most 4 move no bit that is kept across a byte).
///
/// # Safety
/// The CPU supports AVX2.
#[inline(always)]
unsafe fn nibbles<const F: u8>(v: __m256i, plane: __m256i, k: usize) -> (__m256i, __m256i) {
    // SAFETY: the CPU has AVX2 (caller); register-only operations.
    unsafe {
        let mask = _mm256_set1_epi8(0x0f);
        let lo = _mm256_and_si256(v, mask);
        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), mask);
        if F != Q5_0 {
            return (lo, hi);
        }
        let bit4 = _mm256_set1_epi8(0x10);
        // Constant counts once the callers' loops over `k < 4` are unrolled.
        let up = _mm256_sll_epi16(plane, _mm_cvtsi32_si128(4 - k as i32));
        let down = _mm256_srl_epi16(plane, _mm_cvtsi32_si128(k as i32));
        (_mm256_or_si256(lo, _mm256_and_si256(up, bit4)), _mm256_or_si256(hi, _mm256_and_si256(down, bit4)))
    }
}

/// Adds line `k`'s two `vpmaddubsw` products (`lo` with activations `xl`, `hi` with `xh`) to the i16 sums `s16`;
/// Q5_0 widens them into the i32 sums `si` every second line (the bound in the module doc). With `V`, adds their
/// `vpdpbusd` dots to `si` instead (`s16` unused).
///
/// # Safety
/// The CPU supports AVX2 and, if `V`, AVX-VNNI.
#[inline(always)]
unsafe fn add_line<const F: u8, const V: bool>(
    k: usize,
    (lo, xl): (__m256i, __m256i),
    (hi, xh): (__m256i, __m256i),
    s16: &mut __m256i,
    si: &mut __m256i,
) {
    // SAFETY: the CPU has AVX2 and, if `V`, AVX-VNNI (caller); register-only operations.
    unsafe {
        if V {
            *si = dpbusd(dpbusd(*si, lo, xl), hi, xh);
            return;
        }
        *s16 = _mm256_add_epi16(*s16, _mm256_maddubs_epi16(lo, xl));
        *s16 = _mm256_add_epi16(*s16, _mm256_maddubs_epi16(hi, xh));
        if F == Q5_0 && k % 2 == 1 {
            *si = _mm256_add_epi32(*si, _mm256_madd_epi16(*s16, _mm256_set1_epi16(1)));
            *s16 = _mm256_setzero_si256();
        }
    }
}

/// A Q4 block's i32 sums from the i16 sums [`add_line`] left in `s16` (Q5_0, and every format with `V`: already
/// in `si`).
///
/// # Safety
/// The CPU supports AVX2.
#[inline(always)]
unsafe fn block_sums<const F: u8, const V: bool, const M: usize>(
    s16: [__m256i; M],
    si: [__m256i; M],
) -> [__m256i; M] {
    // SAFETY: the CPU has AVX2 (caller); register-only operations.
    unsafe {
        if F == Q5_0 || V {
            si
        } else {
            std::array::from_fn(|j| _mm256_madd_epi16(s16[j], _mm256_set1_epi16(1)))
        }
    }
}

/// The scalar twin's f32 step of one block for 8 lanes: `acc = fma(f32(sumi), d_w * d_a, acc)` and, for Q4_1,
/// `acc = fma(m_w, s_a, acc)`; `si` holds the lanes' integer sums of `u * a` (for Q4_0 and Q5_0, and with `V` for
/// Q8_0 too, the `-o * sum(a)` is added here; the AVX2 Q8_0 sums are already signed).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn fma_block<const F: u8, const V: bool>(
    si: __m256i,
    (dw, mw): (__m256, __m256),
    m: ActMeta,
    acc: __m256,
) -> __m256 {
    let o = PackedFormat::from_code(F).offset();
    let unsigned = F == Q4_0 || F == Q5_0 || (V && F == Q8_0);
    let si = if unsigned { _mm256_add_epi32(si, _mm256_set1_epi32(-o * m.sum)) } else { si };
    let acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(si), _mm256_mul_ps(dw, _mm256_set1_ps(m.d)), acc);
    if F == Q4_1 {
        _mm256_fmadd_ps(mw, _mm256_set1_ps(m.s), acc)
    } else {
        acc
    }
}

/// Rows `r0..r0 + N` of the activations times rows `8 * half..8 * half + 8` of the group.
///
/// # Safety
/// The CPU supports AVX2, FMA, F16C and, if `V`, AVX-VNNI (this is only inlined into [`kernel_avx2`] and
/// [`kernel_vnni`], compiled with them); `t.w` holds `nb` quant and scale tiles, `t.acts` at least `r0 + N` rows
/// of `nb` activation blocks (`t.arb` bytes apart), `t.meta` `(r0 + N) * nb` entries; `half < 2`.
#[inline(always)]
unsafe fn kernel<const F: u8, const N: usize, const V: bool>(
    t: &PackedTile,
    r0: usize,
    half: usize,
    out: &mut [f32; GROUP * MAX_ACT],
) {
    let nb = t.nb;
    // The tile's format (`dot` matched it to `F`), so its sizes are compile-time constants here.
    let fmt = PackedFormat::from_code(F);
    debug_assert_eq!(fmt, t.fmt);
    let (qt, st) = (fmt.quant_tile(), fmt.scale_tile());
    let (ab, aoff) = (fmt.act_block(), fmt.act_offset());
    // Cursors advanced block by block; each stays inside its buffer (the lengths `dot` checked), one block past
    // its end after the last block. Every load below reads the current block through them.
    // SAFETY: half `half` of the first quant and scale tiles lies inside `t.w`.
    let (mut q, mut s) = unsafe { (t.w.as_ptr().add(32 * half), t.w.as_ptr().add(nb * qt + 16 * half)) };
    let mut a: [*const u8; ROWS_PER_PASS] = [t.acts.as_ptr(); ROWS_PER_PASS];
    let mut mt: [*const ActMeta; ROWS_PER_PASS] = [t.meta.as_ptr(); ROWS_PER_PASS];
    for r in 0..N {
        // SAFETY: activation row `r0 + r` (after its first block header) and its meta lie inside `t.acts`, `t.meta`.
        unsafe {
            a[r] = t.acts.as_ptr().add((r0 + r) * t.arb + aoff);
            mt[r] = t.meta.as_ptr().add((r0 + r) * nb);
        }
    }
    // SAFETY: the CPU has AVX2, FMA, F16C and, if `V`, AVX-VNNI (caller) for every intrinsic in this block; every
    // load reads the current block through the cursors, which stay inside their buffers as stated above.
    let acc = unsafe {
        let mut acc = [_mm256_setzero_ps(); ROWS_PER_PASS];
        for _ in 0..nb {
            // The 8 scales of this half: inside the current scale tile; unaligned load.
            let dw = _mm256_cvtph_ps(_mm_loadu_si128(s.cast()));
            let mw = if F == Q4_1 {
                // The 8 minimums of this half: inside the current (Q4_1) scale tile; unaligned load.
                _mm256_cvtph_ps(_mm_loadu_si128(s.add(2 * GROUP).cast()))
            } else {
                _mm256_setzero_ps()
            };
            // `p` is a row's cursor and `k + 4 <= 32`: inside the current block's quants; unaligned read.
            let bcast = |p: *const u8, k: usize| _mm256_set1_epi32(p.add(k).cast::<i32>().read_unaligned());
            // 32 bytes of line `k` of the current quant tile; unaligned load.
            let line = |k: usize| _mm256_loadu_si256(q.add(64 * k).cast());
            // The block's integer sums, line by line and each line with every row in turn, so that only one line's
            // weight vectors and the rows' sums are live (16 ymm registers: a pass over all lines per row spilled).
            let si: [__m256i; N] = if F == Q8_0 {
                let mut si = [_mm256_setzero_si256(); N];
                for k in 0..8 {
                    let wl = q8_line::<V>(line(k));
                    for (r, si) in si.iter_mut().enumerate() {
                        *si = q8_dot::<V>(*si, wl, bcast(a[r], 4 * k));
                    }
                }
                si
            } else {
                let plane = if F == Q5_0 {
                    // This half's 32 bytes of the current (Q5_0) quant tile's plane; unaligned load.
                    _mm256_loadu_si256(q.add(Q5_PLANE_AT).cast())
                } else {
                    _mm256_setzero_si256()
                };
                let mut s16 = [_mm256_setzero_si256(); N];
                let mut si = [_mm256_setzero_si256(); N];
                for k in 0..4 {
                    let (lo, hi) = nibbles::<F>(line(k), plane, k);
                    for r in 0..N {
                        let (xl, xh) = (bcast(a[r], 4 * k), bcast(a[r], 16 + 4 * k));
                        add_line::<F, V>(k, (lo, xl), (hi, xh), &mut s16[r], &mut si[r]);
                    }
                }
                block_sums::<F, V, N>(s16, si)
            };
            for (r, &si) in si.iter().enumerate() {
                // Row `r`'s meta cursor points at the current block's entry.
                acc[r] = fma_block::<F, V>(si, (dw, mw), *mt[r], acc[r]);
            }
            // The weight and meta cursors move to their next block (one past their buffer's end after the last).
            q = q.add(qt);
            s = s.add(st);
            for r in 0..N {
                a[r] = a[r].wrapping_add(ab); // may end `aoff` bytes past `t.acts`: not read there
                mt[r] = mt[r].add(1);
            }
        }
        acc
    };
    for (r, v) in acc.iter().take(N).enumerate() {
        // SAFETY: `r0 + r < MAX_ACT` and `half < 2`, so the 8 lanes end at most at `MAX_ACT * GROUP`.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr().add((r0 + r) * GROUP + 8 * half), *v) };
    }
}
