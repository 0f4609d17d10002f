//! Resampling with the semantics of Pillow 13's `Image.resize(size, filter)` for 8-bit RGB images
//! (libImaging/Resample.c), for the two filters the families use ([`Filter`]):
//!
//! * separable, one pass per axis that changes size. Pillow 13 runs the vertical pass first when the
//!   height shrinks by more than twice as many pixels as the width (`in_h - out_h > 2 * (in_w - out_w)`
//!   and `in_h > out_h`), otherwise the horizontal pass first (only over the rows the vertical pass
//!   reads). Pillow 12 and older always run the horizontal pass first: [`PassOrder`] selects;
//! * the kernel (bicubic a = -0.5 with support 2, or Lanczos: sinc windowed by sinc, support 3) is
//!   widened by the scale factor when shrinking (antialiasing);
//! * each output sample's weights are normalised to sum to 1, then converted to integers with
//!   `PRECISION_BITS` = 22 fractional bits (rounded half away from zero);
//! * each pass adds half an output unit, shifts right (floor) and clips to 0..255, so the
//!   intermediate image is 8-bit, exactly as Pillow's.

use crate::error::VisionError;
use crate::rgb::RgbImage;

/// Fractional bits of the fixed-point weights (Pillow: 32 - 8 - 2).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// A resampling filter, as Pillow's `Image.Resampling` member of the same name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Filter {
    /// `Image.BICUBIC`: the cubic convolution kernel with a = -0.5, support 2 (SigLIP, InternVL).
    Bicubic,
    /// `Image.LANCZOS`: `sinc(x) * sinc(x / 3)` on `-3 <= x < 3`, support 3 (Idefics3 / SmolVLM).
    Lanczos,
}

impl Filter {
    /// Half-width of the kernel at scale 1.
    fn support(self) -> f64 {
        match self {
            Filter::Bicubic => 2.0,
            Filter::Lanczos => 3.0,
        }
    }

    /// The kernel, as Pillow's `bicubic_filter` / `lanczos_filter`.
    fn weight(self, x: f64) -> f64 {
        match self {
            Filter::Bicubic => bicubic(x),
            Filter::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }

    /// Pillow's name of the filter: `BICUBIC`, `LANCZOS`.
    pub fn name(self) -> &'static str {
        match self {
            Filter::Bicubic => "BICUBIC",
            Filter::Lanczos => "LANCZOS",
        }
    }
}

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

/// Pillow's `sinc_filter`: `sin(pi x) / (pi x)`, 1 at 0.
fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        return 1.0;
    }
    let x = x * std::f64::consts::PI;
    x.sin() / x
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
    fn new(in_size: u32, out_size: u32, filter: Filter) -> Self {
        let scale = f64::from(in_size) / f64::from(out_size);
        let filterscale = scale.max(1.0);
        let support = filter.support() * filterscale;
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
                let w = filter.weight(((x + xmin) as f64 - center + 0.5) * ss);
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
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Half an output unit, the accumulators' start value.
///
/// The accumulators are 32-bit, as Pillow's `int`: a sum is at most 255 times the positive weights,
/// which add up to at most about 1.29 * 2^22 for both kernels, so it stays below 2^31 (the additions wrap,
/// as C's do, rather than panic).
const HALF: i32 = 1 << (PRECISION_BITS - 1);

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

/// Resizes `src` to `out_w x out_h` as Pillow 13's `Image.resize((out_w, out_h), filter)` (see the
/// module docs): bit-identical on 8-bit RGB. Resizing to the same size returns a copy, as Pillow
/// does. Sizes of zero or above [`RgbImage::MAX_PIXELS`] are refused.
pub fn resize(src: &RgbImage, out_w: u32, out_h: u32, filter: Filter) -> Result<RgbImage, VisionError> {
    resize_with(src, out_w, out_h, filter, PassOrder::default())
}

/// [`resize`] with an explicit [`PassOrder`] (results differ by a few levels at most, only when
/// both axes change size).
pub fn resize_with(
    src: &RgbImage,
    out_w: u32,
    out_h: u32,
    filter: Filter,
    order: PassOrder,
) -> Result<RgbImage, VisionError> {
    RgbImage::buffer_len(out_w, out_h)?;
    let (in_w, in_h) = (src.width(), src.height());
    if (in_w, in_h) == (out_w, out_h) {
        return Ok(src.clone());
    }
    let horiz = AxisWeights::new(in_w, out_w, filter);
    let vert = AxisWeights::new(in_h, out_h, filter);
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
            for (p, &kw) in row_in[start * 3..(start + k.len()) * 3].chunks_exact(3).zip(k) {
                s0 = s0.wrapping_add(i32::from(p[0]).wrapping_mul(kw));
                s1 = s1.wrapping_add(i32::from(p[1]).wrapping_mul(kw));
                s2 = s2.wrapping_add(i32::from(p[2]).wrapping_mul(kw));
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
    let mut acc = vec![0i32; stride];
    for (yy, row_out) in out.chunks_exact_mut(stride).enumerate() {
        let (start, k) = w.taps(yy);
        acc.fill(HALF);
        for (i, &kw) in k.iter().enumerate() {
            let y = start + i - row_base;
            let row = &src[y * stride..(y + 1) * stride];
            for (a, &p) in acc.iter_mut().zip(row) {
                *a = a.wrapping_add(i32::from(p).wrapping_mul(kw));
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
        for (i, o, f) in [(10, 3), (3, 10), (4096, 384), (1, 384), (384, 1), (7, 7)]
            .into_iter()
            .flat_map(|(i, o)| [(i, o, Filter::Bicubic), (i, o, Filter::Lanczos)])
        {
            let w = AxisWeights::new(i, o, f);
            for j in 0..o as usize {
                let (_, k) = w.taps(j);
                let sum: i64 = k.iter().map(|&v| i64::from(v)).sum();
                assert!((sum - (1 << PRECISION_BITS)).abs() <= k.len() as i64, "{i}->{o} {f:?} #{j}: {sum}");
            }
        }
    }

    #[test]
    fn constant_image_stays_constant() {
        let img = RgbImage::from_raw(5, 4, [10u8, 200, 255].repeat(20)).unwrap();
        for (w, h) in [(1, 1), (13, 2), (384, 384), (3, 9)] {
            for f in [Filter::Bicubic, Filter::Lanczos] {
                let out = resize(&img, w, h, f).unwrap();
                assert!(out.pixels().chunks(3).all(|p| p == [10, 200, 255]), "{w}x{h} {f:?}");
            }
        }
    }
}
