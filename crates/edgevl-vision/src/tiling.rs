//! The dynamic-resolution strategies, as pure functions: the three of spec.md section 2
//! (relaxed, llava-next, internvl) and Idefics3's (SmolVLM).
//!
//! Each takes the image size (after EXIF rotation) and [`TilingParams`] and returns a [`Plan`]:
//! the grid of square tiles (`tile_size` a side: 384 for this project, 448 for InternVL, 512 for
//! SmolVLM), the canvas, how the image is resized into it and where it is pasted, and where the
//! global view, if any, comes from. All four share the signature [`PlanFn`].

use std::fmt;
use std::str::FromStr;

use crate::error::VisionError;

/// This project's tile side, in pixels (SigLIP so400m-patch14-384): [`TilingParams`]' default.
pub const TILE_SIZE: u32 = 384;
/// This project's LLM tokens per tile (or global view) after the 2x2 merge, 14 x 14:
/// [`TilingParams`]' default.
pub const TOKENS_PER_TILE: u64 = 196;
/// Largest accepted `max_tiles` budget, and the most tiles any plan may have.
pub const MAX_TILES_LIMIT: u32 = 256;
/// Largest accepted `tile_size`.
pub const MAX_TILE_SIZE: u32 = 4096;
/// Largest canvas a plan may use, in pixels (2^26, e.g. 256 tiles of 512 x 512): parameters
/// that could lead past it are refused.
pub const MAX_CANVAS_PIXELS: u64 = 1 << 26;
/// Idefics3's `MAX_IMAGE_SIZE`: after the longest-edge resize, no side exceeds 4096 pixels.
pub const IDEFICS3_MAX_IMAGE_SIZE: u32 = 4096;
/// LLaVA-NeXT's grid pinpoints in tiles, as (cols, rows), in the published order.
const LLAVA_PINPOINTS: [(u32, u32); 5] = [(1, 2), (2, 1), (2, 2), (3, 1), (1, 3)];
/// InternVL's default `max_num` / `max_patches`.
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
    /// Stretched to the whole canvas (internvl, idefics3).
    Stretch,
}

/// Where the global view (one extra tile showing the whole picture) comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GlobalView {
    /// No global view: the tiles only.
    None,
    /// The original image stretched to one tile (llava-next, relaxed, InternVL's thumbnail).
    Image,
    /// The canvas (the resized image, plus any padding) stretched to one tile: Idefics3's global
    /// image is the multiple-of-512 canvas squashed to 512, not the original.
    Canvas,
}

/// A dynamic-resolution strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// BlueLM-V-3B's relaxed aspect-ratio matching.
    Relaxed,
    /// LLaVA-NeXT's `select_best_resolution` + resize-and-pad.
    LlavaNext,
    /// InternVL's `dynamic_preprocess` = transformers' `get_optimal_tiled_canvas` (closest aspect
    /// ratio, stretched).
    InternVl,
    /// Idefics3's (SmolVLM) processor: longest edge, then multiples of the tile size, split.
    Idefics3,
}

impl Strategy {
    /// All strategies, in the order the CLI prints them.
    pub const ALL: [Strategy; 4] =
        [Strategy::Relaxed, Strategy::LlavaNext, Strategy::InternVl, Strategy::Idefics3];

    /// The CLI / JSON name: `relaxed`, `llava-next`, `internvl`, `idefics3`.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Relaxed => "relaxed",
            Strategy::LlavaNext => "llava-next",
            Strategy::InternVl => "internvl",
            Strategy::Idefics3 => "idefics3",
        }
    }

    /// The planning function of this strategy.
    pub fn plan_fn(self) -> PlanFn {
        match self {
            Strategy::Relaxed => plan_relaxed,
            Strategy::LlavaNext => plan_llava_next,
            Strategy::InternVl => plan_internvl,
            Strategy::Idefics3 => plan_idefics3,
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
        Strategy::ALL.into_iter().find(|st| st.name() == s).ok_or_else(|| {
            format!("unknown strategy {s:?}; expected relaxed, llava-next, internvl or idefics3")
        })
    }
}

