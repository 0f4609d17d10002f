//! The packed layouts of the K-quants Q4_K and Q6_K (256-value super-blocks, activations Q8_K): their tiles, the
//! packers, the row dequantisers and the scalar twins every kernel matches bit for bit.
//!
//! **Q4_K** (8 groups of 32 values, each group with a 6-bit scale and a 6-bit minimum), per super-block `b` of a
//! row group ([`super::GROUP`] rows):
//! - quant tile: 8 sub-tiles of [`SUB_TILE`] bytes, sub-tile `g` in the Q4 layout of the other formats for the
//!   group's 32 values: byte `t * 64 + l * 4 + e` of row `l` holds value `32g + 4t + e` in its low nibble and
//!   `32g + 16 + 4t + e` in its high nibble;
//! - scale tile ([`SCALE_TILE`] bytes): the 16 rows' f16 `d`, their f16 `dmin` (from [`K_DMIN`]), the 6-bit
//!   scales as bytes `[group][row]` (from [`K_SC`]) and the 6-bit minimums as bytes `[pair][row][2]` (from
//!   [`K_M`]; groups `2p` and `2p + 1` of a row adjacent, for 16-bit pair products with the activation's sums).
//!
//! Each output is the unpacked dot's sequence ([`crate::formats::q4_k`]'s `vec_dot`): per super-block the exact
//! integers `isum = sum_g sc_g * sum(q * a)` and `mins = sum_g m_g * (bsum_2g + bsum_2g+1)`, then
//! `acc += d * dy * isum - dmin * dy * mins` in f32, so packed and unpacked products agree bit for bit.
//!
//! **Q6_K** (16 groups of 16 signed 6-bit values `q`, each group with a signed 8-bit scale), stored unsigned
//! (`u = q + 32`, 0..63) in the same number of bytes as the source:
//! - quant tile: 8 chunks of [`Q6_CHUNK`] bytes for the values `32c..32c + 32`: a Q4 sub-tile of the values' low 4
//!   bits (as Q4_K's: its low nibbles are group `2c`, its high nibbles group `2c + 1`), then two plane lines of
//!   their high 2 bits: byte `l * 4 + e` of plane line `h` holds, in bits `2j..2j + 2`, the high bits of the value
//!   whose low bits are nibble `h` (0 low, 1 high) of byte `j * 64 + l * 4 + e` of the sub-tile;
//! - scale tile ([`Q6_SCALE_TILE`] bytes): the 16 rows' f16 `d`, then the scales as bytes `[pair][row][2]` (from
//!   [`Q6_SC`]; groups `2p` and `2p + 1` of a row adjacent).
//!
//! Each output is the unpacked dot's sequence ([`crate::formats::q6_k`]'s `vec_dot`): the exact integer
//! `acc = sum_g sc_g * sum(q * a) = sum_g sc_g * sum(u * a) - 32 * sum_g sc_g * bsum_g` (the activation's 16-value
//! sums `bsum_g`), then `sumf += d * dy * acc` in f32.
//!
//! The SIMD kernels take the activation's group sums from the 16-value sums stored in its Q8_K blocks; they equal
//! the twins' results for blocks whose stored sums are those of their quants, as the Q8_K quantiser writes them.

use super::{PackedTile, GROUP, MAX_ACT};
use crate::formats::q4_k::BlockQ4K;
use crate::formats::q6_k::BlockQ6K;
use crate::formats::{as_blocks, f16_to_f32};

/// Values per super-block.
pub(crate) const QK_K: usize = 256;
/// Bytes of a Q8_K activation block: f32 scale, 256 quants, 16 i16 sums of 16 quants.
pub(crate) const Q8K_BLOCK: usize = 4 + QK_K + 32;
/// Offset of the activation block's 16 group sums.
pub(crate) const Q8K_BSUMS: usize = 4 + QK_K;
/// Bytes of one group's sub-tile of 32 values of 16 rows.
pub(crate) const SUB_TILE: usize = GROUP * 16;
/// Offset of the f16 `dmin`s in a scale tile.
pub(crate) const K_DMIN: usize = 2 * GROUP;
/// Offset of the scales (`[group][row]`) in a scale tile.
pub(crate) const K_SC: usize = 4 * GROUP;
/// Offset of the minimums (`[pair][row][2]`) in a scale tile.
pub(crate) const K_M: usize = K_SC + 8 * GROUP;
/// Bytes of a scale tile.
pub(crate) const SCALE_TILE: usize = K_M + 8 * GROUP;
/// Bytes of one Q6_K chunk of 32 values of 16 rows: a nibble sub-tile and two plane lines.
pub(crate) const Q6_CHUNK: usize = SUB_TILE + 2 * 64;
/// Offset of the Q6_K scales (`[pair][row][2]`) in its scale tile.
pub(crate) const Q6_SC: usize = 2 * GROUP;
/// Bytes of a Q6_K scale tile.
pub(crate) const Q6_SCALE_TILE: usize = Q6_SC + 16 * GROUP;

