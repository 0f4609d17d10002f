//! The wide packed GEMM for prefill-sized products (AVX-512 VNNI; AVX-VNNI for Q8_0 only, [`avxvnni`]): 16
//! activation rows in the 16 lanes of a vector and one weight row's 4 bytes broadcast, rather than 16 weight rows in
//! the lanes and one activation row's 4 bytes broadcast as in the other packed kernels.
//!
//! Why: a block of 32 values costs every packed kernel, per 16 outputs, 8 `vpdpbusd` and a fixed float tail (the
//! integer sum converted, the two scales multiplied, one FMA). The row-lane kernels also spend, per output row
//! block, a broadcast of the activation's offset correction and an integer add of two chains, and unpack each
//! weight block's nibbles once per 8 activation rows: about 14.75 vector instructions per 8 `vpdpbusd` on the two
//! AVX-512 ports. Here the activations are laid out once per product ([`build_panels`]) and each group's weights are
//! decoded once per task into signed bytes with their offset correction and f32 scales ([`WideKernel::decode`]),
//! then reused by every panel of 16 activation rows; the correction is a memory broadcast (a load, no vector port)
//! and the chain needs no add: about 11.25 per 8.
//!
//! Layouts (`LINES` = 8 lines of 64 bytes a block; line `j` holds 4 consecutive values, from [`line_start`], of each of 16
//! rows):
//! - a decoded group ([`DEC_BLOCK`] bytes a block): the 8 lines of the 16 weight rows' signed values (`q - o`; Q8_0
//!   `u ^ 0x80`), then per row the i32 `-128 * sum(values)`, the f32 scale and (Q4_1) the f32 minimum;
//! - a panel of 16 activation rows ([`PANEL_BLOCK`] bytes a block): the 8 lines of the rows' quants plus 128 as
//!   unsigned bytes (`a ^ 0x80`), then per row the f32 scale and (Q8_1) the f32 `s`.
//!
//! Numerics: `sum((q - o) * (a + 128)) - 128 * sum(q - o)` is the exact integer dot of a block, so each output is
//! the packed kernels' f32 sequence ([`super::dot_scalar`]): `acc = fma(f32(sumi), d_w * d_a, acc)`, for Q4_1 then
//! `acc = fma(m_w, s_a, acc)`, bit for bit. The scalar twin [`dot_scalar`] reads the same layouts.

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avxvnni;

use super::{ActMeta, PackedFormat, GROUP, QK};
use crate::entry::KernelEntry;
use crate::error::KernelError;
use crate::formats::f16_to_f32;

/// Activation rows per panel (the lanes of a 512-bit vector of i32).
pub const LANES: usize = 16;
/// 4-value lines per block.
const LINES: usize = QK / 4;
/// Bytes of one block of a decoded group: the lines, then the rows' biases, scales and minimums.
pub const DEC_BLOCK: usize = LINES * 64 + 3 * 64;
/// Bytes of one block of an activation panel: the lines, then the rows' scales and `s`.
pub const PANEL_BLOCK: usize = LINES * 64 + 2 * 64;
/// Where a decoded block's i32 biases start.
pub(crate) const BIAS_AT: usize = LINES * 64;
/// Where a decoded block's f32 scales start.
pub(crate) const DW_AT: usize = BIAS_AT + 64;
/// Where a decoded block's f32 minimums start.
pub(crate) const MW_AT: usize = DW_AT + 64;
/// Where a panel block's f32 activation scales start.
pub(crate) const DA_AT: usize = LINES * 64;
/// Where a panel block's f32 `s` start.
pub(crate) const SA_AT: usize = DA_AT + 64;

const _: () = assert!(LANES == GROUP);

/// Whether the wide kernel takes weights of this packed format (Q4_0, Q4_1, Q8_0).
pub(crate) fn supports(fmt: PackedFormat) -> bool {
    matches!(fmt, PackedFormat::Q4_0 | PackedFormat::Q4_1 | PackedFormat::Q8_0)
}

/// The first of the 4 block values line `j` holds: lines 0-3 the four 4-value groups of the first 16 values (a Q4
/// byte's low nibbles), lines 4-7 those of the last 16 (its high nibbles); as the packed tiles pair them.
pub(crate) const fn line_start(j: usize) -> usize {
    if j < 4 {
        4 * j
    } else {
        16 + 4 * (j - 4)
    }
}

