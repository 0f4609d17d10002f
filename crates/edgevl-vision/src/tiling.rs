//! The three dynamic-resolution strategies of spec.md section 2, as pure functions.
//!
//! Each takes the image size (after EXIF rotation) and [`TilingParams`] and returns a [`Plan`]:
//! the grid of 384x384 tiles, the canvas, how the image is resized into it and where it is pasted,
//! and whether a global view is added. All three share the signature [`PlanFn`].

use std::fmt;
use std::str::FromStr;

use crate::error::VisionError;

/// Side of a square tile, in pixels (SigLIP so400m-patch14-384).
pub const TILE_SIZE: u32 = 384;
/// LLM tokens per tile (or global view) after the 2x2 merge: 14 x 14.
pub const TOKENS_PER_TILE: u64 = 196;
/// Largest accepted `max_tiles` budget.
pub const MAX_TILES_LIMIT: u32 = 256;
/// LLaVA-NeXT's grid pinpoints scaled to 384, as (w, h), in the published order.
const LLAVA_PINPOINTS: [(u32, u32); 5] = [(384, 768), (768, 384), (768, 768), (1152, 384), (384, 1152)];
/// InternVL 1.5's default `max_num`.
const INTERNVL_DEFAULT_MAX: u32 = 12;
/// BlueLM-V-3B's default tile budget.
const RELAXED_DEFAULT_MAX: u32 = 16;

/// A width and height in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Size {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

impl Size {
    /// A size.
    pub const fn new(width: u32, height: u32) -> Self {
        Self { width, height }
    }

    /// width * height.
    pub fn area(self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

impl FromStr for Size {
    type Err = String;

    /// Parses `WxH` (e.g. `640x480`); both sides at least 1.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("expected WIDTHxHEIGHT with positive integers, e.g. 640x480, got {s:?}");
        let (w, h) = s.trim().split_once(['x', 'X']).ok_or_else(bad)?;
        let w: u32 = w.trim().parse().map_err(|_| bad())?;
        let h: u32 = h.trim().parse().map_err(|_| bad())?;
        if w == 0 || h == 0 {
            return Err(bad());
        }
        Ok(Size::new(w, h))
    }
}

/// A grid of tiles: `cols` across, `rows` down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Grid {
    /// Tiles across.
    pub cols: u32,
    /// Tiles down.
    pub rows: u32,
}

impl fmt::Display for Grid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.cols, self.rows)
    }
}

/// Top-left position of the resized image on the canvas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Offset {
    /// Pixels from the left edge.
    pub x: u32,
    /// Pixels from the top edge.
    pub y: u32,
}

/// How the image fills the canvas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fill {
    /// Resized keeping the aspect ratio, centred on black (llava-next, relaxed).
    Pad,
    /// Stretched to the whole canvas (internvl).
    Stretch,
}

/// A dynamic-resolution strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// BlueLM-V-3B's relaxed aspect-ratio matching.
    Relaxed,
    /// LLaVA-NeXT's `select_best_resolution` + resize-and-pad.
    LlavaNext,
    /// InternVL 1.5's `dynamic_preprocess` (closest aspect ratio, stretched).
    InternVl,
}

impl Strategy {
    /// All strategies, in the order the CLI prints them.
    pub const ALL: [Strategy; 3] = [Strategy::Relaxed, Strategy::LlavaNext, Strategy::InternVl];

    /// The CLI / JSON name: `relaxed`, `llava-next`, `internvl`.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Relaxed => "relaxed",
            Strategy::LlavaNext => "llava-next",
            Strategy::InternVl => "internvl",
        }
    }

    /// The planning function of this strategy.
    pub fn plan_fn(self) -> PlanFn {
        match self {
            Strategy::Relaxed => plan_relaxed,
            Strategy::LlavaNext => plan_llava_next,
            Strategy::InternVl => plan_internvl,
        }
    }

    /// Plans `image` with this strategy.
    pub fn plan(self, image: Size, params: &TilingParams) -> Result<Plan, VisionError> {
        (self.plan_fn())(image, params)
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Strategy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Strategy::ALL
            .into_iter()
            .find(|st| st.name() == s)
            .ok_or_else(|| format!("unknown strategy {s:?}; expected relaxed, llava-next or internvl"))
    }
}

/// Parameters shared by all strategies.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TilingParams {
    /// Relaxed matching's tolerance on effective resolution (default 0.1); other strategies ignore it.
    pub alpha: f64,
    /// The tile budget. `None`: each strategy's published default (llava-next: its 5 pinpoints,
    /// internvl: 12, relaxed: 16). `Some(n)`: all three use every grid with at most `n` tiles.
    pub max_tiles: Option<u32>,
}

impl Default for TilingParams {
    fn default() -> Self {
        Self { alpha: 0.1, max_tiles: None }
    }
}

