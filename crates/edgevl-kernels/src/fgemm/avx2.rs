//! The float GEMM kernel with AVX2: each output's 16 partial sums (those of the scalar twin,
//! [`super::dot_scalar`]) in two 8-lane accumulators. With several activation rows the tile is swept in K blocks of
//! [`KB`] elements, each block visited by sub-tiles of 2 weight rows x 3 activation rows (12 accumulators, the
//! register budget), so a block's rows can stay in L1 while the sub-tiles revisit them; one activation row
//! (decode) takes the weight rows one after the other over the whole row. The last partial chunk goes through
//! zero-padded copies.

use std::arch::x86_64::*;

use super::{prefetch_next_rows, reduce16, FloatKernel, FloatTile, ACTS, LANES, ROWS};
use crate::dtype::DType;
use crate::x86::Avx2;

/// The float GEMM kernel, handed out only for the proof that the CPU has AVX2, FMA and F16C.
pub(crate) fn entry(_: Avx2) -> FloatKernel {
    FloatKernel::simd(dot)
}

/// Elements of K per block: the tile's 6 activation rows (24 KB of f32) and 4 weight rows (8 KB of F16) of a block
/// fit the 32 KB L1 data cache of Zen 3/4 while the sub-tiles revisit them. (Blocks of 256 to 8192 measured alike
/// on so400m's `ffn_down`, 60-66% of the FMA peak on one Zen 4 thread against 56-58% for the earlier 2 x 2
/// sub-tiles over whole rows: the gain is the larger sub-tile and the loop without index arithmetic.)
const KB: usize = 1024;

/// Weight rows of a sub-tile.
const SUB_ROWS: usize = 2;
/// Activation rows of a sub-tile.
const SUB_ACTS: usize = 3;

/// The partial sums of every output of a tile, `acc[i * ROWS + r]` for activation row `i`, weight row `r`.
type Partials = [[f32; LANES]; ROWS * ACTS];

/// The entry [`entry`] hands out.
fn dot(t: &FloatTile, out: &mut [f32; ROWS * ACTS]) {
    let (nr, na, n) = (t.n_rows, t.n_act, t.cols);
    // The loads below rely on it.
    assert!(t.holds_shape(), "fgemm::avx2::dot: tile buffers shorter than its shape");
    let mut acc: Partials = [[0.0; LANES]; ROWS * ACTS];
    macro_rules! go {
        ($h:expr, $r0:expr, $i0:expr, $k0:expr, $k1:expr) => {
            match ((nr - $r0).min(SUB_ROWS), (na - $i0).min(SUB_ACTS)) {
                (1, 1) => call::<$h, 1, 1>(t, ($r0, $i0), ($k0, $k1), &mut acc),
                (1, 2) => call::<$h, 1, 2>(t, ($r0, $i0), ($k0, $k1), &mut acc),
                (1, _) => call::<$h, 1, 3>(t, ($r0, $i0), ($k0, $k1), &mut acc),
                (_, 1) => call::<$h, 2, 1>(t, ($r0, $i0), ($k0, $k1), &mut acc),
                (_, 2) => call::<$h, 2, 2>(t, ($r0, $i0), ($k0, $k1), &mut acc),
                _ => call::<$h, 2, 3>(t, ($r0, $i0), ($k0, $k1), &mut acc),
            }
        };
    }
    macro_rules! sweep {
        ($h:expr) => {
            if na == 1 {
                // One activation row (decode): the weight rows one after the other, a single sequential stream
                // (rows side by side are short interleaved streams the hardware prefetcher follows poorly).
                for r0 in 0..nr {
                    call::<$h, 1, 1>(t, (r0, 0), (0, n), &mut acc);
                }
            } else {
                for k0 in (0..n).step_by(KB) {
                    let k1 = (k0 + KB).min(n);
                    for r0 in (0..nr).step_by(SUB_ROWS) {
                        for i0 in (0..na).step_by(SUB_ACTS) {
                            go!($h, r0, i0, k0, k1)
                        }
                    }
                }
            }
        };
    }
    if t.dtype == DType::F16 {
        sweep!(true)
    } else {
        sweep!(false)
    }
    for i in 0..na {
        for r in 0..nr {
            out[i * ROWS + r] = reduce16(&acc[i * ROWS + r]);
        }
    }
}

fn call<const H: bool, const NR: usize, const NA: usize>(
    t: &FloatTile,
    at: (usize, usize),
    ks: (usize, usize),
    acc: &mut Partials,
) {
    // SAFETY: only reachable from the private entry `dot`, handed out by `entry` for the proof that the CPU has
    // AVX2, FMA and F16C; `dot` checked the buffer lengths, and `r0 + NR <= n_rows`, `i0 + NA <= n_act`,
    // `k0 <= k1 <= cols` with `k0` a multiple of `LANES` (`KB` is one).
    unsafe { kernel::<H, NR, NA>(t, at, ks, acc) }
}

/// 8 weights of a row from element `k` (`H`: f16).
///
/// # Safety
/// Elements `k..k + 8` are readable at `row`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_w<const H: bool>(row: *const u8, k: usize) -> __m256 {
    // SAFETY: forwarded to the caller.
    unsafe {
        if H {
            _mm256_cvtph_ps(_mm_loadu_si128(row.add(2 * k).cast()))
        } else {
            _mm256_loadu_ps(row.add(4 * k).cast())
        }
    }
}

