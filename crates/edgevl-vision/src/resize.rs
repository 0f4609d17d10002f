//! Bicubic resampling with the semantics of Pillow's `Image.resize(size, Image.BICUBIC)` for
//! 8-bit RGB images (libImaging/Resample.c):
//!
//! * separable, one pass per axis that changes size. Pillow 13 runs the vertical pass first when the
//!   height shrinks by more than twice as many pixels as the width (`in_h - out_h > 2 * (in_w - out_w)`
//!   and `in_h > out_h`), otherwise the horizontal pass first (only over the rows the vertical pass
//!   reads). Pillow 12 and older always run the horizontal pass first: [`PassOrder`] selects;
//! * the cubic kernel (a = -0.5, support 2) is widened by the scale factor when shrinking (antialiasing);
//! * each output sample's weights are normalised to sum to 1, then converted to integers with
//!   `PRECISION_BITS` = 22 fractional bits (rounded half away from zero);
//! * each pass adds half an output unit, shifts right (floor) and clips to 0..255, so the
//!   intermediate image is 8-bit, exactly as Pillow's.

use crate::error::VisionError;
use crate::rgb::RgbImage;

/// Fractional bits of the fixed-point weights (Pillow: 32 - 8 - 2).
const PRECISION_BITS: u32 = 32 - 8 - 2;
/// Support (half-width) of the bicubic kernel at scale 1.
const BICUBIC_SUPPORT: f64 = 2.0;

/// Pillow's bicubic kernel, a = -0.5.
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Fixed-point weights for resampling one axis from `in_size` to `out_size` samples.
struct AxisWeights {
    /// Per output sample: first input index and number of taps.
    bounds: Vec<(usize, usize)>,
    /// Per output sample, `taps` weights starting at `offsets[i]`.
    offsets: Vec<usize>,
    weights: Vec<i32>,
}

impl AxisWeights {
    /// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the box `0..in_size`.
    fn new(in_size: u32, out_size: u32) -> Self {
        let scale = f64::from(in_size) / f64::from(out_size);
        let filterscale = scale.max(1.0);
        let support = BICUBIC_SUPPORT * filterscale;
        let ss = 1.0 / filterscale;
        let mut bounds = Vec::with_capacity(out_size as usize);
        let mut offsets = Vec::with_capacity(out_size as usize);
        let mut weights = Vec::new();
        let mut k = Vec::new();
        for xx in 0..out_size {
            let center = 0.0 + (f64::from(xx) + 0.5) * scale;
            // C's (int) cast truncates towards zero, as `as i64` does.
            let xmin = ((center - support + 0.5) as i64).max(0);
            let xmax = ((center + support + 0.5) as i64).min(i64::from(in_size));
            let taps = (xmax - xmin).max(0);
            k.clear();
            let mut ww = 0.0;
            for x in 0..taps {
                let w = bicubic(((x + xmin) as f64 - center + 0.5) * ss);
                k.push(w);
                ww += w;
            }
            offsets.push(weights.len());
            for &w in &k {
                let w = if ww != 0.0 { w / ww } else { w };
                let fixed = w * f64::from(1u32 << PRECISION_BITS);
                let fixed = if w < 0.0 { -0.5 + fixed } else { 0.5 + fixed };
                weights.push(fixed as i32);
            }
            bounds.push((xmin as usize, taps as usize));
        }
        Self { bounds, offsets, weights }
    }

    fn taps(&self, i: usize) -> (usize, &[i32]) {
        let (start, n) = self.bounds[i];
        let off = self.offsets[i];
        (start, &self.weights[off..off + n])
    }
}

/// Rounds, shifts and clips a fixed-point sum to a byte, as Pillow's `clip8`.
#[inline]
fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

const HALF: i64 = 1 << (PRECISION_BITS - 1);

/// Which pass runs first when both axes change size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PassOrder {
    /// Pillow 13: vertical first when the height loses more than twice as many pixels as the width.
    #[default]
    Pillow13,
    /// Pillow 12 and older: always horizontal first.
    HorizontalFirst,
}

impl PassOrder {
    fn horizontal_first(self, in_w: u32, in_h: u32, out_w: u32, out_h: u32) -> bool {
        match self {
            PassOrder::HorizontalFirst => true,
            PassOrder::Pillow13 => {
                let dy = i64::from(in_h) - i64::from(out_h);
                let dx = i64::from(in_w) - i64::from(out_w);
                !(dy > 0 && dy > dx * 2)
            }
        }
    }
}

/// Resizes `src` to `out_w x out_h` as Pillow 13's `Image.resize(size, Image.BICUBIC)` (see the
/// module docs). Resizing to the same size returns a copy, as Pillow does.
pub fn resize_bicubic(src: &RgbImage, out_w: u32, out_h: u32) -> Result<RgbImage, VisionError> {
    resize_bicubic_with(src, out_w, out_h, PassOrder::default())
}