/// Parameters of the strategies. The defaults are this project's (384-pixel tiles, 196 tokens a
/// view); a model family supplies its own tile size, tokens per view and limits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TilingParams {
    /// Relaxed matching's tolerance on effective resolution (default 0.1); other strategies ignore it.
    pub alpha: f64,
    /// The tile budget. `None`: each strategy's published default (llava-next: its 5 pinpoints,
    /// internvl: 12, relaxed: 16, idefics3: [`TilingParams::longest_edge`]). `Some(n)`: relaxed and
    /// llava-next consider every grid with at most `n` tiles, internvl uses `max_num = n`, idefics3
    /// resizes the longest edge to `tile_size * floor(sqrt(n))` (so at most `n` tiles).
    pub max_tiles: Option<u32>,
    /// Side of a square tile in pixels, 1..=[`MAX_TILE_SIZE`] (default [`TILE_SIZE`]).
    pub tile_size: u32,
    /// LLM tokens each view costs (default [`TOKENS_PER_TILE`]); only [`Plan::image_tokens`] uses it.
    pub tokens_per_view: u64,
    /// InternVL's `min_num` / `min_patches` (default 1): grids with fewer tiles are not candidates.
    /// Other strategies ignore it.
    pub min_tiles: u32,
    /// Idefics3's `size["longest_edge"]` (the first resize). `None`: `4 * tile_size`, the
    /// processor's default ratio (SmolVLM: 2048 at 512). Only idefics3 uses it, and only without
    /// `max_tiles`.
    pub longest_edge: Option<u32>,
    /// The largest grid side idefics3 may produce (the `<row_i_col_j>` tokens the tokenizer has);
    /// a longer longest edge is reduced to `tile_size * max_grid_side`. `None`: no limit.
    pub max_grid_side: Option<u32>,
}

impl Default for TilingParams {
    fn default() -> Self {
        Self::BLUELM
    }
}

impl TilingParams {
    /// This project's parameters: 384-pixel tiles, 196 tokens a view, alpha 0.1.
    pub const BLUELM: TilingParams = TilingParams {
        alpha: 0.1,
        max_tiles: None,
        tile_size: TILE_SIZE,
        tokens_per_view: TOKENS_PER_TILE,
        min_tiles: 1,
        longest_edge: None,
        max_grid_side: None,
    };

    /// InternVL 2.5 / 3's processor: 448-pixel tiles, 256 tokens a view (1024 patches after a
    /// 0.5 pixel shuffle), 1 to 12 tiles.
    pub const INTERNVL: TilingParams = TilingParams { tile_size: 448, tokens_per_view: 256, ..Self::BLUELM };

    /// SmolVLM-256M / 500M's processor: 512-pixel tiles, 64 tokens a view (1024 patches after a
    /// scale-4 pixel shuffle), longest edge 2048.
    pub const SMOLVLM: TilingParams =
        TilingParams { tile_size: 512, tokens_per_view: 64, longest_edge: Some(2048), ..Self::BLUELM };

    fn validate(&self) -> Result<(), VisionError> {
        let bad = |name, value: String, reason| Err(VisionError::InvalidParam { name, value, reason });
        if !self.alpha.is_finite() || self.alpha < 0.0 {
            return bad("alpha", self.alpha.to_string(), "must be a finite number >= 0");
        }
        if let Some(n) = self.max_tiles {
            if n == 0 || n > MAX_TILES_LIMIT {
                return bad("max_tiles", n.to_string(), "must be between 1 and 256");
            }
        }
        if self.tile_size == 0 || self.tile_size > MAX_TILE_SIZE {
            return bad("tile_size", self.tile_size.to_string(), "must be between 1 and 4096");
        }
        let tile_area = u64::from(self.tile_size).pow(2);
        let budget = self.max_tiles.unwrap_or(RELAXED_DEFAULT_MAX);
        if u64::from(budget) * tile_area > MAX_CANVAS_PIXELS {
            return bad(
                "tile_size",
                format!("{} with a budget of {budget} tiles", self.tile_size),
                "the largest canvas would exceed 2^26 pixels",
            );
        }
        if self.longest_edge == Some(0) {
            return bad("longest_edge", "0".into(), "must be at least 1");
        }
        if self.max_grid_side == Some(0) {
            return bad("max_grid_side", "0".into(), "must be at least 1");
        }
        Ok(())
    }
}