/// Index of byte `k` (0..16) of row `l` in a Q4 sub-tile: it holds values `k` (low nibble) and `16 + k` (high).
fn sub_byte(l: usize, k: usize) -> usize {
    (k / 4) * 64 + l * 4 + k % 4
}

/// Where the high 2 bits of chunk value `v` (0..32) of row `l` live: plane byte index and bit shift.
fn q6_plane(l: usize, v: usize) -> (usize, usize) {
    let (h, k) = (v / 16, v % 16);
    (SUB_TILE + h * 64 + l * 4 + k % 4, 2 * (k / 4))
}

/// Index of group `g`'s byte of row `l` in a `[pair][row][2]` array at `base` of a scale tile (Q4_K's minimums,
/// Q6_K's scales).
fn pair_index(base: usize, l: usize, g: usize) -> usize {
    base + 2 * GROUP * (g / 2) + 2 * l + g % 2
}

/// Row `l`'s f16 at `base + 2 * l` of a scale tile, as f32.
fn row_f16(s: &[u8], base: usize, l: usize) -> f32 {
    f16_to_f32([s[base + 2 * l], s[base + 2 * l + 1]])
}

/// Packs row group `g` of `rows` Q6_K rows (`rb` bytes, `nb` super-blocks each) into `dst`.
pub(super) fn pack_group_q6k(data: &[u8], rb: usize, nb: usize, rows: usize, g: usize, dst: &mut [u8]) {
    let (quants, scales) = dst.split_at_mut(nb * 8 * Q6_CHUNK);
    for l in 0..GROUP.min(rows - g * GROUP) {
        let row = as_blocks::<BlockQ6K>(&data[(g * GROUP + l) * rb..(g * GROUP + l + 1) * rb]);
        for (b, blk) in row.iter().enumerate() {
            let q = &mut quants[b * 8 * Q6_CHUNK..(b + 1) * 8 * Q6_CHUNK];
            let s = &mut scales[b * Q6_SCALE_TILE..(b + 1) * Q6_SCALE_TILE];
            s[2 * l..2 * l + 2].copy_from_slice(&blk.d);
            for (grp, &sc) in blk.scales.iter().enumerate() {
                s[pair_index(Q6_SC, l, grp)] = sc as u8;
            }
            let u: [u8; QK_K] = std::array::from_fn(|i| (blk.q(i) + 32) as u8);
            for (c, u) in u.chunks_exact(32).enumerate() {
                let chunk = &mut q[c * Q6_CHUNK..(c + 1) * Q6_CHUNK];
                // One write a byte: the nibble pair of sub-tile byte (t, e), and the two plane bytes of column e.
                for e in 0..4 {
                    let (mut p0, mut p1) = (0u8, 0u8);
                    for t in 0..4 {
                        let (lo, hi) = (u[4 * t + e], u[16 + 4 * t + e]);
                        chunk[sub_byte(l, 4 * t + e)] = (lo & 0x0f) | (hi << 4);
                        p0 |= (lo >> 4) << (2 * t);
                        p1 |= (hi >> 4) << (2 * t);
                    }
                    chunk[q6_plane(l, e).0] = p0;
                    chunk[q6_plane(l, 16 + e).0] = p1;
                }
            }
        }
    }
}

