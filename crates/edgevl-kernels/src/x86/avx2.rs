//! AVX2 + FMA + F16C building blocks shared by the per-format kernels (`formats/<format>/avx2.rs`).
//!
//! Every function here is `#[target_feature(enable = "avx2,fma,f16c")]` and `#[inline]`, so it must only be
//! called from code compiled with (at least) those features, which only runs after detection.

use std::arch::x86_64::*;

use crate::dispatch::DotFn;
use crate::formats::Block;
use crate::x86::Avx2;

/// Horizontal sum of 8 f32 lanes (ggml's `hsum_float_8` order).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn hsum_ps(x: __m256) -> f32 {
    let mut r = _mm_add_ps(_mm256_extractf128_ps::<1>(x), _mm256_castps256_ps128(x));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    _mm_cvtss_f32(r)
}

/// One weight row `w` with `N` activation rows, block by block: `block(wb, b, acc)` adds block `b` (weight block
/// `wb`) of every activation row into `acc`; even and odd blocks go to separate 8-lane accumulators (FMA latency),
/// which are added and summed once at the end (ggml's AVX2 order).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn even_odd_row<W, const N: usize>(
    w: &[W],
    block: impl Fn(&W, usize, &mut [__m256; N]),
) -> [f32; N] {
    let (mut even, mut odd) = ([_mm256_setzero_ps(); N], [_mm256_setzero_ps(); N]);
    let mut b = 0;
    while b + 1 < w.len() {
        block(&w[b], b, &mut even);
        block(&w[b + 1], b + 1, &mut odd);
        b += 2;
    }
    if b < w.len() {
        block(&w[b], b, &mut even);
    }
    std::array::from_fn(|r| hsum_ps(_mm256_add_ps(even[r], odd[r])))
}

/// Sum of 8 i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn hsum_i32(x: __m256i) -> i32 {
    let mut r = _mm_add_epi32(_mm256_extracti128_si256::<1>(x), _mm256_castsi256_si128(x));
    r = _mm_add_epi32(r, _mm_unpackhi_epi64(r, r));
    r = _mm_add_epi32(r, _mm_shuffle_epi32::<0b10_11_00_01>(r));
    _mm_cvtsi128_si32(r)
}

/// Pairwise-summed products of signed bytes: 8 i32 lanes, lane `k` = sum of `x[i] * y[i]` for `i` in `4k..4k+4`.
/// Exact when no `x` is -128 paired with large `y` (maddubs saturates above 32767 per pair).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_i8(x: __m256i, y: __m256i) -> __m256i {
    let ax = _mm256_sign_epi8(x, x);
    let sy = _mm256_sign_epi8(y, x);
    dot_u8_i8(ax, sy)
}

/// Products of unsigned bytes `x` with signed bytes `y`, summed in groups of 4 into 8 i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_u8_i8(x: __m256i, y: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), _mm256_set1_epi16(1))
}

/// A little-endian f16 scale as f32 with one F16C conversion (the same value as `crate::formats::f16_to_f32`,
/// without a table lookup).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn f16_scale(h: [u8; 2]) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(u16::from_le_bytes(h)))))
}

/// 32 signed bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn load32_i8(p: &[i8; 32]) -> __m256i {
    // SAFETY: `p` is 32 readable bytes; the load is unaligned.
    unsafe { _mm256_loadu_si256(p.as_ptr().cast()) }
}

/// 16 bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn load16(p: &[u8; 16]) -> __m128i {
    // SAFETY: `p` is 16 readable bytes; the load is unaligned.
    unsafe { _mm_loadu_si128(p.as_ptr().cast()) }
}

/// 16 bytes split into their 32 nibbles: low nibbles in the low lane, high nibbles in the high lane (values 0..16).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn nibbles(q: __m128i) -> __m256i {
    let m = _mm_set1_epi8(0x0f);
    _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16::<4>(q), m), _mm_and_si128(q, m))
}

/// Up to 4 activation rows of one group, as block slices of `n_blocks` blocks (`n` of them valid).
pub(crate) struct ActRows<'a, A: Block> {
    /// The rows; entries past `n` repeat row 0 and are not used.
    pub rows: [&'a [A]; 4],
    /// Number of rows.
    pub n: usize,
}

