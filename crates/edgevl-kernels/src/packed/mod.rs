//! Packed weights for the integer GEMM: Q4_0, Q4_1, Q5_0, Q8_0, Q4_K and Q6_K matrices re-laid out once at load so that one 512-bit
//! load holds 4 consecutive k-bytes of each of 16 rows, for `vpdpbusd` with a broadcast 4-byte activation group
//! (AVX-512 VNNI; AVX2 takes each line as two halves of 8 rows, NEON `sdot` as four quarters of 4 rows).
//!
//! Layout ([`PackedWeights`]): the rows are cut into groups of [`GROUP`] rows (the last one padded with zero rows),
//! each group stored as `nb` (blocks per row) quant tiles, then `nb` scale tiles, then padding to 64 bytes:
//! - quant tile of block `b`: `QB` bytes; byte `t * 64 + l * 4 + e` belongs to row `l` of the group and pairs with
//!   activation element `4t + e` (Q8_0: `q + 128`, `QB = 512`) or, for Q4 (`QB = 256`), holds source byte `4t + e`
//!   whose low nibble pairs with activation element `4t + e` and high nibble with `16 + 4t + e`; Q5_0
//!   (`QB = 320`) adds to those 256 bytes a 64-byte plane of fifth bits, byte `l * 4 + e` holding in bit `k` the
//!   fifth bit of row `l`'s element `4k + e` (the elements of that byte position in the 8 nibble vectors, so vector
//!   `k`'s bits are one shift of the plane away at every SIMD width);
//! - scale tile of block `b`: the 16 rows' f16 scales, then (Q4_1) their 16 f16 minimums.
//!
//! Weights are unsigned (`u = q + o`, offset `o` = 8 for Q4_0, 0 for Q4_1, 16 for Q5_0, 128 for Q8_0) and the activations
//! signed Q8 blocks, so `sum(u * a) - o * sum(a)` is the exact integer dot of a block. Every kernel computes each
//! output by the same f32 sequence, block by block: `acc = fma(f32(sumi), d_w * d_a, acc)` and, for Q4_1, then
//! `acc = fma(m_w, s_a, acc)`; so the scalar twin ([`dot_scalar`]) and the SIMD kernels agree bit for bit.
//!
//! Products of at least 16 activation rows (prefill, the vision tower) take, with AVX-512 VNNI, the wide kernel for
//! Q4_0, Q4_1 and Q8_0 ([`wide`]): 16 activation rows in the lanes, each group decoded once per task.
//!
//! Q4_K's and Q6_K's blocks are their 256-value super-blocks, with layouts, integer sums and f32 sequences of their
//! own (those of their unpacked dots; [`kquant`], kernels in `k_avx512`, `k_avx2`, `k_neon`).

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
#[cfg(target_arch = "x86_64")]
mod k_avx2;
#[cfg(target_arch = "x86_64")]
mod k_avx512;
#[cfg(target_arch = "aarch64")]
mod k_neon;
pub(crate) mod kquant;
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon;
pub(crate) mod wide;

use crate::buffer::AlignedBuf;
pub use crate::buffer::PackArena;
use crate::dtype::{DType, VecDotType};
use crate::entry::KernelEntry;
use crate::error::KernelError;
use crate::formats::f16_to_f32;
use std::sync::Arc;

/// Rows per group (the lanes of a 512-bit vector of i32).
pub const GROUP: usize = 16;
/// Most activation rows per kernel call.
pub const MAX_ACT: usize = 8;
/// Most consecutive row groups per kernel call with one activation row (decode): the groups' blocks are
/// interleaved in one loop, so the loop ends (and its exit is mispredicted, discarding the loads in flight) once
/// per this many groups. 4 measured best (AVX-512: 2.7B decode products +7%, 8 is slower; AVX2: one thread
/// streaming a Q4_0 matrix from DRAM 24-27 -> 30-33 GMAC/s, 2.7B decode on one thread 9.2-10.1 -> 11.1-11.5
/// tok/s).
pub const MAX_GROUPS: usize = 4;
/// Elements per block of every packed format.
const QK: usize = 32;
/// Bytes of a Q5_0 quant tile's plane of fifth bits (one bit per value of the 16 rows' 32-value blocks).
pub(crate) const Q5_PLANE: usize = GROUP * QK / 8;
/// Where a Q5_0 quant tile's plane starts: after its nibble bytes, laid out as a Q4 tile's.
pub(crate) const Q5_PLANE_AT: usize = GROUP * QK / 2;