/// [`resize_bicubic`] with an explicit [`PassOrder`] (results differ by a few levels at most,
/// only when both axes change size).
pub fn resize_bicubic_with(
    src: &RgbImage,
    out_w: u32,
    out_h: u32,
    order: PassOrder,
) -> Result<RgbImage, VisionError> {
    RgbImage::buffer_len(out_w, out_h)?;
    let (in_w, in_h) = (src.width(), src.height());
    if (in_w, in_h) == (out_w, out_h) {
        return Ok(src.clone());
    }
    let horiz = AxisWeights::new(in_w, out_w);
    let vert = AxisWeights::new(in_h, out_h);
    if out_w == in_w {
        return vertical_pass(src.pixels(), in_w, 0, &vert, out_h);
    }
    if out_h == in_h {
        return horizontal_pass(src, &horiz, out_w, 0, in_h as usize);
    }
    if !order.horizontal_first(in_w, in_h, out_w, out_h) {
        let temp = vertical_pass(src.pixels(), in_w, 0, &vert, out_h)?;
        return horizontal_pass(&temp, &horiz, out_w, 0, out_h as usize);
    }
    // Rows of the source that the vertical pass reads.
    let first = vert.bounds.first().map_or(0, |b| b.0);
    let last = vert.bounds.last().map_or(0, |b| b.0 + b.1);
    let temp = horizontal_pass(src, &horiz, out_w, first, last)?;
    vertical_pass(temp.pixels(), out_w, first, &vert, out_h)
}

/// Resamples rows `first..last` of `src` horizontally to `out_w` columns.
fn horizontal_pass(
    src: &RgbImage,
    w: &AxisWeights,
    out_w: u32,
    first: usize,
    last: usize,
) -> Result<RgbImage, VisionError> {
    let rows = u32::try_from(last.saturating_sub(first)).unwrap_or(0);
    let mut out = RgbImage::buffer_len(out_w, rows).map(|n| vec![0u8; n])?;
    let in_stride = src.width() as usize * 3;
    let out_stride = out_w as usize * 3;
    let input = &src.pixels()[first * in_stride..last * in_stride];
    for (row_in, row_out) in input.chunks_exact(in_stride).zip(out.chunks_exact_mut(out_stride)) {
        for (xx, px) in row_out.chunks_exact_mut(3).enumerate() {
            let (start, k) = w.taps(xx);
            let (mut s0, mut s1, mut s2) = (HALF, HALF, HALF);
            for (i, &kw) in k.iter().enumerate() {
                let p = (start + i) * 3;
                let kw = i64::from(kw);
                s0 += i64::from(row_in[p]) * kw;
                s1 += i64::from(row_in[p + 1]) * kw;
                s2 += i64::from(row_in[p + 2]) * kw;
            }
            px[0] = clip8(s0);
            px[1] = clip8(s1);
            px[2] = clip8(s2);
        }
    }
    RgbImage::from_raw(out_w, rows, out)
}

/// Resamples `src` (width `width`, whose row 0 is source row `row_base`) vertically to `out_h` rows.
fn vertical_pass(
    src: &[u8],
    width: u32,
    row_base: usize,
    w: &AxisWeights,
    out_h: u32,
) -> Result<RgbImage, VisionError> {
    let stride = width as usize * 3;
    let mut out = RgbImage::buffer_len(width, out_h).map(|n| vec![0u8; n])?;
    let mut acc = vec![0i64; stride];
    for (yy, row_out) in out.chunks_exact_mut(stride).enumerate() {
        let (start, k) = w.taps(yy);
        acc.fill(HALF);
        for (i, &kw) in k.iter().enumerate() {
            let y = start + i - row_base;
            let row = &src[y * stride..(y + 1) * stride];
            let kw = i64::from(kw);
            for (a, &p) in acc.iter_mut().zip(row) {
                *a += i64::from(p) * kw;
            }
        }
        for (o, &a) in row_out.iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    RgbImage::from_raw(width, out_h, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_weights_sum_to_one_in_fixed_point() {
        // Property: after normalisation each output's integer weights sum to 2^22 within rounding.
        for (i, o) in [(10, 3), (3, 10), (4096, 384), (1, 384), (384, 1), (7, 7)] {
            let w = AxisWeights::new(i, o);
            for j in 0..o as usize {
                let (_, k) = w.taps(j);
                let sum: i64 = k.iter().map(|&v| i64::from(v)).sum();
                assert!((sum - (1 << PRECISION_BITS)).abs() <= k.len() as i64, "{i}->{o} #{j}: {sum}");
            }
        }
    }

    #[test]
    fn constant_image_stays_constant() {
        let img = RgbImage::from_raw(5, 4, [10u8, 200, 255].repeat(20)).unwrap();
        for (w, h) in [(1, 1), (13, 2), (384, 384), (3, 9)] {
            let out = resize_bicubic(&img, w, h).unwrap();
            assert!(out.pixels().chunks(3).all(|p| p == [10, 200, 255]), "{w}x{h}");
        }
    }
}