impl<'a, A: Block> ActRows<'a, A> {
    /// Splits `acts` (rows every `row_bytes` bytes) into `n` rows of `n_blocks` blocks.
    ///
    /// # Panics
    /// If `acts` is shorter than `n` rows of `n_blocks` blocks.
    pub fn new(acts: &'a [u8], row_bytes: usize, n: usize, n_blocks: usize) -> Self {
        let n = n.clamp(1, 4);
        let row = |r: usize| {
            let start = (r * row_bytes).min(acts.len());
            &crate::formats::as_blocks::<A>(&acts[start..])[..n_blocks]
        };
        let first = row(0);
        let mut rows = [first; 4];
        for (r, slot) in rows.iter_mut().enumerate().take(n).skip(1) {
            *slot = row(r);
        }
        ActRows { rows, n }
    }

    /// The first `N` rows.
    #[inline(always)]
    pub fn take<const N: usize>(&self) -> [&'a [A]; N] {
        std::array::from_fn(|r| self.rows[r])
    }
}

/// How far ahead of the row being computed weights are prefetched, in bytes (at least 2 rows): enough to cover
/// DRAM latency at the kernels' consumption rate.
pub(crate) const PREFETCH_BYTES: usize = 4096;

/// Rows to prefetch ahead for rows of `row_bytes`.
#[inline]
pub(crate) fn prefetch_rows(row_bytes: usize) -> usize {
    PREFETCH_BYTES.div_ceil(row_bytes.max(1)).max(2)
}

/// Prefetches the cache lines of `s[start..start + len]` (the part inside `s`) into L1.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn prefetch_row(s: &[u8], start: usize, len: usize) {
    let end = start.saturating_add(len).min(s.len());
    let mut off = start;
    while off < end {
        // SAFETY: `off < s.len()`, so the address is inside `s`; a prefetch never faults anyway.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(s.as_ptr().add(off).cast()) };
        off += 64;
    }
}

/// Defines the table entry `dot` ([`crate::dispatch::DotFn`]) of a block format for one instruction set
/// (`$features`, a `target_feature` list: `"avx2,fma,f16c"` or the AVX-512 VNNI list of [`crate::x86::Avx512Vnni`]):
/// splits the activation rows and calls `$kernel::<N>(weight_blocks_of_one_row, &[act_rows; N]) -> [f32; N]` for
/// every weight row, with `N` the number of activation rows, inside one `#[target_feature]` function so the row
/// kernel is inlined. The weight rows a few rows ahead are prefetched. The entry is private to the module; `dot`
/// hands it out only for the proof token of `$features` ([`crate::x86::Avx2`] or [`crate::x86::Avx512Vnni`]).
macro_rules! simd_dot_entry {
    // The proof token of a feature list.
    (@token "avx2,fma,f16c") => { $crate::x86::Avx2 };
    (@token "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni") => { $crate::x86::Avx512Vnni };
    // The table entry both forms share: splits the activation rows and calls the form's `rows::<N>`.
    (@entry $features:tt, $W:ty, $A:ty) => {
        /// The table entry ([`crate::dispatch::DotFn`]) of this module's kernel, handed out only for the proof that
        /// the CPU has the features it is compiled with.
        pub(crate) fn dot(_: $crate::x86::avx2::simd_dot_entry!(@token $features)) -> $crate::dispatch::DotFn {
            entry
        }

        /// The entry [`dot`] hands out.
        fn entry(w: &[u8], w_row_bytes: usize, acts: &[u8], act_row_bytes: usize, n_act: usize, out: &mut [f32]) {
            let nb = w_row_bytes / std::mem::size_of::<$W>();
            let a = $crate::x86::avx2::ActRows::<$A>::new(acts, act_row_bytes, n_act, nb);
            // SAFETY: `entry` is private and only handed out by `dot`, whose argument proves that the CPU has
            // `$features`; `rows` reaches its data through bounds-checked slices only.
            unsafe {
                match a.n {
                    1 => rows::<1>(w, w_row_bytes, nb, &a.take::<1>(), out),
                    2 => rows::<2>(w, w_row_bytes, nb, &a.take::<2>(), out),
                    3 => rows::<3>(w, w_row_bytes, nb, &a.take::<3>(), out),
                    _ => rows::<4>(w, w_row_bytes, nb, &a.take::<4>(), out),
                }
            }
        }
    };
    ($features:tt, $W:ty, $A:ty, $kernel:ident) => {
        $crate::x86::avx2::simd_dot_entry!(@entry $features, $W, $A);

        #[target_feature(enable = $features)]
        fn rows<const N: usize>(w: &[u8], w_row_bytes: usize, nb: usize, acts: &[&[$A]; N], out: &mut [f32]) {
            let ahead = $crate::x86::avx2::prefetch_rows(w_row_bytes);
            for (j, (wr, o)) in w.chunks_exact(w_row_bytes).zip(out.chunks_exact_mut(N)).enumerate() {
                $crate::x86::avx2::prefetch_row(w, (j + ahead) * w_row_bytes, w_row_bytes);
                let wb = &$crate::formats::as_blocks::<$W>(wr)[..nb];
                o.copy_from_slice(&$kernel::<N>(wb, acts));
            }
        }
    };
    // With a kernel of two weight rows (`$kernel2(row0, row1, acts) -> ([f32; N], [f32; N])`, each output
    // computed exactly as `$kernel` computes it) used for pairs of rows when there are several activation rows.
    ($features:tt, $W:ty, $A:ty, $kernel:ident, $kernel2:ident) => {
        $crate::x86::avx2::simd_dot_entry!(@entry $features, $W, $A);

        #[target_feature(enable = $features)]
        fn rows<const N: usize>(w: &[u8], w_row_bytes: usize, nb: usize, acts: &[&[$A]; N], out: &mut [f32]) {
            let ahead = $crate::x86::avx2::prefetch_rows(w_row_bytes);
            let n_rows = out.len() / N;
            let mut j = 0;
            // Pairs share the activation loads; one activation row gains nothing from them.
            while N > 1 && j + 1 < n_rows {
                $crate::x86::avx2::prefetch_row(w, (j + ahead) * w_row_bytes, 2 * w_row_bytes);
                let w0 = &$crate::formats::as_blocks::<$W>(&w[j * w_row_bytes..(j + 1) * w_row_bytes])[..nb];
                let w1 =
                    &$crate::formats::as_blocks::<$W>(&w[(j + 1) * w_row_bytes..(j + 2) * w_row_bytes])[..nb];
                let (o0, o1) = $kernel2::<N>(w0, w1, acts);
                out[j * N..(j + 1) * N].copy_from_slice(&o0);
                out[(j + 1) * N..(j + 2) * N].copy_from_slice(&o1);
                j += 2;
            }
            while j < n_rows {
                $crate::x86::avx2::prefetch_row(w, (j + ahead) * w_row_bytes, w_row_bytes);
                let wb = &$crate::formats::as_blocks::<$W>(&w[j * w_row_bytes..(j + 1) * w_row_bytes])[..nb];
                out[j * N..(j + 1) * N].copy_from_slice(&$kernel::<N>(wb, acts));
                j += 1;
            }
        }
    };
}
pub(crate) use simd_dot_entry;