/// The fifth bit (0 or 1) of row `l`'s element `j` in a Q5_0 quant tile `q`'s plane.
#[inline(always)]
fn q5_bit(q: &[u8], l: usize, j: usize) -> u8 {
    (q[Q5_PLANE_AT + l * 4 + j % 4] >> (j / 4)) & 1
}

/// Whether `dtype` has a packed layout.
pub fn is_packable(dtype: DType) -> bool {
    PackedFormat::of(dtype).is_some()
}

/// The formats with a packed layout: every layout-dependent size and offset is an exhaustive match on it, so no
/// kernel can read one format's tiles with another's sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
#[allow(non_camel_case_types)] // ggml's type names, as `DType`'s
pub(crate) enum PackedFormat {
    /// From Q4_0 (activations Q8_0).
    Q4_0 = 0,
    /// From Q4_1 (activations Q8_1).
    Q4_1 = 1,
    /// From Q8_0 (activations Q8_0).
    Q8_0 = 2,
    /// From Q5_0 (activations Q8_0): the Q4 nibble tile plus a plane of fifth bits.
    Q5_0 = 5,
    /// From Q4_K (activations Q8_K), 256-value super-blocks ([`kquant`]).
    Q4_K = 3,
    /// From Q6_K (activations Q8_K), 256-value super-blocks ([`kquant`]).
    Q6_K = 4,
}

impl PackedFormat {
    /// The packed format of `dtype`, if it has one.
    pub(crate) fn of(dtype: DType) -> Option<Self> {
        match dtype {
            DType::Q4_0 => Some(PackedFormat::Q4_0),
            DType::Q4_1 => Some(PackedFormat::Q4_1),
            DType::Q8_0 => Some(PackedFormat::Q8_0),
            DType::Q5_0 => Some(PackedFormat::Q5_0),
            DType::Q4_K => Some(PackedFormat::Q4_K),
            DType::Q6_K => Some(PackedFormat::Q6_K),
            _ => None,
        }
    }

    /// The format whose `as u8` code is `code`: the kernels are monomorphised per format with its code as a
    /// const parameter, so every size below is a compile-time constant there.
    #[cfg_attr(not(any(target_arch = "x86_64", target_arch = "aarch64")), allow(dead_code))] // SIMD kernels only
    pub(crate) const fn from_code(code: u8) -> Self {
        match code {
            0 => PackedFormat::Q4_0,
            1 => PackedFormat::Q4_1,
            2 => PackedFormat::Q8_0,
            3 => PackedFormat::Q4_K,
            4 => PackedFormat::Q6_K,
            _ => PackedFormat::Q5_0,
        }
    }

    /// The source format.
    pub(crate) fn dtype(self) -> DType {
        match self {
            PackedFormat::Q4_0 => DType::Q4_0,
            PackedFormat::Q4_1 => DType::Q4_1,
            PackedFormat::Q8_0 => DType::Q8_0,
            PackedFormat::Q5_0 => DType::Q5_0,
            PackedFormat::Q4_K => DType::Q4_K,
            PackedFormat::Q6_K => DType::Q6_K,
        }
    }

    /// Values per block (a K-quant super-block holds 256).
    pub(crate) const fn block_elems(self) -> usize {
        match self {
            PackedFormat::Q4_K | PackedFormat::Q6_K => kquant::QK_K,
            PackedFormat::Q4_0 | PackedFormat::Q4_1 | PackedFormat::Q5_0 | PackedFormat::Q8_0 => QK,
        }
    }

    /// Quant bytes per block tile of a group.
    pub(crate) const fn quant_tile(self) -> usize {
        match self {
            PackedFormat::Q8_0 => GROUP * QK,
            PackedFormat::Q4_0 | PackedFormat::Q4_1 => GROUP * QK / 2,
            PackedFormat::Q5_0 => Q5_PLANE_AT + Q5_PLANE,
            PackedFormat::Q4_K => GROUP * kquant::QK_K / 2,
            PackedFormat::Q6_K => 8 * kquant::Q6_CHUNK,
        }
    }