/// The unsigned 6-bit value `v` (0..32) of row `l` in Q6_K chunk `chunk`.
fn q6_value(chunk: &[u8], l: usize, v: usize) -> i32 {
    let lo = (chunk[sub_byte(l, v % 16)] >> (4 * (v / 16))) & 0x0f;
    let (at, shift) = q6_plane(l, v);
    i32::from(lo | (((chunk[at] >> shift) & 3) << 4))
}

/// Row `l` of packed Q6_K row group `grp_bytes` (`nb` super-blocks) into `out`, exactly as Q6_K's dequantiser.
pub(super) fn dequantize_row_q6k(grp_bytes: &[u8], nb: usize, l: usize, out: &mut [f32]) {
    let (quants, scales) = grp_bytes.split_at(nb * 8 * Q6_CHUNK);
    for (b, o) in out.chunks_exact_mut(QK_K).enumerate() {
        let s = &scales[b * Q6_SCALE_TILE..(b + 1) * Q6_SCALE_TILE];
        let d = row_f16(s, 0, l);
        for (i, v) in o.iter_mut().enumerate() {
            let chunk = &quants[(b * 8 + i / 32) * Q6_CHUNK..][..Q6_CHUNK];
            let sc = s[pair_index(Q6_SC, l, i / 16)] as i8;
            *v = d * f32::from(sc) * (q6_value(chunk, l, i % 32) - 32) as f32;
        }
    }
}

/// The scalar twin of every packed Q6_K kernel (one group; the caller splits multi-group tiles).
pub(super) fn dot_scalar_q6k(t: &PackedTile, out: &mut [f32; GROUP * MAX_ACT]) {
    for i in 0..t.n_act {
        for l in 0..GROUP {
            let mut sumf = 0f32;
            for b in 0..t.nb {
                let (q, s, [a]) = block_slices::<1>(t, i, b);
                let mut acc = 0i32;
                for grp in 0..16 {
                    let chunk = &q[(grp / 2) * Q6_CHUNK..][..Q6_CHUNK];
                    let mut dot = 0i32;
                    for k in 0..16 {
                        let v = 16 * (grp % 2) + k;
                        dot += (q6_value(chunk, l, v) - 32) * i32::from(a[4 + 16 * grp + k] as i8);
                    }
                    acc += i32::from(s[pair_index(Q6_SC, l, grp)] as i8) * dot;
                }
                let dy = t.meta[i * t.nb + b].d;
                sumf += row_f16(s, 0, l) * dy * acc as f32;
            }
            out[i * GROUP + l] = sumf;
        }
    }
}

/// Packs row group `g` of `rows` Q4_K rows (`rb` bytes, `nb` super-blocks each) into `dst`.
pub(super) fn pack_group(data: &[u8], rb: usize, nb: usize, rows: usize, g: usize, dst: &mut [u8]) {
    let (quants, scales) = dst.split_at_mut(nb * SUB_TILE * 8);
    for l in 0..GROUP.min(rows - g * GROUP) {
        let row = as_blocks::<BlockQ4K>(&data[(g * GROUP + l) * rb..(g * GROUP + l + 1) * rb]);
        for (b, blk) in row.iter().enumerate() {
            let q = &mut quants[b * 8 * SUB_TILE..(b + 1) * 8 * SUB_TILE];
            let s = &mut scales[b * SCALE_TILE..(b + 1) * SCALE_TILE];
            s[2 * l..2 * l + 2].copy_from_slice(&blk.d);
            s[K_DMIN + 2 * l..K_DMIN + 2 * l + 2].copy_from_slice(&blk.dmin);
            let sm = blk.scales_mins();
            for grp in 0..8 {
                s[K_SC + GROUP * grp + l] = sm[grp];
                s[pair_index(K_M, l, grp)] = sm[8 + grp];
                // Group `grp`'s 32 values are the low (even `grp`) or high nibbles of `qs[32 * (grp / 2)..][..32]`.
                let src = &blk.qs[32 * (grp / 2)..][..32];
                let shift = 4 * (grp % 2);
                for k in 0..16 {
                    let (lo, hi) = ((src[k] >> shift) & 0x0f, (src[16 + k] >> shift) & 0x0f);
                    q[grp * SUB_TILE + sub_byte(l, k)] = lo | (hi << 4);
                }
            }
        }
    }
}