/// 32 bytes of `s` starting at `off`.
///
/// # Panics
/// If `off + 32 > s.len()`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn loadu256<T: Copy>(s: &[T], off: usize) -> __m256i {
    assert!(std::mem::size_of::<T>() == 1 && off + 32 <= s.len(), "loadu256 out of bounds");
    // SAFETY: bounds checked above for a byte-sized element type; unaligned load.
    unsafe { _mm256_loadu_si256(s.as_ptr().add(off).cast()) }
}

/// 16 bytes of `s` starting at `off`.
///
/// # Panics
/// If `off + 16 > s.len()`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn loadu128(s: &[u8], off: usize) -> __m128i {
    assert!(off + 16 <= s.len(), "loadu128 out of bounds");
    // SAFETY: bounds checked above; unaligned load.
    unsafe { _mm_loadu_si128(s.as_ptr().add(off).cast()) }
}

pub(crate) use crate::formats::{FLOAT_BF16, FLOAT_F16, FLOAT_F32};

/// 8 elements `e..e+8` of a row of encoding `K` (raw little-endian bytes) as f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load8<const K: u8>(s: &[u8], e: usize) -> __m256 {
    match K {
        FLOAT_F32 => {
            assert!(4 * e + 32 <= s.len(), "load8 out of bounds");
            // SAFETY: bounds checked above; unaligned load of 8 f32.
            unsafe { _mm256_loadu_ps(s.as_ptr().add(4 * e).cast()) }
        }
        FLOAT_F16 => _mm256_cvtph_ps(loadu128(s, 2 * e)),
        _ => _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(loadu128(s, 2 * e)))),
    }
}