    /// Scale bytes per block tile of a group (f16 scales, and for Q4_1 f16 minimums; Q4_K and Q6_K: [`kquant`]).
    pub(crate) const fn scale_tile(self) -> usize {
        match self {
            PackedFormat::Q4_K => kquant::SCALE_TILE,
            PackedFormat::Q6_K => kquant::Q6_SCALE_TILE,
            PackedFormat::Q4_1 => 4 * GROUP,
            PackedFormat::Q4_0 | PackedFormat::Q5_0 | PackedFormat::Q8_0 => 2 * GROUP,
        }
    }

    /// The offset `o` of the unsigned weights in the Q4/Q8 kernels' integer sums (the K-quants' kernels handle
    /// theirs, [`kquant`]).
    pub(crate) const fn offset(self) -> i32 {
        match self {
            PackedFormat::Q4_0 => 8,
            PackedFormat::Q5_0 => 16,
            PackedFormat::Q8_0 => 128,
            PackedFormat::Q4_1 | PackedFormat::Q4_K | PackedFormat::Q6_K => 0,
        }
    }

    /// Bytes before the quants in an activation block (Q8_1 and Q8_K: 4, Q8_0: 2).
    pub(crate) const fn act_offset(self) -> usize {
        match self {
            PackedFormat::Q4_1 | PackedFormat::Q4_K | PackedFormat::Q6_K => 4,
            PackedFormat::Q4_0 | PackedFormat::Q5_0 | PackedFormat::Q8_0 => 2,
        }
    }

    /// Bytes of an activation block (Q8_1: 36, Q8_0: 34, Q8_K: 292).
    pub(crate) const fn act_block(self) -> usize {
        match self {
            PackedFormat::Q4_K | PackedFormat::Q6_K => kquant::Q8K_BLOCK,
            PackedFormat::Q4_0 | PackedFormat::Q4_1 | PackedFormat::Q5_0 | PackedFormat::Q8_0 => {
                QK + self.act_offset()
            }
        }
    }
}

/// A weight matrix in the packed layout (see the module documentation), 64-byte aligned, in its own buffer or in a
/// range of a [`PackArena`] shared with the model's other matrices.
pub struct PackedWeights {
    fmt: PackedFormat,
    rows: usize,
    cols: usize,
    nb: usize,
    group_bytes: usize,
    data: Storage,
}

/// Where a packed matrix's bytes live.
enum Storage {
    Own(AlignedBuf),
    /// `len` bytes at `off` of the arena, reserved for this matrix alone.
    Arena {
        arena: Arc<PackArena>,
        off: usize,
        len: usize,
    },
}

impl std::fmt::Debug for PackedWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedWeights")
            .field("dtype", &self.dtype())
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("bytes", &self.bytes().len())
            .finish()
    }
}

/// The packed shape of a matrix: blocks per row, bytes per row group, and total bytes.
fn packed_shape(
    dtype: DType,
    rows: usize,
    cols: usize,
) -> Result<(PackedFormat, usize, usize, usize), KernelError> {
    let fmt = PackedFormat::of(dtype).ok_or(KernelError::NotPackable { dtype })?;
    let overflow = || KernelError::SizeOverflow { dtype, rows, cols };
    let nb = cols / fmt.block_elems();
    let per_block = fmt.quant_tile() + fmt.scale_tile();
    let group_bytes = nb.checked_mul(per_block).ok_or_else(overflow)?.next_multiple_of(64);
    let total = rows.div_ceil(GROUP).checked_mul(group_bytes).ok_or_else(overflow)?;
    Ok((fmt, nb, group_bytes, total))
}

impl PackedWeights {
    /// Packs `rows` rows of `cols` elements stored in `dtype` (row-major GGUF data; more bytes are ignored) into a
    /// buffer of its own.
    pub fn pack(dtype: DType, data: &[u8], rows: usize, cols: usize) -> Result<Self, KernelError> {
        Self::pack_in(None, dtype, data, rows, cols)
    }

    /// The bytes [`PackedWeights::pack`] needs for this matrix (to size a [`PackArena`]).
    pub fn packed_bytes(dtype: DType, rows: usize, cols: usize) -> Result<usize, KernelError> {
        packed_shape(dtype, rows, cols).map(|(_, _, _, total)| total)
    }