impl TilingParams {
    fn validate(&self) -> Result<(), VisionError> {
        if !self.alpha.is_finite() || self.alpha < 0.0 {
            return Err(VisionError::InvalidParam {
                name: "alpha",
                value: self.alpha.to_string(),
                reason: "must be a finite number >= 0",
            });
        }
        if let Some(n) = self.max_tiles {
            if n == 0 || n > MAX_TILES_LIMIT {
                return Err(VisionError::InvalidParam {
                    name: "max_tiles",
                    value: n.to_string(),
                    reason: "must be between 1 and 256",
                });
            }
        }
        Ok(())
    }
}

/// The outcome of a strategy for one image size. `Hash + Eq` so it can key a cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Plan {
    /// The strategy that made the plan.
    pub strategy: Strategy,
    /// The image size the plan is for (after EXIF rotation).
    pub image: Size,
    /// Tiles across and down.
    pub grid: Grid,
    /// `cols * 384` x `rows * 384`.
    pub canvas: Size,
    /// The size the image is resized to before being pasted on the canvas.
    pub resize: Size,
    /// Where the resized image is pasted (its top-left corner).
    pub offset: Offset,
    /// How the image fills the canvas.
    pub fill: Fill,
    /// Whether a 384x384 global view (the whole image stretched) precedes the tiles.
    pub global_view: bool,
}

impl Plan {
    /// Number of grid tiles, `cols * rows`.
    pub fn tiles(&self) -> u32 {
        self.grid.cols * self.grid.rows
    }

    /// Number of 384x384 views the encoder sees: tiles plus the global view.
    pub fn views(&self) -> u32 {
        self.tiles() + u32::from(self.global_view)
    }

    /// Image tokens in the LLM prompt: `views * 196`.
    pub fn image_tokens(&self) -> u64 {
        u64::from(self.views()) * TOKENS_PER_TILE
    }

    /// Canvas area divided by the image's area.
    pub fn area_enlargement(&self) -> f64 {
        self.canvas.area() as f64 / self.image.area() as f64
    }

    /// Horizontal and vertical scale factors of the resize (equal up to rounding for `Fill::Pad`).
    pub fn scale(&self) -> (f64, f64) {
        (
            f64::from(self.resize.width) / f64::from(self.image.width),
            f64::from(self.resize.height) / f64::from(self.image.height),
        )
    }
}

/// The common signature of the three strategies.
pub type PlanFn = fn(Size, &TilingParams) -> Result<Plan, VisionError>;

fn check_image(image: Size) -> Result<(), VisionError> {
    if image.width == 0 || image.height == 0 {
        return Err(VisionError::InvalidSize {
            width: image.width.into(),
            height: image.height.into(),
            reason: "width and height must be at least 1",
        });
    }
    Ok(())
}

/// Every grid with `1 <= cols*rows <= max_tiles`, ordered by `cols*rows`, then by `cols`.
fn grids_by_area(max_tiles: u32) -> Vec<Grid> {
    let mut out: Vec<Grid> = (1..=max_tiles)
        .flat_map(|cols| (1..=max_tiles / cols).map(move |rows| Grid { cols, rows }))
        .collect();
    out.sort_by_key(|g| (g.cols * g.rows, g.cols));
    out
}

fn canvas_of(grid: Grid) -> Size {
    Size::new(grid.cols * TILE_SIZE, grid.rows * TILE_SIZE)
}

/// LLaVA-NeXT's effective and wasted resolution of `image` fitted into `canvas`.
fn resolutions(image: Size, canvas: Size) -> (u64, u64) {
    let (w, h) = (f64::from(image.width), f64::from(image.height));
    let scale = (f64::from(canvas.width) / w).min(f64::from(canvas.height) / h);
    // Python's int() of a positive float truncates, as `as u64` does.
    let down = (w * scale) as u64 * (h * scale) as u64;
    let effective = down.min(image.area());
    (effective, canvas.area().saturating_sub(effective))
}

/// LLaVA-NeXT's `resize_and_pad_image` geometry: the resized size and the centred offset.
fn resize_and_pad(image: Size, canvas: Size) -> (Size, Offset) {
    let (w, h) = (f64::from(image.width), f64::from(image.height));
    let sw = f64::from(canvas.width) / w;
    let sh = f64::from(canvas.height) / h;
    let resized = if sw < sh {
        Size::new(canvas.width, ((h * sw).ceil() as u32).min(canvas.height))
    } else {
        Size::new(((w * sh).ceil() as u32).min(canvas.width), canvas.height)
    };
    let offset = Offset { x: (canvas.width - resized.width) / 2, y: (canvas.height - resized.height) / 2 };
    (resized, offset)
}

fn padded_plan(strategy: Strategy, image: Size, grid: Grid, global_view: bool) -> Plan {
    let canvas = canvas_of(grid);
    let (resize, offset) = resize_and_pad(image, canvas);
    Plan { strategy, image, grid, canvas, resize, offset, fill: Fill::Pad, global_view }
}