/// Lays out activation rows `0..n_panels * LANES` of `acts` (rows of `arb` bytes, `nb` blocks of the format's
/// activation type) and their metadata `meta` (`nb` a row) as `n_panels` panels of [`PANEL_BLOCK`] bytes a block
/// into `out`.
///
/// # Panics
/// If a buffer is shorter than that shape (the caller sizes them).
pub(crate) fn build_panels(
    fmt: PackedFormat,
    (acts, arb): (&[u8], usize),
    meta: &[ActMeta],
    nb: usize,
    n_panels: usize,
    out: &mut [u8],
) {
    let (ab, off) = (fmt.act_block(), fmt.act_offset());
    for (p, panel) in out.chunks_exact_mut(nb * PANEL_BLOCK).take(n_panels).enumerate() {
        for (b, blk) in panel.chunks_exact_mut(PANEL_BLOCK).enumerate() {
            for i in 0..LANES {
                let row = p * LANES + i;
                let a = &acts[row * arb + b * ab + off..][..QK];
                for j in 0..LINES {
                    let at = line_start(j);
                    let word = u32::from_le_bytes([a[at], a[at + 1], a[at + 2], a[at + 3]]) ^ 0x8080_8080;
                    blk[j * 64 + i * 4..][..4].copy_from_slice(&word.to_le_bytes());
                }
                let m = meta[row * nb + b];
                blk[DA_AT + 4 * i..][..4].copy_from_slice(&m.d.to_le_bytes());
                blk[SA_AT + 4 * i..][..4].copy_from_slice(&m.s.to_le_bytes());
            }
        }
    }
}

/// Decodes one packed group (`group`: its `nb` quant tiles, then its `nb` scale tiles) into `out`
/// (`nb * DEC_BLOCK` bytes).
pub(crate) type DecodeFn = fn(fmt: PackedFormat, group: &[u8], nb: usize, out: &mut [u8]);

/// Computes `out[i * GROUP + l] = dot(weight row l of the tile's decoded group, activation row i of its panel)`.
pub(crate) type WideDotFn = fn(t: &WideTile, out: &mut [f32; GROUP * LANES]);

/// One kernel call: a decoded group of 16 weight rows times a panel of 16 activation rows, `nb` blocks each. The
/// fields are private and checked by [`WideTile::new`].
#[derive(Clone, Copy, Debug)]
pub struct WideTile<'a> {
    fmt: PackedFormat,
    /// `nb * DEC_BLOCK` bytes.
    dec: &'a [u8],
    /// `nb * PANEL_BLOCK` bytes.
    panel: &'a [u8],
    nb: usize,
}

impl<'a> WideTile<'a> {
    /// The tile of a decoded group and an activation panel of `nb` blocks (longer buffers are cut to the shape).
    ///
    /// # Errors
    /// If the format has no wide kernel or a buffer is shorter than `nb` blocks.
    pub(crate) fn new(
        fmt: PackedFormat,
        dec: &'a [u8],
        panel: &'a [u8],
        nb: usize,
    ) -> Result<Self, KernelError> {
        if !supports(fmt) {
            return Err(KernelError::NoWideKernel { dtype: fmt.dtype() });
        }
        let take = |what, buf: &'a [u8], per: usize| {
            let need = nb.saturating_mul(per);
            (buf.len() >= need).then(|| &buf[..need]).ok_or(KernelError::Length {
                what,
                expected: need,
                found: buf.len(),
                unit: "bytes",
            })
        };
        Ok(WideTile {
            fmt,
            dec: take("wide tile decoded weights", dec, DEC_BLOCK)?,
            panel: take("wide tile activation panel", panel, PANEL_BLOCK)?,
            nb,
        })
    }

    /// Whether the buffers hold `nb` blocks each: what [`WideTile::new`] guarantees, checked again by the SIMD kernel.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn holds_shape(&self) -> bool {
        supports(self.fmt)
            && self.dec.len() >= self.nb * DEC_BLOCK
            && self.panel.len() >= self.nb * PANEL_BLOCK
    }
}

/// Whether a kernel build takes weights of this format (within [`supports`]).
pub(crate) type TakesFn = fn(fmt: PackedFormat) -> bool;

/// The wide packed GEMM entry of a kernel table ([`crate::Kernels::packed_wide`]): the scalar twins, or the SIMD
/// decoder and kernel the table installed after detecting its CPU features, with the formats that build takes.
pub(crate) type WideKernel = KernelEntry<(DecodeFn, WideDotFn, TakesFn)>;

impl WideKernel {
    /// The scalar twins.
    pub(crate) const SCALAR: WideKernel = KernelEntry::scalar((decode_scalar, dot_scalar, supports));