    /// [`PackedWeights::pack`] into a range of `arena` when given and not full (else into a buffer of its own).
    pub fn pack_in(
        arena: Option<&Arc<PackArena>>,
        dtype: DType,
        data: &[u8],
        rows: usize,
        cols: usize,
    ) -> Result<Self, KernelError> {
        let (fmt, nb, group_bytes, total) = packed_shape(dtype, rows, cols)?;
        let src = crate::matmul::WeightRef::new(dtype, data, rows, cols)?;
        let rb = src.row_bytes();
        let storage = match arena.and_then(|a| Some((a, a.reserve(total)?))) {
            Some((a, off)) => Storage::Arena { arena: Arc::clone(a), off, len: total },
            None => Storage::Own(AlignedBuf::zeroed_lines(total / 64)),
        };
        let mut out = PackedWeights { fmt, rows, cols, nb, group_bytes, data: storage };
        // Large matrices are packed by a few scoped threads, each taking whole groups.
        crate::buffer::fill_units(out.bytes_mut(), group_bytes, |g, dst| {
            pack_group(fmt, data, rb, nb, rows, g, dst)
        });
        Ok(out)
    }

    /// Storage type of the source.
    pub fn dtype(&self) -> DType {
        self.fmt.dtype()
    }

    /// Bytes of one row group.
    pub fn group_bytes(&self) -> usize {
        self.group_bytes
    }

    /// Output features.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input features.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Row groups of [`GROUP`] rows.
    pub fn groups(&self) -> usize {
        self.rows.div_ceil(GROUP)
    }

    /// Blocks per row.
    pub fn blocks_per_row(&self) -> usize {
        self.nb
    }

    /// The packed format.
    pub(crate) fn format(&self) -> PackedFormat {
        self.fmt
    }

    /// The packed bytes.
    pub fn bytes(&self) -> &[u8] {
        match &self.data {
            Storage::Own(b) => b.as_slice(),
            // SAFETY: the range was reserved for this matrix alone; the only `&mut` to it (`bytes_mut`) needs
            // `&mut self`, so none is alive while `&self` is borrowed.
            Storage::Arena { arena, off, len } => unsafe { arena.slice(*off, *len) },
        }
    }

    /// The bytes of row group `g` (`g < groups()`).
    pub fn group(&self, g: usize) -> &[u8] {
        self.groups_bytes(g, 1)
    }

    /// The bytes of the `n` row groups from `g`.
    ///
    /// # Panics
    /// If `g + n > groups()`.
    #[inline]
    pub fn groups_bytes(&self, g: usize, n: usize) -> &[u8] {
        &self.bytes()[g * self.group_bytes..(g + n) * self.group_bytes]
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        match &mut self.data {
            Storage::Own(b) => b.as_mut_slice(),
            // SAFETY: the range was reserved for this matrix alone, and `&mut self` excludes any other slice of it.
            Storage::Arena { arena, off, len } => unsafe { arena.slice_mut(*off, *len) },
        }
    }

    /// Dequantises row `r` into `out` (`cols` elements), exactly as the source format's dequantiser does.
    ///
    /// # Panics
    /// If `r >= rows()` or `out.len() != cols()`.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        assert!(r < self.rows && out.len() == self.cols, "PackedWeights::dequantize_row: bad row or length");
        let grp = self.group(r / GROUP);
        let l = r % GROUP;
        match self.fmt {
            PackedFormat::Q4_K => return kquant::dequantize_row(grp, self.nb, l, out),
            PackedFormat::Q6_K => return kquant::dequantize_row_q6k(grp, self.nb, l, out),
            PackedFormat::Q4_0 | PackedFormat::Q4_1 | PackedFormat::Q5_0 | PackedFormat::Q8_0 => {}
        }
        let (qt, st) = (self.fmt.quant_tile(), self.fmt.scale_tile());
        let (quants, scales) = grp.split_at(self.nb * qt);
        for (b, o) in out.chunks_exact_mut(QK).enumerate() {
            let q = &quants[b * qt..(b + 1) * qt];
            let s = &scales[b * st..(b + 1) * st];
            let d = f16_to_f32([s[2 * l], s[2 * l + 1]]);
            let byte = |k: usize| q[(k / 4) * 64 + l * 4 + k % 4];
            match self.fmt {
                PackedFormat::Q8_0 => {
                    for (k, o) in o.iter_mut().enumerate() {
                        *o = f32::from((byte(k) ^ 0x80) as i8) * d;
                    }
                }
                PackedFormat::Q4_0 => {
                    for k in 0..16 {
                        o[k] = (i32::from(byte(k) & 0x0f) - 8) as f32 * d;
                        o[k + 16] = (i32::from(byte(k) >> 4) - 8) as f32 * d;
                    }
                }
                PackedFormat::Q5_0 => {
                    for k in 0..16 {
                        let (lo, hi) = (byte(k) & 0x0f, byte(k) >> 4);
                        o[k] = (i32::from(lo | (q5_bit(q, l, k) << 4)) - 16) as f32 * d;
                        o[k + 16] = (i32::from(hi | (q5_bit(q, l, k + 16) << 4)) - 16) as f32 * d;
                    }
                }
                PackedFormat::Q4_1 => {
                    let m = f16_to_f32([s[2 * GROUP + 2 * l], s[2 * GROUP + 2 * l + 1]]);
                    for k in 0..16 {
                        o[k] = f32::from(byte(k) & 0x0f) * d + m;
                        o[k + 16] = f32::from(byte(k) >> 4) * d + m;
                    }
                }
                PackedFormat::Q4_K | PackedFormat::Q6_K => {
                    unreachable!("K-quant rows are dequantised by kquant")
                }
            }
        }
    }
}