/// BlueLM-V-3B relaxed aspect-ratio matching (spec.md section 2, `relaxed`).
///
/// Candidates: every grid with at most `max_tiles` (default 16) tiles, by area then columns. The
/// first is the initial best; a later one replaces it when its effective resolution is larger by
/// more than `alpha` times the best's, or within `alpha` of it with less wasted resolution.
/// Resize keeping the aspect ratio and pad; a global view when there is more than one tile.
pub fn plan_relaxed(image: Size, params: &TilingParams) -> Result<Plan, VisionError> {
    check_image(image)?;
    params.validate()?;
    let candidates = grids_by_area(params.max_tiles.unwrap_or(RELAXED_DEFAULT_MAX));
    let mut best = candidates[0];
    let (mut re_max, mut rw_min) = resolutions(image, canvas_of(best));
    for &grid in &candidates[1..] {
        let (re, rw) = resolutions(image, canvas_of(grid));
        let diff = re as i128 - re_max as i128;
        let tol = params.alpha * re_max as f64;
        if diff as f64 > tol || ((diff.unsigned_abs() as f64) <= tol && rw < rw_min) {
            best = grid;
            re_max = re;
            rw_min = rw;
        }
    }
    Ok(padded_plan(Strategy::Relaxed, image, best, best.cols * best.rows > 1))
}

/// LLaVA-NeXT `select_best_resolution` (spec.md section 2, `llava-next`).
///
/// Candidates: the five pinpoints, or with `max_tiles` every grid of at most that many tiles (in
/// relaxed's order). Strictly larger effective resolution wins, ties go to less waste. Resize
/// keeping the aspect ratio and pad; the global view is always added.
pub fn plan_llava_next(image: Size, params: &TilingParams) -> Result<Plan, VisionError> {
    check_image(image)?;
    params.validate()?;
    let candidates: Vec<Grid> = match params.max_tiles {
        Some(n) => grids_by_area(n),
        None => {
            LLAVA_PINPOINTS.iter().map(|&(w, h)| Grid { cols: w / TILE_SIZE, rows: h / TILE_SIZE }).collect()
        }
    };
    let mut best = candidates[0];
    let mut re_max = 0u64;
    let mut rw_min = u64::MAX;
    for &grid in &candidates {
        let (re, rw) = resolutions(image, canvas_of(grid));
        if re > re_max || (re == re_max && rw < rw_min) {
            best = grid;
            re_max = re;
            rw_min = rw;
        }
    }
    Ok(padded_plan(Strategy::LlavaNext, image, best, true))
}

/// InternVL 1.5 `dynamic_preprocess` (spec.md section 2, `internvl`).
///
/// Candidates: grids with at most `max_tiles` (default 12) tiles, by area then columns; the one
/// whose cols/rows is closest to W/H wins; on an exact tie the later one wins when the image area
/// exceeds half the candidate's canvas area. The image is stretched to the canvas; a thumbnail
/// (global view) is added when there is more than one tile.
pub fn plan_internvl(image: Size, params: &TilingParams) -> Result<Plan, VisionError> {
    check_image(image)?;
    params.validate()?;
    let candidates = grids_by_area(params.max_tiles.unwrap_or(INTERNVL_DEFAULT_MAX));
    let aspect = f64::from(image.width) / f64::from(image.height);
    let area = image.area() as f64;
    let tile_area = f64::from(TILE_SIZE) * f64::from(TILE_SIZE);
    let mut best = Grid { cols: 1, rows: 1 };
    let mut best_diff = f64::INFINITY;
    for &grid in &candidates {
        let diff = (aspect - f64::from(grid.cols) / f64::from(grid.rows)).abs();
        if diff < best_diff {
            best_diff = diff;
            best = grid;
        } else if diff == best_diff && area > 0.5 * tile_area * f64::from(grid.cols * grid.rows) {
            best = grid;
        }
    }
    let canvas = canvas_of(best);
    Ok(Plan {
        strategy: Strategy::InternVl,
        image,
        grid: best,
        canvas,
        resize: canvas,
        offset: Offset::default(),
        fill: Fill::Stretch,
        global_view: best.cols * best.rows != 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidate_order_is_by_area_then_cols() {
        let g: Vec<(u32, u32)> = grids_by_area(4).iter().map(|g| (g.cols, g.rows)).collect();
        assert_eq!(g, [(1, 1), (1, 2), (2, 1), (1, 3), (3, 1), (1, 4), (2, 2), (4, 1)]);
    }

    #[test]
    fn rejects_bad_inputs() {
        for f in Strategy::ALL.map(Strategy::plan_fn) {
            assert!(f(Size::new(0, 10), &TilingParams::default()).is_err());
            let p = TilingParams { max_tiles: Some(0), ..Default::default() };
            assert!(f(Size::new(10, 10), &p).is_err());
            let p = TilingParams { alpha: f64::NAN, ..Default::default() };
            assert!(f(Size::new(10, 10), &p).is_err());
        }
    }

    #[test]
    fn parses_sizes_and_strategies() {
        assert_eq!("640x480".parse::<Size>(), Ok(Size::new(640, 480)));
        assert!("640x0".parse::<Size>().is_err());
        assert!("640".parse::<Size>().is_err());
        for s in Strategy::ALL {
            assert_eq!(s.name().parse::<Strategy>(), Ok(s));
        }
        assert!("llava".parse::<Strategy>().is_err());
    }
}