    /// Whether this build takes weights of format `fmt` (the matrix products send the others to the row-lane
    /// kernels).
    pub(crate) fn takes(&self, fmt: PackedFormat) -> bool {
        supports(fmt) && (self.get().2)(fmt)
    }

    /// Decodes one group of `nb` blocks (a [`super::PackedWeights::groups_bytes`] of one group) into `out`.
    ///
    /// # Panics
    /// If this build does not take the format or a buffer is shorter than `nb` blocks.
    pub(crate) fn decode(&self, fmt: PackedFormat, group: &[u8], nb: usize, out: &mut [u8]) {
        assert!(
            self.takes(fmt)
                && group.len() >= nb * (fmt.quant_tile() + fmt.scale_tile())
                && out.len() >= nb * DEC_BLOCK,
            "wide decode: {fmt:?} is not this build's, or buffers shorter than {nb} blocks"
        );
        (self.get().0)(fmt, group, nb, out);
    }

    /// `out[i * GROUP + l] = dot(weight row l, activation row i)`, the packed kernels' f32 sequence.
    #[inline]
    pub(crate) fn dot(&self, t: &WideTile, out: &mut [f32; GROUP * LANES]) {
        (self.get().1)(t, out);
    }
}

/// Reads the little-endian 4 bytes at `at`.
fn word(buf: &[u8], at: usize) -> [u8; 4] {
    [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]
}

/// The scalar twin of the decoder.
fn decode_scalar(fmt: PackedFormat, group: &[u8], nb: usize, out: &mut [u8]) {
    let (qt, st, o) = (fmt.quant_tile(), fmt.scale_tile(), fmt.offset());
    let (quants, scales) = group.split_at(nb * qt);
    for (b, d) in out.chunks_exact_mut(DEC_BLOCK).take(nb).enumerate() {
        let (q, s) = (&quants[b * qt..][..qt], &scales[b * st..][..st]);
        for l in 0..GROUP {
            let mut sum = 0i32;
            for j in 0..LINES {
                for e in 0..4 {
                    let v = if fmt == PackedFormat::Q8_0 {
                        i32::from((q[j * 64 + l * 4 + e] ^ 0x80) as i8)
                    } else {
                        let byte = q[(j % 4) * 64 + l * 4 + e];
                        i32::from(if j < 4 { byte & 0x0f } else { byte >> 4 }) - o
                    };
                    d[j * 64 + l * 4 + e] = v as i8 as u8;
                    sum += v;
                }
            }
            let mw = if fmt == PackedFormat::Q4_1 {
                f16_to_f32([s[2 * GROUP + 2 * l], s[2 * GROUP + 2 * l + 1]])
            } else {
                0.0
            };
            d[BIAS_AT + 4 * l..][..4].copy_from_slice(&(-128 * sum).to_le_bytes());
            d[DW_AT + 4 * l..][..4].copy_from_slice(&f16_to_f32([s[2 * l], s[2 * l + 1]]).to_le_bytes());
            d[MW_AT + 4 * l..][..4].copy_from_slice(&mw.to_le_bytes());
        }
    }
}

