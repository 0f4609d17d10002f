//! The pixels of a plan: the tiles row by row, with the global view (when the plan has one) first
//! or last as the model family's prompt expects ([`Preprocess`]).

use std::borrow::Cow;

use crate::error::VisionError;
use crate::normalize::{normalize_planar, Normalization};
use crate::resize::{resize, Filter};
use crate::rgb::RgbImage;
use crate::tiling::{GlobalView, Plan, MAX_CANVAS_PIXELS, MAX_TILES_LIMIT, MAX_TILE_SIZE};

/// Where the global view goes among a plan's views.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GlobalPosition {
    /// Before the tiles (this project, spec.md section 2b).
    First,
    /// After the tiles (InternVL's thumbnail, SmolVLM's global image).
    Last,
}

/// How a model family turns a plan into normalised pixels: its resampling filter, its processor's
/// mean and std, and where its prompt puts the global view.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Preprocess {
    /// The filter of every resize (the processor's `resample`).
    pub filter: Filter,
    /// Mean and std applied after rescaling by 1/255.
    pub norm: Normalization,
    /// Global view first or last.
    pub global_position: GlobalPosition,
    /// Whether the image's transparent colour ([`RgbImage::transparent_colour`]) is made white
    /// first, as the InternVL and SmolVLM processors' `convert_to_rgb` does.
    pub composite_transparent: bool,
}

impl Preprocess {
    /// This project (SigLIP's processor): bicubic, mean/std 0.5, global view first.
    pub const BLUELM: Preprocess = Preprocess {
        filter: Filter::Bicubic,
        norm: Normalization::SIGLIP,
        global_position: GlobalPosition::First,
        composite_transparent: false,
    };
    /// InternVL 2.5 / 3 (transformers' GotOcr2 processor): bicubic, ImageNet mean/std, thumbnail last.
    pub const INTERNVL: Preprocess = Preprocess {
        filter: Filter::Bicubic,
        norm: Normalization::IMAGENET,
        global_position: GlobalPosition::Last,
        composite_transparent: true,
    };
    /// SmolVLM (transformers' Idefics3 processor): Lanczos, mean/std 0.5, global image last.
    pub const SMOLVLM: Preprocess = Preprocess {
        filter: Filter::Lanczos,
        norm: Normalization::SIGLIP,
        global_position: GlobalPosition::Last,
        composite_transparent: true,
    };
}

impl Default for Preprocess {
    fn default() -> Self {
        Self::BLUELM
    }
}

/// Normalised views of one image as one contiguous `[n_tiles, 3, T, T]` f32 buffer, channels
/// first, in prompt order (`T` the plan's tile size).
#[derive(Clone, Debug, PartialEq)]
pub struct TileBatch {
    n_tiles: usize,
    tile_size: usize,
    data: Vec<f32>,
}

impl TileBatch {
    /// Number of views (global view included).
    pub fn n_tiles(&self) -> usize {
        self.n_tiles
    }

    /// Side `T` of each view, in pixels (0 for an empty batch).
    pub fn tile_size(&self) -> usize {
        self.tile_size
    }

    /// Values in one view: `3 * T * T`.
    pub fn tile_len(&self) -> usize {
        3 * self.tile_size * self.tile_size
    }

    /// The shape `[n_tiles, 3, T, T]`.
    pub fn shape(&self) -> [usize; 4] {
        [self.n_tiles, 3, self.tile_size, self.tile_size]
    }

    /// The whole buffer, `n_tiles * tile_len()` values.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// Consumes the batch, returning its buffer.
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    /// View `i`, in prompt order, as a `3 x T x T` slice.
    pub fn tile(&self, i: usize) -> Option<&[f32]> {
        let len = self.tile_len();
        let start = i.checked_mul(len)?;
        self.data.get(start..start.checked_add(len)?)
    }
}