/// The outcome of a strategy for one image size. `Hash + Eq` so it can key a cache.
///
/// The pixels: the image is resized (to `pre_resize` first when set, then to `resize`), pasted at
/// `offset` on a black `canvas`, which is cut into `grid` tiles row by row; the global view is
/// made as `global` says. The order of the views in the prompt is the model family's
/// ([`crate::Preprocess`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Plan {
    /// The strategy that made the plan.
    pub strategy: Strategy,
    /// The image size the plan is for (after EXIF rotation).
    pub image: Size,
    /// Side of each tile (and of the global view), in pixels.
    pub tile_size: u32,
    /// LLM tokens each view costs.
    pub tokens_per_view: u64,
    /// Tiles across and down.
    pub grid: Grid,
    /// `cols * tile_size` x `rows * tile_size`.
    pub canvas: Size,
    /// A first resize before the one to `resize` (Idefics3 resizes to its longest edge first:
    /// two resamplings); `None` for one resize.
    pub pre_resize: Option<Size>,
    /// The size the image is resized to before being pasted on the canvas.
    pub resize: Size,
    /// Where the resized image is pasted (its top-left corner).
    pub offset: Offset,
    /// How the image fills the canvas.
    pub fill: Fill,
    /// Where the global view comes from, if there is one.
    pub global: GlobalView,
}

impl Plan {
    /// Number of grid tiles, `cols * rows`.
    pub fn tiles(&self) -> u32 {
        self.grid.cols.saturating_mul(self.grid.rows)
    }

    /// Whether there is a global view.
    pub fn global_view(&self) -> bool {
        self.global != GlobalView::None
    }

    /// Number of views the encoder sees: tiles plus the global view.
    pub fn views(&self) -> u32 {
        self.tiles().saturating_add(u32::from(self.global_view()))
    }

    /// Image tokens in the LLM prompt: `views * tokens_per_view` (without any wrapper tokens a
    /// family's prompt adds around them).
    pub fn image_tokens(&self) -> u64 {
        u64::from(self.views()).saturating_mul(self.tokens_per_view)
    }

    /// Canvas area divided by the image's area.
    pub fn area_enlargement(&self) -> f64 {
        self.canvas.area() as f64 / self.image.area() as f64
    }

    /// Horizontal and vertical scale factors from the image to `resize` (equal up to rounding for
    /// `Fill::Pad`).
    pub fn scale(&self) -> (f64, f64) {
        (
            f64::from(self.resize.width) / f64::from(self.image.width),
            f64::from(self.resize.height) / f64::from(self.image.height),
        )
    }
}

/// The common signature of the strategies.
pub type PlanFn = fn(Size, &TilingParams) -> Result<Plan, VisionError>;

/// Checks the image size and the parameters, returning the tile size.
fn check(image: Size, params: &TilingParams) -> Result<u32, VisionError> {
    if image.width == 0 || image.height == 0 {
        return Err(VisionError::InvalidSize {
            width: image.width.into(),
            height: image.height.into(),
            reason: "width and height must be at least 1",
        });
    }
    params.validate()?;
    Ok(params.tile_size)
}

/// Every grid with `min_tiles <= cols*rows <= max_tiles`, ordered by `cols*rows`, then by `cols`
/// (transformers' `get_all_supported_aspect_ratios`: a stable sort by area of the cols-major list).
fn grids_by_area(min_tiles: u32, max_tiles: u32) -> Vec<Grid> {
    let mut out: Vec<Grid> = (1..=max_tiles)
        .flat_map(|cols| (1..=max_tiles / cols).map(move |rows| Grid { cols, rows }))
        .filter(|g| g.cols * g.rows >= min_tiles)
        .collect();
    out.sort_by_key(|g| (g.cols * g.rows, g.cols));
    out
}