/// Packs row group `g` of `rows` source rows (`rb` bytes each, `nb` blocks) into `dst` (`group_bytes` long).
fn pack_group(fmt: PackedFormat, data: &[u8], rb: usize, nb: usize, rows: usize, g: usize, dst: &mut [u8]) {
    match fmt {
        PackedFormat::Q4_K => return kquant::pack_group(data, rb, nb, rows, g, dst),
        PackedFormat::Q6_K => return kquant::pack_group_q6k(data, rb, nb, rows, g, dst),
        PackedFormat::Q4_0 | PackedFormat::Q4_1 | PackedFormat::Q5_0 | PackedFormat::Q8_0 => {}
    }
    let bb = fmt.dtype().block_bytes();
    let (qt, st) = (fmt.quant_tile(), fmt.scale_tile());
    let (quants, scales) = dst.split_at_mut(nb * qt);
    for l in 0..GROUP.min(rows - g * GROUP) {
        let row = &data[(g * GROUP + l) * rb..(g * GROUP + l + 1) * rb];
        for (b, blk) in row.chunks_exact(bb).enumerate() {
            let q = &mut quants[b * qt..(b + 1) * qt];
            let s = &mut scales[b * st..(b + 1) * st];
            s[2 * l..2 * l + 2].copy_from_slice(&blk[..2]);
            let qs = match fmt {
                PackedFormat::Q4_1 => {
                    s[2 * GROUP + 2 * l..2 * GROUP + 2 * l + 2].copy_from_slice(&blk[2..4]);
                    &blk[4..]
                }
                PackedFormat::Q5_0 => {
                    // Bit `j` of `qh` is element `j`'s fifth bit: into plane byte `l * 4 + j % 4`, bit `j / 4`.
                    let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
                    let plane = &mut q[Q5_PLANE_AT + l * 4..][..4];
                    for (e, p) in plane.iter_mut().enumerate() {
                        *p = (0..8).map(|k| (((qh >> (4 * k + e)) & 1) as u8) << k).sum();
                    }
                    &blk[6..]
                }
                PackedFormat::Q4_0 | PackedFormat::Q8_0 => &blk[2..],
                PackedFormat::Q4_K | PackedFormat::Q6_K => {
                    unreachable!("K-quant groups are packed by kquant")
                }
            };
            for (t, four) in qs.chunks_exact(4).enumerate() {
                let d = &mut q[t * 64 + l * 4..t * 64 + l * 4 + 4];
                if fmt == PackedFormat::Q8_0 {
                    for (d, v) in d.iter_mut().zip(four) {
                        *d = v ^ 0x80;
                    }
                } else {
                    d.copy_from_slice(four);
                }
            }
        }
    }
}

/// Per activation block: its scale, the sum of its quants (Q8_0) and its stored `s` (Q8_1); for a Q8_K block its
/// f32 scale alone (its group sums are in the block).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct ActMeta {
    /// Block scale.
    pub d: f32,
    /// Sum of the 32 quants (0 for Q8_K, whose 16-value sums are in the block).
    pub sum: i32,
    /// Q8_1's `s` (`f16(d * sum)`), 0 for Q8_0.
    pub s: f32,
}