/// The scalar twin of the wide kernel.
fn dot_scalar(t: &WideTile, out: &mut [f32; GROUP * LANES]) {
    let f32_at = |buf: &[u8], at: usize| f32::from_le_bytes(word(buf, at));
    for l in 0..GROUP {
        for i in 0..LANES {
            let mut acc = 0f32;
            for b in 0..t.nb {
                let (d, p) =
                    (&t.dec[b * DEC_BLOCK..][..DEC_BLOCK], &t.panel[b * PANEL_BLOCK..][..PANEL_BLOCK]);
                let mut sumi = i32::from_le_bytes(word(d, BIAS_AT + 4 * l));
                for j in 0..LINES {
                    for e in 0..4 {
                        sumi += i32::from(d[j * 64 + l * 4 + e] as i8) * i32::from(p[j * 64 + i * 4 + e]);
                    }
                }
                let dw = f32_at(d, DW_AT + 4 * l);
                acc = (sumi as f32).mul_add(dw * f32_at(p, DA_AT + 4 * i), acc);
                if t.fmt == PackedFormat::Q4_1 {
                    acc = f32_at(d, MW_AT + 4 * l).mul_add(f32_at(p, SA_AT + 4 * i), acc);
                }
            }
            out[i * GROUP + l] = acc;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packed::{act_meta, PackedTile, PackedWeights, MAX_ACT};
    use crate::{quantize_ref, DType, Kernels};

    /// Values in `-scale..scale` from a fixed xorshift sequence.
    fn values(seed: &mut u64, n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                ((*seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    }

    /// Every level's decoder and wide kernel against the scalar twins, and the wide twin against the packed
    /// kernels' twin (the f32 sequence they all compute), bit for bit: odd block counts, a partial last group
    /// (zero rows), activation rows of one sign (the largest integer sums) and mixed.
    #[test]
    fn wide_kernels_match_their_twins_and_the_packed_twin_bit_for_bit() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let levels = Kernels::all_levels();
        for t in [DType::Q4_0, DType::Q4_1, DType::Q8_0] {
            for (rows, nb) in [(16, 1), (37, 3), (20, 80)] {
                let cols = nb * QK;
                let w = quantize_ref(t, &values(&mut seed, rows * cols, 1.5)).unwrap();
                let p = PackedWeights::pack(t, &w, rows, cols).unwrap();
                let vdt = t.vec_dot_type();
                let arb = vdt.row_bytes(cols).unwrap();
                let (mut acts, mut meta) = (vec![0u8; LANES * arb], vec![ActMeta::default(); LANES * nb]);
                let mut x = values(&mut seed, LANES * cols, 3.0);
                x[..cols].iter_mut().for_each(|v| *v = v.abs());
                for ((x, a), m) in
                    x.chunks_exact(cols).zip(acts.chunks_exact_mut(arb)).zip(meta.chunks_exact_mut(nb))
                {
                    Kernels::scalar().quantizer(vdt).quantize(x, a);
                    act_meta(vdt, a, m);
                }
                let fmt = p.format();
                let mut panel = vec![0u8; nb * PANEL_BLOCK];
                build_panels(fmt, (&acts, arb), &meta, nb, 1, &mut panel);
                for g in 0..p.groups() {
                    let mut dec = vec![0u8; nb * DEC_BLOCK];
                    WideKernel::SCALAR.decode(fmt, p.groups_bytes(g, 1), nb, &mut dec);
                    let tile = WideTile::new(fmt, &dec, &panel, nb).unwrap();
                    let mut want = [0f32; GROUP * LANES];
                    WideKernel::SCALAR.dot(&tile, &mut want);
                    // The packed twin, 8 activation rows a call.
                    for half in 0..LANES / MAX_ACT {
                        let (a, m) = (&acts[half * MAX_ACT * arb..], &meta[half * MAX_ACT * nb..]);
                        let pt = PackedTile::new(&p, g, 1, a, m, MAX_ACT).unwrap();
                        let mut rows_out = [0f32; GROUP * MAX_ACT];
                        Kernels::scalar().packed().dot(&pt, &mut rows_out);
                        for i in 0..MAX_ACT {
                            for l in 0..GROUP {
                                let (got, exp) =
                                    (want[(half * MAX_ACT + i) * GROUP + l], rows_out[i * GROUP + l]);
                                assert_eq!(
                                    got.to_bits(),
                                    exp.to_bits(),
                                    "{t} {rows}x{cols} group {g} row {l} act {i}"
                                );
                            }
                        }
                    }
                    for k in levels.iter().filter(|k| k.packed_wide().takes(fmt)) {
                        let wide = k.packed_wide();
                        let mut got_dec = vec![0u8; nb * DEC_BLOCK];
                        wide.decode(fmt, p.groups_bytes(g, 1), nb, &mut got_dec);
                        assert_eq!(
                            got_dec,
                            dec,
                            "{t} {rows}x{cols} group {g} {:?}: decoded bytes",
                            k.level()
                        );
                        let mut got = [0f32; GROUP * LANES];
                        wide.dot(&tile, &mut got);
                        assert_eq!(
                            got.map(f32::to_bits),
                            want.map(f32::to_bits),
                            "{t} {rows}x{cols} {:?}",
                            k.level()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn wide_tiles_are_checked() {
        let (dec, panel) = (vec![0u8; 2 * DEC_BLOCK], vec![0u8; 2 * PANEL_BLOCK]);
        assert!(WideTile::new(PackedFormat::Q4_0, &dec, &panel, 2).is_ok());
        let err = |fmt, d: &[u8], p: &[u8]| WideTile::new(fmt, d, p, 2).unwrap_err().to_string();
        assert!(err(PackedFormat::Q4_0, &dec[..2 * DEC_BLOCK - 1], &panel).contains("decoded"));
        assert!(err(PackedFormat::Q8_0, &dec, &panel[..PANEL_BLOCK]).contains("panel"));
        assert!(err(PackedFormat::Q4_K, &dec, &panel).contains("no wide packed kernel"));
    }
}