/// The canvas of `grid` (validated parameters keep it within [`MAX_CANVAS_PIXELS`]).
fn canvas_of(grid: Grid, tile: u32) -> Size {
    Size::new(grid.cols * tile, grid.rows * tile)
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
        Size::new(canvas.width, ((h * sw).ceil() as u32).clamp(1, canvas.height))
    } else {
        Size::new(((w * sh).ceil() as u32).clamp(1, canvas.width), canvas.height)
    };
    let offset = Offset { x: (canvas.width - resized.width) / 2, y: (canvas.height - resized.height) / 2 };
    (resized, offset)
}

fn padded_plan(
    strategy: Strategy,
    image: Size,
    params: &TilingParams,
    grid: Grid,
    global: GlobalView,
) -> Plan {
    let canvas = canvas_of(grid, params.tile_size);
    let (resize, offset) = resize_and_pad(image, canvas);
    Plan {
        strategy,
        image,
        tile_size: params.tile_size,
        tokens_per_view: params.tokens_per_view,
        grid,
        canvas,
        pre_resize: None,
        resize,
        offset,
        fill: Fill::Pad,
        global,
    }
}

/// A global view from the image when there is more than one tile.
fn thumbnail_if_tiled(grid: Grid) -> GlobalView {
    if grid.cols * grid.rows > 1 {
        GlobalView::Image
    } else {
        GlobalView::None
    }
}

/// BlueLM-V-3B relaxed aspect-ratio matching (spec.md section 2, `relaxed`).
///
/// Candidates: every grid with at most `max_tiles` (default 16) tiles, by area then columns. The
/// first is the initial best; a later one replaces it when its effective resolution is larger by
/// more than `alpha` times the best's, or within `alpha` of it with less wasted resolution.
/// Resize keeping the aspect ratio and pad; a global view when there is more than one tile.
pub fn plan_relaxed(image: Size, params: &TilingParams) -> Result<Plan, VisionError> {
    let tile = check(image, params)?;
    let candidates = grids_by_area(1, params.max_tiles.unwrap_or(RELAXED_DEFAULT_MAX));
    let mut best = candidates[0];
    let (mut re_max, mut rw_min) = resolutions(image, canvas_of(best, tile));
    for &grid in &candidates[1..] {
        let (re, rw) = resolutions(image, canvas_of(grid, tile));
        let diff = re as i128 - re_max as i128;
        let tol = params.alpha * re_max as f64;
        if diff as f64 > tol || ((diff.unsigned_abs() as f64) <= tol && rw < rw_min) {
            best = grid;
            re_max = re;
            rw_min = rw;
        }
    }
    Ok(padded_plan(Strategy::Relaxed, image, params, best, thumbnail_if_tiled(best)))
}

/// LLaVA-NeXT `select_best_resolution` (spec.md section 2, `llava-next`).
///
/// Candidates: the five pinpoints (1x2, 2x1, 2x2, 3x1, 1x3 tiles), or with `max_tiles` every grid
/// of at most that many tiles (in relaxed's order). Strictly larger effective resolution wins, ties
/// go to less waste. Resize keeping the aspect ratio and pad; the global view is always added.
pub fn plan_llava_next(image: Size, params: &TilingParams) -> Result<Plan, VisionError> {
    let tile = check(image, params)?;
    let candidates: Vec<Grid> = match params.max_tiles {
        Some(n) => grids_by_area(1, n),
        None => LLAVA_PINPOINTS.iter().map(|&(cols, rows)| Grid { cols, rows }).collect(),
    };
    let mut best = candidates[0];
    let mut re_max = 0u64;
    let mut rw_min = u64::MAX;
    for &grid in &candidates {
        let (re, rw) = resolutions(image, canvas_of(grid, tile));
        if re > re_max || (re == re_max && rw < rw_min) {
            best = grid;
            re_max = re;
            rw_min = rw;
        }
    }
    Ok(padded_plan(Strategy::LlavaNext, image, params, best, GlobalView::Image))
}

