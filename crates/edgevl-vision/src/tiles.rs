//! The pixels of a plan: the global view (when the plan has one), then the tiles row by row.

use crate::error::VisionError;
use crate::normalize::{normalize_planar, Normalization};
use crate::resize::{resize, Filter};
use crate::rgb::RgbImage;
use crate::tiling::{Plan, TILE_SIZE};

/// Normalised views of one image as one contiguous `[n_tiles, 3, 384, 384]` f32 buffer,
/// channels first, in prompt order: the global view first, then the tiles row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct TileBatch {
    n_tiles: usize,
    data: Vec<f32>,
}

impl TileBatch {
    /// Values in one view: 3 * 384 * 384.
    pub const TILE_LEN: usize = 3 * (TILE_SIZE as usize) * (TILE_SIZE as usize);

    /// Number of views (global view included).
    pub fn n_tiles(&self) -> usize {
        self.n_tiles
    }

    /// The shape `[n_tiles, 3, 384, 384]`.
    pub fn shape(&self) -> [usize; 4] {
        [self.n_tiles, 3, TILE_SIZE as usize, TILE_SIZE as usize]
    }

    /// The whole buffer, `n_tiles * TILE_LEN` values.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// Consumes the batch, returning its buffer.
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    /// View `i` (0 is the global view when the plan has one) as a `3 x 384 x 384` slice.
    pub fn tile(&self, i: usize) -> Option<&[f32]> {
        let start = i.checked_mul(Self::TILE_LEN)?;
        self.data.get(start..start.checked_add(Self::TILE_LEN)?)
    }
}

/// Renders the 8-bit 384x384 views of `plan` for `image`, in prompt order (global first).
///
/// The global view is the whole image stretched to 384x384 (bicubic). The tiles are cut row by
/// row from the canvas, onto which the image was resized (bicubic, to `plan.resize`) and pasted
/// at `plan.offset` over black.
pub fn render_views(image: &RgbImage, plan: &Plan) -> Result<Vec<RgbImage>, VisionError> {
    check_plan(image, plan)?;
    let mut views = Vec::with_capacity(plan.views() as usize);
    if plan.global_view {
        views.push(resize(image, TILE_SIZE, TILE_SIZE, Filter::Bicubic)?);
    }
    let resized = resize(image, plan.resize.width, plan.resize.height, Filter::Bicubic)?;
    for row in 0..plan.grid.rows {
        for col in 0..plan.grid.cols {
            views.push(cut_tile(&resized, plan, col * TILE_SIZE, row * TILE_SIZE)?);
        }
    }
    Ok(views)
}

/// Renders and normalises the views of `plan` into one [`TileBatch`].
pub fn make_tiles(image: &RgbImage, plan: &Plan, norm: &Normalization) -> Result<TileBatch, VisionError> {
    let views = render_views(image, plan)?;
    Ok(normalize_views(&views, norm))
}

/// Normalises rendered 384x384 views (from [`render_views`]) into one [`TileBatch`], in order;
/// a run of views normalised alone gives exactly the matching part of the whole batch.
///
/// # Panics
/// If a view is not 384x384.
pub fn normalize_views(views: &[RgbImage], norm: &Normalization) -> TileBatch {
    let tables = norm.tables();
    let n_tiles = views.len();
    let mut data = vec![0f32; n_tiles * TileBatch::TILE_LEN];
    for (view, out) in views.iter().zip(data.chunks_exact_mut(TileBatch::TILE_LEN)) {
        assert_eq!(
            (view.width(), view.height()),
            (TILE_SIZE, TILE_SIZE),
            "normalize_views: not a 384x384 view"
        );
        normalize_planar(view.pixels(), &tables, out);
    }
    TileBatch { n_tiles, data }
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
    let fits = |a: u32, b: u32, limit: u32| a.checked_add(b).is_some_and(|end| end <= limit);
    if plan.canvas.width != plan.grid.cols.saturating_mul(TILE_SIZE)
        || plan.canvas.height != plan.grid.rows.saturating_mul(TILE_SIZE)
        || !fits(plan.offset.x, plan.resize.width, plan.canvas.width)
        || !fits(plan.offset.y, plan.resize.height, plan.canvas.height)
    {
        return Err(VisionError::InvalidPlan(format!(
            "grid {} canvas {} resize {} at ({}, {})",
            plan.grid, plan.canvas, plan.resize, plan.offset.x, plan.offset.y
        )));
    }
    Ok(())
}

/// The 384x384 canvas region at (`x0`, `y0`): the resized image where it lies, black elsewhere.
fn cut_tile(resized: &RgbImage, plan: &Plan, x0: u32, y0: u32) -> Result<RgbImage, VisionError> {
    let mut tile = RgbImage::black(TILE_SIZE, TILE_SIZE)?.into_pixels();
    let stride = TILE_SIZE as usize * 3;
    // Columns of the tile covered by the image, in tile and resized coordinates.
    let img_x0 = plan.offset.x;
    let img_x1 = plan.offset.x + plan.resize.width;
    let cx0 = x0.max(img_x0);
    let cx1 = (x0 + TILE_SIZE).min(img_x1);
    if cx0 < cx1 {
        let bytes = (cx1 - cx0) as usize * 3;
        let dst_x = (cx0 - x0) as usize * 3;
        let src_x = (cx0 - img_x0) as usize * 3;
        for ty in 0..TILE_SIZE {
            let cy = y0 + ty;
            let Some(ry) = cy.checked_sub(plan.offset.y) else {
                continue;
            };
            let Some(src) = resized.row(ry) else {
                continue;
            };
            let dst = ty as usize * stride + dst_x;
            tile[dst..dst + bytes].copy_from_slice(&src[src_x..src_x + bytes]);
        }
    }
    RgbImage::from_raw(TILE_SIZE, TILE_SIZE, tile)
}