/// Bytes before the quants in an activation block of `vdt` (Q8_0: 2, Q8_1: 4).
pub fn act_quant_offset(vdt: VecDotType) -> usize {
    if vdt == VecDotType::Q8_1 {
        4
    } else {
        2
    }
}

/// Fills `meta` (one entry per block) from one activation row of Q8_0, Q8_1 or Q8_K blocks.
pub fn act_meta(vdt: VecDotType, row: &[u8], meta: &mut [ActMeta]) {
    if vdt == VecDotType::Q8_K {
        for (blk, m) in row.chunks_exact(kquant::Q8K_BLOCK).zip(meta.iter_mut()) {
            *m = ActMeta { d: f32::from_le_bytes([blk[0], blk[1], blk[2], blk[3]]), sum: 0, s: 0.0 };
        }
        return;
    }
    let bb = vdt.row_bytes(QK).unwrap_or(34);
    let off = act_quant_offset(vdt);
    for (blk, m) in row.chunks_exact(bb).zip(meta.iter_mut()) {
        let d = f16_to_f32([blk[0], blk[1]]);
        let s = if off == 4 { f16_to_f32([blk[2], blk[3]]) } else { 0.0 };
        let sum = blk[off..off + QK].iter().map(|&q| i32::from(q as i8)).sum();
        *m = ActMeta { d, sum, s };
    }
}

/// One kernel call: `n_groups` consecutive row groups of a [`PackedWeights`] times `n_act` rows of quantised
/// activations. The fields are private and checked by [`PackedTile::new`], so a kernel can rely on them: its format
/// is a packed one and every buffer holds the shape it describes.
///
/// A tile cannot be made up from loose buffers, as the public fields of earlier versions allowed (a tile whose
/// format said Q4_K (then without a layout) passed one format's length check and was read with another's sizes, past its buffer): its
/// fields are private ("cannot construct `PackedTile` with struct literal syntax due to private fields").
///
/// ```compile_fail
/// use edgevl_kernels::packed::{ActMeta, PackedTile};
/// let (w, acts, meta) = (vec![0u8; 16 * 288], vec![0u8; 292], [ActMeta::default()]);
/// let tile = PackedTile { w: &w, nb: 1, acts: &acts, arb: 292, meta: &meta, n_act: 1, n_groups: 1 };
/// ```
///
/// Only [`PackedTile::new`] makes one, from a packed matrix (whose format has a packed layout) and activation
/// buffers of the right lengths:
///
/// ```
/// use edgevl_kernels::packed::{ActMeta, PackedTile, PackedWeights, GROUP, MAX_ACT};
/// use edgevl_kernels::{DType, Kernels};
/// let w = PackedWeights::pack(DType::Q8_0, &[0u8; 34 * 16], 16, 32)?;
/// let (acts, meta) = ([0u8; 34], [ActMeta::default()]);
/// let tile = PackedTile::new(&w, 0, 1, &acts, &meta, 1)?;
/// let mut out = [f32::NAN; GROUP * MAX_ACT];
/// Kernels::detect().packed().dot(&tile, &mut out);
/// assert_eq!(out[..GROUP], [0.0; GROUP]);
/// // An F16 matrix has no packed layout, so no tile of it exists; short buffers are refused.
/// assert!(PackedWeights::pack(DType::F16, &[0u8; 64 * 16], 16, 32).is_err());
/// assert!(PackedTile::new(&w, 0, 1, &acts[..33], &meta, 1).is_err());
/// # Ok::<(), edgevl_kernels::KernelError>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct PackedTile<'a> {
    /// Format of the packed weights.
    fmt: PackedFormat,
    /// `n_groups` whole row groups ([`PackedWeights::groups_bytes`]).
    w: &'a [u8],
    /// Blocks per row.
    nb: usize,
    /// `n_act` activation rows of `arb` bytes each.
    acts: &'a [u8],
    /// Bytes per activation row: `nb` blocks of the format's activation type.
    arb: usize,
    /// `n_act * nb` entries: row `i`'s blocks at `i * nb..`.
    meta: &'a [ActMeta],
    /// Activation rows (1..=[`MAX_ACT`]).
    n_act: usize,
    /// Consecutive row groups in `w` (1..=[`MAX_GROUPS`]; more than one only with one activation row): group `j`'s
    /// outputs go to `out[j * GROUP..]`.
    n_groups: usize,
}