/// InternVL's `dynamic_preprocess`, as transformers' GotOcr2 image processor with
/// `crop_to_patches=True` (`get_optimal_tiled_canvas`; spec.md section 2, `internvl`).
///
/// Candidates: grids with `min_tiles` to `max_tiles` (default 12) tiles, by area then columns;
/// the one whose cols/rows is closest to W/H wins; on an exact tie the later one wins when the
/// image area exceeds half the candidate's canvas area. No candidate (`min_tiles > max_tiles`)
/// gives 1x1, as the processor does; `max_tiles == 1` is a plain resize to one tile. The image is
/// stretched to the canvas; a thumbnail (global view from the image) is added when there is
/// more than one tile.
pub fn plan_internvl(image: Size, params: &TilingParams) -> Result<Plan, VisionError> {
    let tile = check(image, params)?;
    let max_tiles = params.max_tiles.unwrap_or(INTERNVL_DEFAULT_MAX);
    let mut best = Grid { cols: 1, rows: 1 };
    if max_tiles > 1 {
        let aspect = f64::from(image.width) / f64::from(image.height);
        let area = image.area() as f64;
        let tile_area = f64::from(tile) * f64::from(tile);
        let mut best_diff = f64::INFINITY;
        for grid in grids_by_area(params.min_tiles, max_tiles) {
            let diff = (aspect - f64::from(grid.cols) / f64::from(grid.rows)).abs();
            if diff < best_diff {
                best_diff = diff;
                best = grid;
            } else if diff == best_diff && area > 0.5 * tile_area * f64::from(grid.cols * grid.rows) {
                best = grid;
            }
        }
    }
    let canvas = canvas_of(best, tile);
    Ok(Plan {
        strategy: Strategy::InternVl,
        image,
        tile_size: tile,
        tokens_per_view: params.tokens_per_view,
        grid: best,
        canvas,
        pre_resize: None,
        resize: canvas,
        offset: Offset::default(),
        fill: Fill::Stretch,
        global: thumbnail_if_tiled(best),
    })
}

/// Idefics3's `_resize_output_size_rescale_to_max_len` then
/// `_resize_output_size_scale_below_upper_bound` (4096): the longest edge becomes `longest`, the
/// other side keeps the aspect ratio (truncated, then +1 when odd), no side above 4096.
fn idefics3_longest_edge(image: Size, longest: u32) -> Size {
    let (w, h) = (f64::from(image.width), f64::from(image.height));
    let aspect = w / h;
    // transformers' "+1 when odd", never past the longest edge: with an odd longest edge (an odd
    // tile size) a square image would otherwise get a longer short side, one more row of tiles
    // than the budget allows (found by fuzzing: `max_tiles_bounds_idefics3_with_odd_tiles`).
    let even = |v: u32| if v & 1 == 1 { v.saturating_add(1).min(longest.max(v)) } else { v };
    // Python's int() of a positive float truncates, as `as u32` does (saturating above u32::MAX).
    let (mut w, mut h) = if image.width >= image.height {
        (longest, even((f64::from(longest) / aspect) as u32))
    } else {
        (even((f64::from(longest) * aspect) as u32), longest)
    };
    (w, h) = (w.max(1), h.max(1));
    let aspect = f64::from(w) / f64::from(h);
    let cap = IDEFICS3_MAX_IMAGE_SIZE;
    if w >= h && w > cap {
        (w, h) = (cap, (f64::from(cap) / aspect) as u32);
    } else if h > w && h > cap {
        (w, h) = ((f64::from(cap) * aspect) as u32, cap);
    }
    Size::new(w.max(1), h.max(1))
}

/// Idefics3's `resize_for_vision_encoder`: the longer side up to a multiple of `tile`, the other
/// side from the aspect ratio (truncated), then up to a multiple of `tile`. (Python's
/// `math.ceil(v / tile)` on these sizes equals the integer ceiling division.)
fn idefics3_canvas(resized: Size, tile: u32) -> Size {
    let (w, h) = (resized.width, resized.height);
    let aspect = f64::from(w) / f64::from(h);
    let up = |v: u32| v.div_ceil(tile) * tile;
    if w >= h {
        let cw = up(w);
        Size::new(cw, up((f64::from(cw) / aspect) as u32))
    } else {
        let ch = up(h);
        Size::new(up((f64::from(ch) * aspect) as u32), ch)
    }
}