/// Renders the 8-bit `T x T` views of `plan` for `image`, in prompt order.
///
/// The image's transparent colour is made white first when `pre.composite_transparent`; then it
/// is resized with `pre.filter` (to `plan.pre_resize` first when set, then to
/// `plan.resize`) and pasted at `plan.offset` on a black canvas, which is cut row by row into
/// tiles. The global view is the image ([`GlobalView::Image`]) or the canvas
/// ([`GlobalView::Canvas`]) resized to `T x T`, placed first or last as `pre.global_position` says.
pub fn render_views(image: &RgbImage, plan: &Plan, pre: &Preprocess) -> Result<Vec<RgbImage>, VisionError> {
    check_plan(image, plan)?;
    let composited =
        if pre.composite_transparent { image.composited_on_white() } else { Cow::Borrowed(image) };
    let image = composited.as_ref();
    let t = plan.tile_size;
    let source = match plan.pre_resize {
        Some(s) => Cow::Owned(resize(image, s.width, s.height, pre.filter)?),
        None => Cow::Borrowed(image),
    };
    let resized = resize(&source, plan.resize.width, plan.resize.height, pre.filter)?;
    drop(source);
    let canvas = if plan.resize == plan.canvas { resized } else { paste_on_black(&resized, plan)? };
    let global = match plan.global {
        GlobalView::None => None,
        GlobalView::Image => Some(resize(image, t, t, pre.filter)?),
        GlobalView::Canvas => Some(resize(&canvas, t, t, pre.filter)?),
    };
    let mut views = Vec::with_capacity(plan.views() as usize);
    let (first, last) = match pre.global_position {
        GlobalPosition::First => (global, None),
        GlobalPosition::Last => (None, global),
    };
    views.extend(first);
    for row in 0..plan.grid.rows {
        for col in 0..plan.grid.cols {
            views.push(crop(&canvas, col * t, row * t, t)?);
        }
    }
    views.extend(last);
    Ok(views)
}

/// Renders and normalises the views of `plan` into one [`TileBatch`].
pub fn make_tiles(image: &RgbImage, plan: &Plan, pre: &Preprocess) -> Result<TileBatch, VisionError> {
    let views = render_views(image, plan, pre)?;
    normalize_views(&views, &pre.norm)
}

/// Normalises rendered square views (from [`render_views`]) into one [`TileBatch`], in order; a
/// run of views normalised alone gives exactly the matching part of the whole batch. Views that
/// are not square or not all the same size are refused.
pub fn normalize_views(views: &[RgbImage], norm: &Normalization) -> Result<TileBatch, VisionError> {
    let side = views.first().map_or(0, |v| v.width());
    for (index, v) in views.iter().enumerate() {
        if v.width() != side || v.height() != side {
            return Err(VisionError::ViewSize {
                index,
                width: v.width(),
                height: v.height(),
                expected: side,
            });
        }
    }
    let tables = norm.tables();
    let tile_size = side as usize;
    let tile_len = 3 * tile_size * tile_size;
    let mut data = vec![0f32; views.len() * tile_len];
    for (view, out) in views.iter().zip(data.chunks_exact_mut(tile_len.max(1))) {
        normalize_planar(view.pixels(), &tables, out);
    }
    Ok(TileBatch { n_tiles: views.len(), tile_size, data })
}

fn check_plan(image: &RgbImage, plan: &Plan) -> Result<(), VisionError> {
    if image.size() != plan.image {
        return Err(VisionError::PlanMismatch {
            plan_w: plan.image.width,
            plan_h: plan.image.height,
            image_w: image.width(),
            image_h: image.height(),
        });
    }
    let t = plan.tile_size;
    let fits = |a: u32, b: u32, limit: u32| a.checked_add(b).is_some_and(|end| end <= limit);
    if t == 0
        || t > MAX_TILE_SIZE
        || plan.tiles() > MAX_TILES_LIMIT
        || plan.canvas.area() > MAX_CANVAS_PIXELS
        || Some(plan.canvas.width) != plan.grid.cols.checked_mul(t)
        || Some(plan.canvas.height) != plan.grid.rows.checked_mul(t)
        || !fits(plan.offset.x, plan.resize.width, plan.canvas.width)
        || !fits(plan.offset.y, plan.resize.height, plan.canvas.height)
    {
        return Err(VisionError::InvalidPlan(format!(
            "tile {t} grid {} canvas {} resize {} at ({}, {})",
            plan.grid, plan.canvas, plan.resize, plan.offset.x, plan.offset.y
        )));
    }
    Ok(())
}