/// The table entry ([`crate::dispatch::DotFn`]) of float weights of encoding `K` ([`FLOAT_F32`], [`FLOAT_F16`],
/// [`FLOAT_BF16`]), handed out only for the proof that the CPU has AVX2, FMA and F16C.
pub(crate) fn float_dot<const K: u8>(_: Avx2) -> DotFn {
    float_entry::<K>
}

/// Float dot products of consecutive weight rows with up to 4 activation rows, all of encoding `K`
/// ([`crate::dispatch::DotFn`] layout): 4 x 8 f32 lanes of FMA accumulators, then a scalar tail.
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
    let rows: [&[u8]; 4] =
        std::array::from_fn(|r| acts.get(r * act_row_bytes..(r + 1) * act_row_bytes).unwrap_or(&[]));
    for (wr, o) in w.chunks_exact(w_row_bytes).zip(out.chunks_exact_mut(n_act.clamp(1, 4))) {
        // SAFETY: `float_entry` is private and only handed out by `float_dot`, whose argument proves that the CPU
        // has AVX2, FMA and F16C; `dot_floats_n` reads through bounds-checked loads only.
        unsafe {
            match o.len() {
                1 => dot_floats_n::<K, 1>(wr, n, &rows, o),
                2 => dot_floats_n::<K, 2>(wr, n, &rows, o),
                3 => dot_floats_n::<K, 3>(wr, n, &rows, o),
                _ => dot_floats_n::<K, 4>(wr, n, &rows, o),
            }
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dot_floats_n<const K: u8, const N: usize>(w: &[u8], n: usize, rows: &[&[u8]; 4], out: &mut [f32]) {
    let mut acc = [[_mm256_setzero_ps(); 4]; N];
    let main = n - n % 32;
    for e in (0..main).step_by(32) {
        let wv: [__m256; 4] = std::array::from_fn(|i| load8::<K>(w, e + 8 * i));
        for r in 0..N {
            for i in 0..4 {
                acc[r][i] = _mm256_fmadd_ps(wv[i], load8::<K>(rows[r], e + 8 * i), acc[r][i]);
            }
        }
    }
    for r in 0..N {
        let s = _mm256_add_ps(_mm256_add_ps(acc[r][0], acc[r][1]), _mm256_add_ps(acc[r][2], acc[r][3]));
        let tail: f32 = (main..n)
            .map(|e| crate::formats::float_elem::<K>(w, e) * crate::formats::float_elem::<K>(rows[r], e))
            .sum();
        out[r] = hsum_ps(s) + tail;
    }
}

/// All 65536 f16 values as f32 (ggml keeps the same table), for scale conversion by lookup. The per-row dots use
/// it for the activation blocks' scales, which are looked up again for every weight row and so stay in L1; one
/// F16C conversion each ([`f16_scale`], used by the kernels that convert a scale once) measured slower there
/// (Q4_1 x Q8_1, 64 rows, AVX-512: 31-32 against 21-22 GMAC/s of on-CPU time, 2026-12-04).
pub(crate) fn f16_table() -> &'static [f32; 65536] {
    static T: std::sync::OnceLock<Box<[f32; 65536]>> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        let mut t = Box::new([0f32; 65536]);
        for (i, v) in t.iter_mut().enumerate() {
            *v = half::f16::from_bits(i as u16).to_f32();
        }
        t
    })
}

/// The 8 x 8 transpose of `r` (vector `i` of the result holds lane `i` of each `r[l]`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn transpose8(r: &[__m256; 8]) -> [__m256; 8] {
    let t: [__m256; 8] = std::array::from_fn(|n| {
        let (a, b) = (r[n & !1], r[n | 1]);
        if n % 2 == 0 {
            _mm256_unpacklo_ps(a, b)
        } else {
            _mm256_unpackhi_ps(a, b)
        }
    });
    // s[4g + c]: within each 128-bit lane, column c (of 4) of rows 4g..4g + 4.
    let s: [__m256; 8] = std::array::from_fn(|n| {
        let (g, c) = (n / 4, n % 4);
        let (a, b) = (t[4 * g + c / 2], t[4 * g + 2 + c / 2]);
        if c % 2 == 0 {
            _mm256_shuffle_ps::<0x44>(a, b)
        } else {
            _mm256_shuffle_ps::<0xEE>(a, b)
        }
    });
    std::array::from_fn(|i| {
        if i < 4 {
            _mm256_permute2f128_ps::<0x20>(s[i], s[4 + i])
        } else {
            _mm256_permute2f128_ps::<0x31>(s[i - 4], s[i])
        }
    })
}