/// The group's 6-bit scale and minimum of value group `grp` of row `l` in scale tile `s`.
fn scale_min(s: &[u8], l: usize, grp: usize) -> (u8, u8) {
    (s[K_SC + GROUP * grp + l], s[pair_index(K_M, l, grp)])
}

/// Row `l`'s f16 `d` and `dmin` in scale tile `s`, as f32.
fn d_dmin(s: &[u8], l: usize) -> (f32, f32) {
    (row_f16(s, 0, l), row_f16(s, K_DMIN, l))
}

/// Row `l` of packed row group `grp_bytes` (`nb` super-blocks) into `out`, exactly as Q4_K's dequantiser.
pub(super) fn dequantize_row(grp_bytes: &[u8], nb: usize, l: usize, out: &mut [f32]) {
    let (quants, scales) = grp_bytes.split_at(nb * 8 * SUB_TILE);
    for (b, o) in out.chunks_exact_mut(QK_K).enumerate() {
        let q = &quants[b * 8 * SUB_TILE..];
        let s = &scales[b * SCALE_TILE..(b + 1) * SCALE_TILE];
        let (d, dmin) = d_dmin(s, l);
        for (grp, og) in o.chunks_exact_mut(32).enumerate() {
            let (sc, m) = scale_min(s, l, grp);
            let (d1, m1) = (d * f32::from(sc), dmin * f32::from(m));
            for k in 0..16 {
                let byte = q[grp * SUB_TILE + sub_byte(l, k)];
                og[k] = d1 * f32::from(byte & 0x0f) - m1;
                og[k + 16] = d1 * f32::from(byte >> 4) - m1;
            }
        }
    }
}

/// The activation block's stored sum of its 16 quants `16g..16g + 16`.
pub(super) fn bsum(a: &[u8], g: usize) -> i32 {
    i32::from(i16::from_le_bytes([a[Q8K_BSUMS + 2 * g], a[Q8K_BSUMS + 2 * g + 1]]))
}

/// The activation block's sum of the 32 quants of value group `grp` (its two stored 16-value sums).
pub(super) fn group_sum(a: &[u8], grp: usize) -> i32 {
    bsum(a, 2 * grp) + bsum(a, 2 * grp + 1)
}

/// Super-block `b` of a one-group tile: its quant tile, its scale tile and activation rows `r0..r0 + N`'s blocks.
#[inline]
pub(super) fn block_slices<'a, const N: usize>(
    t: &PackedTile<'a>,
    r0: usize,
    b: usize,
) -> (&'a [u8], &'a [u8], [&'a [u8]; N]) {
    let (qt, st, ab) = (t.fmt.quant_tile(), t.fmt.scale_tile(), t.fmt.act_block());
    let (quants, scales) = t.w.split_at(t.nb * qt);
    let a = std::array::from_fn(|r| &t.acts[(r0 + r) * t.arb + b * ab..][..ab]);
    (&quants[b * qt..(b + 1) * qt], &scales[b * st..(b + 1) * st], a)
}

/// The scalar twin of every packed Q4_K kernel (one group; the caller splits multi-group tiles).
pub(super) fn dot_scalar(t: &PackedTile, out: &mut [f32; GROUP * MAX_ACT]) {
    for i in 0..t.n_act {
        for l in 0..GROUP {
            let mut sumf = 0f32;
            for b in 0..t.nb {
                let (q, s, [a]) = block_slices::<1>(t, i, b);
                let (mut isum, mut mins) = (0i32, 0i32);
                for grp in 0..8 {
                    let mut dot = 0i32;
                    for k in 0..16 {
                        let byte = i32::from(q[grp * SUB_TILE + sub_byte(l, k)]);
                        dot += (byte & 0x0f) * i32::from(a[4 + 32 * grp + k] as i8);
                        dot += (byte >> 4) * i32::from(a[4 + 32 * grp + 16 + k] as i8);
                    }
                    let (sc, m) = scale_min(s, l, grp);
                    isum += i32::from(sc) * dot;
                    mins += i32::from(m) * group_sum(a, grp);
                }
                let dy = t.meta[i * t.nb + b].d;
                let (d, dmin) = d_dmin(s, l);
                sumf += d * dy * isum as f32 - dmin * dy * mins as f32;
            }
            out[i * GROUP + l] = sumf;
        }
    }
}