/// Idefics3's image processor (SmolVLM), with `do_image_splitting`.
///
/// The image is resized so its longest edge is `longest_edge` (default `4 * tile_size`;
/// `tile_size * floor(sqrt(max_tiles))` with `max_tiles`; at most `tile_size * max_grid_side`),
/// the other side keeping the aspect ratio (+1 when odd, but never past the longest edge), no
/// side above 4096; then resized again
/// so both sides are multiples of `tile_size` (`pre_resize`, then `resize` = `canvas`: two
/// resamplings). If the canvas is larger than one tile, it is cut into tiles row by row and the
/// global view is the canvas squashed to one tile; otherwise the canvas is the only view.
pub fn plan_idefics3(image: Size, params: &TilingParams) -> Result<Plan, VisionError> {
    let tile = check(image, params)?;
    let mut longest = match params.max_tiles {
        Some(n) => tile * n.isqrt(),
        None => params.longest_edge.unwrap_or(4 * tile),
    };
    if let Some(side) = params.max_grid_side {
        longest = longest.min(tile.saturating_mul(side));
    }
    let pre = idefics3_longest_edge(image, longest);
    let canvas = idefics3_canvas(pre, tile);
    let grid = Grid { cols: canvas.width / tile, rows: canvas.height / tile };
    let refuse = |name, value: String, reason| Err(VisionError::InvalidParam { name, value, reason });
    if grid.cols == 0 || grid.rows == 0 || canvas.area() > MAX_CANVAS_PIXELS {
        return refuse("longest_edge", longest.to_string(), "gives an empty or too large canvas");
    }
    if u64::from(grid.cols) * u64::from(grid.rows) > u64::from(MAX_TILES_LIMIT) {
        return refuse("longest_edge", longest.to_string(), "gives more than 256 tiles");
    }
    if let Some(side) = params.max_grid_side {
        if grid.cols.max(grid.rows) > side {
            return refuse("max_grid_side", side.to_string(), "a grid side exceeds it at this tile size");
        }
    }
    let split = canvas.width > tile || canvas.height > tile;
    Ok(Plan {
        strategy: Strategy::Idefics3,
        image,
        tile_size: tile,
        tokens_per_view: params.tokens_per_view,
        grid,
        canvas,
        pre_resize: Some(pre),
        resize: canvas,
        offset: Offset::default(),
        fill: Fill::Stretch,
        global: if split { GlobalView::Canvas } else { GlobalView::None },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidate_order_is_by_area_then_cols() {
        let g: Vec<(u32, u32)> = grids_by_area(1, 4).iter().map(|g| (g.cols, g.rows)).collect();
        assert_eq!(g, [(1, 1), (1, 2), (2, 1), (1, 3), (3, 1), (1, 4), (2, 2), (4, 1)]);
    }

    #[test]
    fn rejects_bad_inputs() {
        let d = TilingParams::default();
        let bad = [
            TilingParams { max_tiles: Some(0), ..d },
            TilingParams { max_tiles: Some(257), ..d },
            TilingParams { alpha: f64::NAN, ..d },
            TilingParams { tile_size: 0, ..d },
            TilingParams { tile_size: MAX_TILE_SIZE + 1, ..d },
            // 256 tiles of 1024 x 1024 would be a 2^28-pixel canvas.
            TilingParams { tile_size: 1024, max_tiles: Some(256), ..d },
            TilingParams { longest_edge: Some(0), ..d },
            TilingParams { max_grid_side: Some(0), ..d },
        ];
        for f in Strategy::ALL.map(Strategy::plan_fn) {
            assert!(f(Size::new(0, 10), &d).is_err());
            for p in &bad {
                assert!(f(Size::new(10, 10), p).is_err(), "{p:?}");
            }
        }
        // Idefics3: a longest edge giving more than 256 tiles.
        let p = TilingParams { tile_size: 16, longest_edge: Some(4096), ..d };
        assert!(plan_idefics3(Size::new(1000, 1000), &p).is_err());
    }

    /// Found by fuzzing (`fuzz/regressions/tiling_plan/idefics3-odd-tile-square`): with an odd
    /// tile size the longest edge is odd, and "+1 when odd" made a square image's other side
    /// longer than it, a 16 x 16 grid for a budget of 255 tiles.
    #[test]
    fn max_tiles_bounds_idefics3_with_odd_tiles() {
        for (tile, n) in [(255, 255), (3, 4), (511, 9), (17, 2)] {
            let p = TilingParams { tile_size: tile, max_tiles: Some(n), ..TilingParams::SMOLVLM };
            for (w, h) in [(65535, 65535), (1000, 1000), (1000, 999), (999, 1000), (7, 7)] {
                let plan = plan_idefics3(Size::new(w, h), &p).unwrap();
                assert!(plan.tiles() <= n, "tile {tile}, {w}x{h}, N={n}: {}", plan.grid);
                let pre = plan.pre_resize.unwrap();
                assert!(pre.width.max(pre.height) == tile * n.isqrt(), "{pre}");
            }
        }
    }

    #[test]
    fn idefics3_max_tiles_is_the_longest_edge_of_floor_sqrt_tiles() {
        // `--max-tiles N` = longest edge 512 * floor(sqrt(N)); the grid side is limited by
        // max_grid_side, which lowers the longest edge to 512 * side.
        let sizes = [(1, 1), (640, 480), (4000, 3000), (3, 4097), (1000, 333), (2048, 2048)];
        for (w, h) in sizes {
            let image = Size::new(w, h);
            for n in [1, 2, 4, 5, 9, 15, 16, 100, 256] {
                let by_tiles = TilingParams { max_tiles: Some(n), ..TilingParams::SMOLVLM };
                let by_edge = TilingParams { longest_edge: Some(512 * n.isqrt()), ..TilingParams::SMOLVLM };
                let plan = plan_idefics3(image, &by_tiles).unwrap();
                assert_eq!(plan, plan_idefics3(image, &by_edge).unwrap(), "{image} N={n}");
                assert!(plan.tiles() <= n.max(1), "{image} N={n}: {}", plan.grid);
            }
            for side in 1..=6 {
                let limited = TilingParams { max_grid_side: Some(side), ..TilingParams::SMOLVLM };
                let by_edge = TilingParams { longest_edge: Some(512 * side.min(4)), ..TilingParams::SMOLVLM };
                let plan = plan_idefics3(image, &limited).unwrap();
                assert_eq!(plan, plan_idefics3(image, &by_edge).unwrap(), "{image} side {side}");
                assert!(plan.grid.cols.max(plan.grid.rows) <= side);
            }
        }
    }

    #[test]
    fn plans_record_tile_size_tokens_and_global_source() {
        let image = Size::new(1280, 720);
        let i = plan_internvl(image, &TilingParams::INTERNVL).unwrap();
        assert_eq!(
            (i.tile_size, i.canvas.width % 448, i.global, i.pre_resize),
            (448, 0, GlobalView::Image, None)
        );
        assert_eq!(i.image_tokens(), u64::from(i.views()) * 256);
        let s = plan_idefics3(image, &TilingParams::SMOLVLM).unwrap();
        assert_eq!(
            (s.tile_size, s.global, s.pre_resize),
            (512, GlobalView::Canvas, Some(Size::new(2048, 1152)))
        );
        assert_eq!(
            (s.grid, s.canvas, s.image_tokens()),
            (Grid { cols: 4, rows: 3 }, Size::new(2048, 1536), 13 * 64)
        );
        // One tile: one view, no global, for both families.
        let one =
            plan_idefics3(Size::new(300, 200), &TilingParams { max_tiles: Some(3), ..TilingParams::SMOLVLM });
        assert_eq!(one.unwrap().views(), 1);
        let one = plan_internvl(
            image,
            &TilingParams { max_tiles: Some(1), min_tiles: 4, ..TilingParams::INTERNVL },
        )
        .unwrap();
        assert_eq!((one.views(), one.global), (1, GlobalView::None));
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
