//! The packed kernels with AVX-512 VNNI: per block, 16 rows' int32 dots by `vpdpbusd` of the unsigned weight bytes
//! with a broadcast 4-byte activation group, then one f32 FMA per activation row (the scalar twin's sequence,
//! [`super::dot_scalar`], lane by lane). Q4_K and Q6_K tiles go to [`super::k_avx512`].

use std::arch::x86_64::*;

use super::{ActMeta, PackedFormat, PackedKernel, PackedTile, GROUP, MAX_ACT, Q5_PLANE_AT};
use crate::x86::Avx512Vnni;

/// The AVX-512 VNNI packed kernel, handed out only for the proof that the CPU has AVX-512 F/BW/VL/VNNI (and
/// AVX2, FMA, F16C).
pub(crate) fn entry(_: Avx512Vnni) -> PackedKernel {
    PackedKernel::simd(dot)
}

/// The entry [`entry`] hands out.
fn dot(t: &PackedTile, out: &mut [f32; GROUP * MAX_ACT]) {
    let (n, g) = (t.n_act, t.n_groups);
    // `PackedTile::new` guarantees it; the loads below rely on it.
    assert!(t.holds_shape(), "packed::avx512::dot: tile buffers shorter than its shape");
    if matches!(t.fmt, PackedFormat::Q4_K | PackedFormat::Q6_K) {
        // SAFETY: this entry is handed out only for the proof of the CPU features `k_avx512` needs.
        return unsafe { super::k_avx512::dot(t, out) };
    }
    macro_rules! go {
        ($fmt:expr) => {
            match (g, n) {
                (2, _) => call::<$fmt, 1, 2>(t, out),
                (3, _) => call::<$fmt, 1, 3>(t, out),
                (4.., _) => call::<$fmt, 1, 4>(t, out),
                (_, 1) => call::<$fmt, 1, 1>(t, out),
                (_, 2) => call::<$fmt, 2, 1>(t, out),
                (_, 3) => call::<$fmt, 3, 1>(t, out),
                (_, 4) => call::<$fmt, 4, 1>(t, out),
                (_, 5) => call::<$fmt, 5, 1>(t, out),
                (_, 6) => call::<$fmt, 6, 1>(t, out),
                (_, 7) => call::<$fmt, 7, 1>(t, out),
                _ => call::<$fmt, 8, 1>(t, out),
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

/// How many blocks ahead the quants are prefetched.
const PREFETCH_BLOCKS: usize = 16;

/// The formats' codes, the kernels' const parameter `F`.
const Q4_0: u8 = PackedFormat::Q4_0 as u8;
const Q4_1: u8 = PackedFormat::Q4_1 as u8;
const Q8_0: u8 = PackedFormat::Q8_0 as u8;
const Q5_0: u8 = PackedFormat::Q5_0 as u8;

fn call<const F: u8, const N: usize, const G: usize>(t: &PackedTile, out: &mut [f32; GROUP * MAX_ACT]) {
    // SAFETY: only reachable from the private entry `dot`, handed out by `entry` for the proof that the CPU has
    // AVX-512 F/BW/VL/VNNI and AVX2/FMA/F16C; `dot` checked the buffer lengths and `G == 1 || N == 1`, and the
    // format `F` is the tile's.
    unsafe { kernel::<F, N, G>(t, out) }
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

/// The 8 weight vectors of one block of a group: for Q4 the low nibbles of its 4 lines then the high nibbles (Q5_0:
/// with bit `k` of the plane's bytes as vector `k`'s fifth bits), for Q8_0 its 8 lines; vector `k < 4` pairs with activation bytes `4k..4k + 4` of each lane's 4-byte groups, vector
/// `4 + k` with `16 + 4k..`.
///
/// # Safety
/// The CPU supports the enabled features; `q` points to a whole quant tile.
#[inline(always)]
unsafe fn load_block<const F: u8>(q: *const u8) -> [__m512i; 8] {
    // SAFETY: the CPU has the AVX-512 features (caller: this is only inlined into `kernel`, compiled with them) and
    // the tile's lines lie inside the buffer `q` points into (caller); the loads are unaligned.
    unsafe {
        if F == Q8_0 {
            std::array::from_fn(|k| _mm512_loadu_si512(q.add(64 * k).cast()))
        } else {
            let mask = _mm512_set1_epi8(0x0f);
            let v: [__m512i; 4] = std::array::from_fn(|k| _mm512_loadu_si512(q.add(64 * k).cast()));
            let nib: [__m512i; 8] = std::array::from_fn(|k| {
                if k < 4 {
                    _mm512_and_si512(v[k], mask)
                } else {
                    _mm512_and_si512(_mm512_srli_epi16::<4>(v[k - 4]), mask)
                }
            });
            if F != Q5_0 {
                return nib;
            }
            // Plane bit `k` moved to bit 4 (16-bit shifts by at most 4 move no bit that is kept across a byte).
            let p = _mm512_loadu_si512(q.add(Q5_PLANE_AT).cast());
            let (s4, s3, s2, s1) = (
                _mm512_slli_epi16::<4>(p),
                _mm512_slli_epi16::<3>(p),
                _mm512_slli_epi16::<2>(p),
                _mm512_slli_epi16::<1>(p),
            );
            let (r1, r2, r3) =
                (_mm512_srli_epi16::<1>(p), _mm512_srli_epi16::<2>(p), _mm512_srli_epi16::<3>(p));
            let fifth = [s4, s3, s2, s1, p, r1, r2, r3];
            let bit4 = _mm512_set1_epi8(0x10);
            // nib | (fifth & 0x10): 0xF8 is `A | (B & C)`.
            std::array::from_fn(|k| _mm512_ternarylogic_epi32::<0xF8>(nib[k], fifth[k], bit4))
        }
    }
}

/// Adds one block of one activation row to a group's 16 accumulators, the scalar twin's f32 sequence: two chains
/// of 4 `vpdpbusd` (exact integer sums, added at the end), then `acc = fma(f32(sumi), d_w * d_a, acc)` and, for
/// Q4_1, `acc = fma(m_w, s_a, acc)`.
///
/// # Safety
/// The CPU supports the enabled features; `a` points to the block's 32 activation quants.
#[inline(always)]
unsafe fn add_block<const F: u8>(
    w: &[__m512i; 8],
    a: *const u8,
    m: ActMeta,
    o: i32,
    (dw, mw): (__m512, __m512),
    acc: __m512,
) -> __m512 {
    // SAFETY: the CPU has the AVX-512 features (caller: this is only inlined into `kernel`, compiled with them);
    // the 4-byte reads lie inside the block's 32 activation bytes `a` points to (caller).
    unsafe {
        let bcast = |k: usize| _mm512_set1_epi32(a.add(k).cast::<i32>().read_unaligned());
        let mut s0 = if F == Q4_1 { _mm512_setzero_si512() } else { _mm512_set1_epi32(-o * m.sum) };
        let mut s1 = _mm512_setzero_si512();
        for k in 0..4 {
            s0 = _mm512_dpbusd_epi32(s0, w[k], bcast(4 * k));
            s1 = _mm512_dpbusd_epi32(s1, w[4 + k], bcast(16 + 4 * k));
        }
        let si = _mm512_add_epi32(s0, s1);
        let d = _mm512_mul_ps(dw, _mm512_set1_ps(m.d));
        let acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(si), d, acc);
        if F == Q4_1 {
            _mm512_fmadd_ps(mw, _mm512_set1_ps(m.s), acc)
        } else {
            acc
        }
    }
}

/// `N` activation rows times one group (`G == 1`), or one activation row times `G` consecutive groups whose blocks
/// are interleaved in one loop (`N == 1`).
///
/// # Safety
/// The CPU supports the enabled features; `t.w` holds `G` groups of `nb` quant and scale tiles each, `t.acts` `N`
/// rows of at least `nb` activation blocks each (`t.arb` bytes apart), `t.meta` `N * nb` entries; `G == 1 || N == 1`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn kernel<const F: u8, const N: usize, const G: usize>(
    t: &PackedTile,
    out: &mut [f32; GROUP * MAX_ACT],
) {
    let nb = t.nb;
    // The tile's format (`dot` matched it to `F`), so its sizes are compile-time constants here.
    let fmt = PackedFormat::from_code(F);
    debug_assert_eq!(fmt, t.fmt);
    let (qt, st, o) = (fmt.quant_tile(), fmt.scale_tile(), fmt.offset());
    let (ab, aoff) = (fmt.act_block(), fmt.act_offset());
    let gb = t.w.len() / G;
    // Cursors advanced block by block (no index arithmetic in the loop); each stays inside its buffer (the lengths
    // `dot` checked), one block past its end after the last block. Every load below reads the current block
    // through them.
    // SAFETY: group `j`'s first quant tile and first scale tile lie inside `t.w`.
    let mut q: [*const u8; G] = std::array::from_fn(|j| unsafe { t.w.as_ptr().add(j * gb) });
    // SAFETY: as above.
    let mut s: [*const u8; G] = std::array::from_fn(|j| unsafe { q[j].add(nb * qt) });
    let mut a: [*const u8; MAX_ACT] = [t.acts.as_ptr(); MAX_ACT];
    let mut mt: [*const ActMeta; MAX_ACT] = [t.meta.as_ptr(); MAX_ACT];
    for r in 0..N {
        // SAFETY: activation row `r` (after its first block header) and its meta lie inside `t.acts`, `t.meta`.
        unsafe {
            a[r] = t.acts.as_ptr().add(r * t.arb + aoff);
            mt[r] = t.meta.as_ptr().add(r * nb);
        }
    }
    // Row-major accumulators: `acc[r]` for activation row r (G == 1), `acc[j]` for group j (N == 1).
    let mut acc = [_mm512_setzero_ps(); MAX_ACT];
    for _ in 0..nb {
        for j in 0..G {
            // A hint only (prefetches never fault): the quants a few blocks ahead, for the single-row decode case
            // where the hardware prefetcher alone leaves bandwidth unused; into L2 (`T1`), which streams a Q4_0
            // matrix from DRAM on one thread at 38-44 GMAC/s where `T0` (into L1) gave 32-34 (packed_bench).
            for l in 0..if F == Q5_0 { 5 } else { 4 } {
                _mm_prefetch::<_MM_HINT_T1>(q[j].wrapping_add(PREFETCH_BLOCKS * qt + 64 * l).cast());
            }
            // SAFETY: the 16 scales lie inside group `j`'s current scale tile; unaligned load.
            let dw = _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(s[j].cast()) });
            let mw = if F == Q4_1 {
                // SAFETY: the 16 minimums lie inside group `j`'s current (Q4_1) scale tile; unaligned load.
                _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(s[j].add(2 * GROUP).cast()) })
            } else {
                _mm512_setzero_ps()
            };
            // SAFETY: `q[j]` points at group `j`'s current quant tile; this function has the features.
            let w = unsafe { load_block::<F>(q[j]) };
            if G > 1 {
                // SAFETY: row 0's cursors point at the current block's quants and meta; this function has the
                // features.
                acc[j] = unsafe { add_block::<F>(&w, a[0], *mt[0], o, (dw, mw), acc[j]) };
            } else {
                macro_rules! row {
                    ($r:expr) => {
                        if $r < N {
                            // SAFETY: row `$r`'s cursors point at the current block's quants and meta; this
                            // function has the features.
                            acc[$r] = unsafe { add_block::<F>(&w, a[$r], *mt[$r], o, (dw, mw), acc[$r]) };
                        }
                    };
                }
                each_row!(row);
            }
            // SAFETY: group `j`'s cursors move to its next block (one past the end after the last).
            unsafe {
                q[j] = q[j].add(qt);
                s[j] = s[j].add(st);
            }
        }
        for r in 0..N {
            // SAFETY: row `r`'s cursors move to its next block (one past the end after the last).
            unsafe {
                a[r] = a[r].wrapping_add(ab); // may end `aoff` bytes past `t.acts`: not read there
                mt[r] = mt[r].add(1);
            }
        }
    }
    for (r, a) in acc.iter().take(N.max(G)).enumerate() {
        // SAFETY: `r < max(N, G) <= MAX_ACT`, so `r * GROUP + 16 <= out.len()`.
        unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(r * GROUP), *a) };
    }
}