impl<'a> PackedTile<'a> {
    /// Row groups `g0..g0 + n_groups` of `w` times the `n_act` activation rows in `acts` (each
    /// `w.dtype().vec_dot_type().row_bytes(w.cols())` bytes, as [`crate::Kernels::quantizer`] writes them), with
    /// their block metadata `meta` (`w.blocks_per_row()` entries per row, from [`act_meta`]). Longer buffers are
    /// cut to the shape.
    ///
    /// # Errors
    /// If the groups are not inside `w`, `n_act` is not in `1..=MAX_ACT`, `n_groups` not in `1..=MAX_GROUPS`, both
    /// exceed 1, or `acts` / `meta` are shorter than their rows.
    #[inline]
    pub fn new(
        w: &'a PackedWeights,
        g0: usize,
        n_groups: usize,
        acts: &'a [u8],
        meta: &'a [ActMeta],
        n_act: usize,
    ) -> Result<Self, KernelError> {
        let range = |what, value, max| KernelError::OutOfRange { what, value, min: 1, max };
        if !(1..=MAX_ACT).contains(&n_act) {
            return Err(range("packed tile activation rows", n_act, MAX_ACT));
        }
        let max_groups = if n_act == 1 { MAX_GROUPS } else { 1 };
        if !(1..=max_groups).contains(&n_groups) {
            return Err(range("packed tile row groups", n_groups, max_groups));
        }
        if g0.checked_add(n_groups).is_none_or(|end| end > w.groups()) {
            return Err(range("packed tile's last row group", g0.saturating_add(n_groups), w.groups()));
        }
        let (fmt, nb) = (w.fmt, w.nb);
        let overflow = || KernelError::SizeOverflow { dtype: fmt.dtype(), rows: n_act, cols: w.cols };
        let arb = nb.checked_mul(fmt.act_block()).ok_or_else(overflow)?;
        let (acts_len, meta_len) = (arb.checked_mul(n_act).ok_or_else(overflow)?, nb * n_act);
        let take = |what, need: usize, found: usize, unit| {
            (found >= need).then_some(need).ok_or(KernelError::Length { what, expected: need, found, unit })
        };
        let acts = &acts[..take("packed tile activations", acts_len, acts.len(), "bytes")?];
        let meta = &meta[..take("packed tile activation metadata", meta_len, meta.len(), "blocks")?];
        Ok(PackedTile { fmt, w: w.groups_bytes(g0, n_groups), nb, acts, arb, meta, n_act, n_groups })
    }

    /// Whether the group count is in `1..=MAX_GROUPS` (several only with one activation row), each group's share
    /// of the weight bytes holds its `nb` quant and scale tiles, and the activation rows, their block metadata and
    /// the row count fit the tile's shape: what [`PackedTile::new`] guarantees, checked again by the SIMD kernels,
    /// which read through raw pointers.
    #[cfg_attr(not(any(target_arch = "x86_64", target_arch = "aarch64")), allow(dead_code))]
    pub(crate) fn holds_shape(&self) -> bool {
        let (n, nb, g) = (self.n_act, self.nb, self.n_groups);
        (1..=MAX_GROUPS).contains(&g)
            && (g == 1 || n == 1)
            && self.w.len() / g >= nb * (self.fmt.quant_tile() + self.fmt.scale_tile())
            && self.acts.len() >= n * self.arb
            && self.meta.len() >= n * nb
            && self.arb >= nb * self.fmt.act_block()
            && (1..=MAX_ACT).contains(&n)
    }

    /// Runs `dot` on each group of a multi-group tile (the single-group kernels of a table without a
    /// multi-group one), placing group `j`'s outputs at `out[j * GROUP..]`.
    pub(crate) fn each_group(
        &self,
        out: &mut [f32; GROUP * MAX_ACT],
        dot: impl Fn(&PackedTile, &mut [f32; GROUP * MAX_ACT]),
    ) {
        let gb = self.w.len() / self.n_groups;
        let mut one = [0f32; GROUP * MAX_ACT];
        for j in 0..self.n_groups {
            let t = PackedTile { w: &self.w[j * gb..(j + 1) * gb], n_groups: 1, ..*self };
            dot(&t, &mut one);
            out[j * GROUP..(j + 1) * GROUP].copy_from_slice(&one[..GROUP]);
        }
    }
}