/// Adds elements `k0..k1` of weight rows `r0..r0 + NR` times activation rows `i0..i0 + NA` to their partial sums in
/// `acc` (`(r0, i0) = at`, `(k0, k1) = ks`), lane by lane in the scalar twin's order.
///
/// # Safety
/// The CPU supports the enabled features; those rows exist in `t` with `t.cols` elements each; `k0` is a multiple
/// of [`LANES`] and `k1 <= t.cols`, and `k1` is `t.cols` or a multiple of [`LANES`].
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn kernel<const H: bool, const NR: usize, const NA: usize>(
    t: &FloatTile,
    (r0, i0): (usize, usize),
    (k0, k1): (usize, usize),
    acc: &mut Partials,
) {
    let n = t.cols;
    let es = if H { 2 } else { 4 };
    let mut w = [t.w.as_ptr(); NR];
    let mut x = [t.x.as_ptr(); NA];
    for (r, w) in w.iter_mut().enumerate() {
        // SAFETY: row `r0 + r` lies inside `t.w` (checked by `dot`).
        *w = unsafe { t.w.as_ptr().add((r0 + r) * t.wrb) };
    }
    for (i, x) in x.iter_mut().enumerate() {
        // SAFETY: row `i0 + i` lies inside `t.x`.
        *x = unsafe { t.x.as_ptr().add((i0 + i) * n) };
    }
    let slot = |i: usize, r: usize| (i0 + i) * ROWS + r0 + r;
    let (mut lo, mut hi) = ([[_mm256_setzero_ps(); NR]; NA], [[_mm256_setzero_ps(); NR]; NA]);
    for i in 0..NA {
        for r in 0..NR {
            [lo[i][r], hi[i][r]] = load_partials(&acc[slot(i, r)]);
        }
    }
    // One half (8 lanes) of a 16-element chunk at a time: NR weight vectors live, the activation vectors one by one
    // (with NR = 2, NA = 3: 12 accumulators + 2 + 1 registers, no spills).
    macro_rules! half {
        ($w:expr, $x:expr, $k:expr, $acc:ident) => {
            let mut wv = [_mm256_setzero_ps(); NR];
            for r in 0..NR {
                // SAFETY: elements `k..k + 8` of the row are readable (full chunk or padded copy).
                wv[r] = unsafe { load_w::<H>($w[r], $k) };
            }
            for i in 0..NA {
                // SAFETY: elements `k..k + 8` of the activation row are readable (full chunk or padded copy).
                let xv = unsafe { _mm256_loadu_ps($x[i].add($k)) };
                for r in 0..NR {
                    $acc[i][r] = _mm256_fmadd_ps(wv[r], xv, $acc[i][r]);
                }
            }
        };
    }
    let decode = t.n_act == 1;
    // Cursors advanced chunk by chunk (no index arithmetic, so no overflow checks, in the loop).
    // SAFETY: elements `k0..` of each row lie inside its buffer (`k0 <= k1 <= t.cols`).
    let mut wc: [*const u8; NR] = std::array::from_fn(|r| unsafe { w[r].add(es * k0) });
    // SAFETY: as above.
    let mut xc: [*const f32; NA] = std::array::from_fn(|i| unsafe { x[i].add(k0) });
    let chunks = (k1 - k0) / LANES;
    for _ in 0..chunks {
        if decode {
            // With several activation rows the kernel is compute-bound.
            prefetch_next_rows(&wc, 0, t.wrb);
        }
        half!(wc, xc, 0, lo);
        half!(wc, xc, 8, hi);
        // SAFETY: each cursor moves to its row's next chunk (one past the last full chunk at most).
        unsafe {
            wc = wc.map(|p| p.add(es * LANES));
            xc = xc.map(|p| p.add(LANES));
        }
    }
    let rest = k1 - k0 - chunks * LANES;
    if rest > 0 {
        // The last partial chunk, zero padded (the scalar twin's padding); `k1 == n` here, and the cursors point at
        // its first element.
        let mut wp = [[0u8; 4 * LANES]; NR];
        let mut xp = [[0f32; LANES]; NA];
        for r in 0..NR {
            // SAFETY: the chunk's `rest` elements of row `r` are inside `t.w`.
            let src = unsafe { std::slice::from_raw_parts(wc[r], rest * es) };
            wp[r][..rest * es].copy_from_slice(src);
        }
        for i in 0..NA {
            // SAFETY: the chunk's `rest` elements of row `i` are inside `t.x`.
            let src = unsafe { std::slice::from_raw_parts(xc[i], rest) };
            xp[i][..rest].copy_from_slice(src);
        }
        let wpp: [*const u8; NR] = std::array::from_fn(|r| wp[r].as_ptr());
        let xpp: [*const f32; NA] = std::array::from_fn(|i| xp[i].as_ptr());
        half!(wpp, xpp, 0, lo);
        half!(wpp, xpp, 8, hi);
    }
    for i in 0..NA {
        for r in 0..NR {
            store_partials(&mut acc[slot(i, r)], lo[i][r], hi[i][r]);
        }
    }
}

/// An output's 16 partial sums as two 8-lane vectors (lanes 0..8, 8..16).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load_partials(s: &[f32; LANES]) -> [__m256; 2] {
    // SAFETY: `s` holds 16 floats; unaligned loads of 0..8 and 8..16.
    unsafe { [_mm256_loadu_ps(s.as_ptr()), _mm256_loadu_ps(s.as_ptr().add(8))] }
}

/// Stores an output's 16 partial sums from their two 8-lane vectors.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn store_partials(s: &mut [f32; LANES], lo: __m256, hi: __m256) {
    // SAFETY: `s` holds 16 floats; unaligned stores of 0..8 and 8..16.
    unsafe {
        _mm256_storeu_ps(s.as_mut_ptr(), lo);
        _mm256_storeu_ps(s.as_mut_ptr().add(8), hi);
    }
}