/// The canvas of `plan`: black, with `resized` pasted at `plan.offset` (which [`check_plan`]
/// keeps inside).
fn paste_on_black(resized: &RgbImage, plan: &Plan) -> Result<RgbImage, VisionError> {
    let mut canvas = RgbImage::black(plan.canvas.width, plan.canvas.height)?.into_pixels();
    let stride = plan.canvas.width as usize * 3;
    let (x0, y0) = (plan.offset.x as usize * 3, plan.offset.y as usize);
    for (y, src) in resized.pixels().chunks_exact(resized.width() as usize * 3).enumerate() {
        let start = (y0 + y) * stride + x0;
        canvas[start..start + src.len()].copy_from_slice(src);
    }
    RgbImage::from_raw(plan.canvas.width, plan.canvas.height, canvas)
}

/// The `t x t` square of `src` whose top-left corner is (`x0`, `y0`); it must lie inside `src`.
fn crop(src: &RgbImage, x0: u32, y0: u32, t: u32) -> Result<RgbImage, VisionError> {
    let mut out = Vec::with_capacity(RgbImage::buffer_len(t, t)?);
    let (from, bytes) = (x0 as usize * 3, t as usize * 3);
    for y in y0..y0 + t {
        let row =
            src.row(y).ok_or_else(|| VisionError::InvalidPlan(format!("row {y} outside the canvas")))?;
        let part = row
            .get(from..from + bytes)
            .ok_or_else(|| VisionError::InvalidPlan(format!("column {x0} + {t} outside the canvas")))?;
        out.extend_from_slice(part);
    }
    RgbImage::from_raw(t, t, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiling::{Size, Strategy, TilingParams};

    fn gradient(w: u32, h: u32) -> RgbImage {
        let px = (0..w * h).flat_map(|i| [(i % w) as u8, (i / w) as u8, (i % 7) as u8]).collect();
        RgbImage::from_raw(w, h, px).unwrap()
    }

    #[test]
    fn global_view_first_or_last_is_the_same_views_rotated() {
        let image = gradient(300, 120);
        for (strategy, params) in
            [(Strategy::InternVl, TilingParams::INTERNVL), (Strategy::Idefics3, TilingParams::SMOLVLM)]
        {
            let plan = strategy.plan(image.size(), &params).unwrap();
            assert!(plan.global_view() && plan.tiles() > 1, "{strategy}");
            let first = render_views(
                &image,
                &plan,
                &Preprocess { global_position: GlobalPosition::First, ..Preprocess::SMOLVLM },
            )
            .unwrap();
            let mut last = render_views(&image, &plan, &Preprocess::SMOLVLM).unwrap();
            last.rotate_right(1);
            assert_eq!(first, last, "{strategy}");
            let batch = make_tiles(&image, &plan, &Preprocess::SMOLVLM).unwrap();
            let t = params.tile_size as usize;
            assert_eq!(batch.shape(), [plan.views() as usize, 3, t, t]);
            assert_eq!(batch.tile_len(), 3 * t * t);
        }
    }

    #[test]
    fn crafted_plans_and_mixed_views_are_refused() {
        let image = gradient(10, 10);
        let plan = Strategy::Relaxed.plan(image.size(), &TilingParams::default()).unwrap();
        let huge = Plan {
            grid: crate::Grid { cols: 256, rows: 256 },
            canvas: Size::new(256 * 384, 256 * 384),
            ..plan
        };
        assert!(matches!(render_views(&image, &huge, &Preprocess::BLUELM), Err(VisionError::InvalidPlan(_))));
        let zero = Plan { tile_size: 0, ..plan };
        assert!(matches!(render_views(&image, &zero, &Preprocess::BLUELM), Err(VisionError::InvalidPlan(_))));
        let views = [gradient(4, 4), gradient(4, 4), gradient(5, 4)];
        assert!(matches!(
            normalize_views(&views, &Normalization::SIGLIP),
            Err(VisionError::ViewSize { index: 2, width: 5, height: 4, expected: 4 })
        ));
        assert_eq!(normalize_views(&[], &Normalization::SIGLIP).unwrap().n_tiles(), 0);
    }
}