/// Computes `out[i * GROUP + l] = dot(row l of the group, activation row i)` (or, for a multi-group tile,
/// `out[j * GROUP + l]` for row `l` of group `j` and the one activation row).
pub(crate) type PackedDotFn = fn(t: &PackedTile, out: &mut [f32; GROUP * MAX_ACT]);

/// The packed GEMM entry of a kernel table ([`crate::Kernels::packed`]): the scalar twin, or a SIMD kernel the
/// table installed after detecting its CPU features.
pub type PackedKernel = KernelEntry<PackedDotFn>;

impl PackedKernel {
    /// The scalar twin.
    pub(crate) const SCALAR: PackedKernel = KernelEntry::scalar(dot_scalar);

    /// `out[i * GROUP + l] = dot(row l of the tile's group, activation row i)`, or for a tile of several groups
    /// (and one activation row) `out[j * GROUP + l]` for row `l` of group `j`. Every kernel computes each output
    /// by the scalar twin's f32 sequence, so all levels agree bit for bit.
    #[inline]
    pub fn dot(&self, t: &PackedTile, out: &mut [f32; GROUP * MAX_ACT]) {
        (self.get())(t, out);
    }
}

/// The scalar twin of every packed kernel.
fn dot_scalar(t: &PackedTile, out: &mut [f32; GROUP * MAX_ACT]) {
    if t.n_groups > 1 {
        return t.each_group(out, dot_scalar);
    }
    match t.fmt {
        PackedFormat::Q4_K => return kquant::dot_scalar(t, out),
        PackedFormat::Q6_K => return kquant::dot_scalar_q6k(t, out),
        PackedFormat::Q4_0 | PackedFormat::Q4_1 | PackedFormat::Q5_0 | PackedFormat::Q8_0 => {}
    }
    let (qt, st) = (t.fmt.quant_tile(), t.fmt.scale_tile());
    let (quants, scales) = t.w.split_at(t.nb * qt);
    let (ab, off, o) = (t.fmt.act_block(), t.fmt.act_offset(), t.fmt.offset());
    for i in 0..t.n_act {
        let act = &t.acts[i * t.arb..(i + 1) * t.arb];
        for l in 0..GROUP {
            let mut acc = 0f32;
            for b in 0..t.nb {
                let q = &quants[b * qt..(b + 1) * qt];
                let s = &scales[b * st..(b + 1) * st];
                let a = &act[b * ab + off..b * ab + off + QK];
                let m = t.meta[i * t.nb + b];
                let byte = |k: usize| i32::from(q[(k / 4) * 64 + l * 4 + k % 4]);
                let mut sumi = -o * m.sum;
                match t.fmt {
                    PackedFormat::Q8_0 => {
                        for (k, &a) in a.iter().enumerate() {
                            sumi += byte(k) * i32::from(a as i8);
                        }
                    }
                    PackedFormat::Q4_0 | PackedFormat::Q4_1 => {
                        for k in 0..16 {
                            sumi += (byte(k) & 0x0f) * i32::from(a[k] as i8);
                            sumi += (byte(k) >> 4) * i32::from(a[k + 16] as i8);
                        }
                    }
                    PackedFormat::Q5_0 => {
                        let fifth = |j: usize| i32::from(q5_bit(q, l, j)) << 4;
                        for k in 0..16 {
                            sumi += ((byte(k) & 0x0f) | fifth(k)) * i32::from(a[k] as i8);
                            sumi += ((byte(k) >> 4) | fifth(k + 16)) * i32::from(a[k + 16] as i8);
                        }
                    }
                    PackedFormat::Q4_K | PackedFormat::Q6_K => {
                        unreachable!("K-quant tiles take kquant's twins")
                    }
                }
                let dw = f16_to_f32([s[2 * l], s[2 * l + 1]]);
                acc = (sumi as f32).mul_add(dw * m.d, acc);
                if t.fmt == PackedFormat::Q4_1 {
                    let mw = f16_to_f32([s[2 * GROUP + 2 * l], s[2 * GROUP + 2 * l + 1]]);
                    acc = mw.mul_add(m.s, acc);
                }
            }
            out[i * GROUP + l] = acc;
        }
    }
}
