//! Images: decoding (every format, EXIF orientation, colour modes) with each family's tiling
//! plan and pixels, and the tiling strategies on arbitrary sizes and parameters.

use std::path::Path;

use edgevl_arch::family::VisionFamily;
use edgevl_runtime::{ImageConfig, ImageTiling, TileBudget, TilingChoice};
use edgevl_vision::{
    decode_image, make_tiles, Fill, LoadLimits, Plan, Size, Strategy, TilingParams, MAX_CANVAS_PIXELS,
};

use crate::{split_selector, FUZZ_MAX_PIXELS};

/// Largest canvas (and views x tile area) the image target renders; larger plans are planned
/// only.
const FUZZ_MAX_RENDER: u64 = 1 << 21;

const FAMILIES: [VisionFamily; 3] = [VisionFamily::EdgeVl, VisionFamily::InternVl, VisionFamily::Idefics3];

/// The tiling choices: the family's own rule, then each strategy.
fn choice(i: u8) -> TilingChoice {
    match i % 5 {
        0 => TilingChoice::Family,
        n => TilingChoice::Strategy(Strategy::ALL[usize::from(n - 1)]),
    }
}

/// Selector byte (family, tiling choice, budget; its top bit skips rendering, so half the runs
/// stay fast), then an image file: decode it, plan it with the chosen family preset and rule,
/// check the plan, and render and normalise its views when they are small.
pub fn image_decode(data: &[u8]) {
    let (sel, bytes) = split_selector(data);
    let limits = LoadLimits { max_pixels: FUZZ_MAX_PIXELS, ..LoadLimits::default() };
    let Ok(image) = decode_image(bytes, Path::new("fuzz"), &limits) else { return };
    let size = image.size();
    assert!(size.width > 0 && size.height > 0 && size.area() <= FUZZ_MAX_PIXELS, "{size:?} within limits");
    let family = FAMILIES[usize::from(sel % 3)];
    let cfg = ImageConfig { strategy: choice((sel & 0x7F) / 3), ..ImageConfig::default() };
    let tiling = ImageTiling::family_defaults(&cfg, family);
    let budget = match (sel & 0x7F) / 15 % 4 {
        0 => TileBudget::Default,
        1 => TileBudget::GlobalOnly,
        n => TileBudget::MaxTiles(u32::from(n)),
    };
    let Ok(plan) = tiling.plan(size, budget) else { return };
    check_plan(&plan, &tiling.params);
    let view_area = u64::from(plan.views()) * u64::from(plan.tile_size).pow(2);
    if sel & 0x80 != 0 || plan.canvas.area() > FUZZ_MAX_RENDER || view_area > FUZZ_MAX_RENDER {
        return;
    }
    let batch = make_tiles(&image, &plan, &tiling.preprocess).expect("a valid plan renders");
    let t = plan.tile_size as usize;
    assert_eq!(batch.shape(), [plan.views() as usize, 3, t, t], "one tile a view");
    assert!(batch.data().iter().all(|v| v.is_finite()), "normalised pixels are finite");
}

/// Reads little-endian integers from the input, zeros once it runs out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = N.min(self.0.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        out
    }
    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    /// Mostly small values, sometimes any: sizes and counts worth exploring.
    fn size(&mut self) -> u32 {
        match self.u8() % 4 {
            0 => self.u32(),
            _ => u32::from(self.u16()),
        }
    }
    fn opt(&mut self) -> Option<u32> {
        (self.u8() % 2 == 1).then(|| self.size())
    }
}

/// Arbitrary image size, strategy and parameters (tile size, budget, alpha, InternVL's minimum,
/// Idefics3's longest edge and grid side): a plan or a clear error, and every plan is whole
/// tiles covering a canvas within the limits, with the image inside it.
pub fn tiling_plan(data: &[u8]) {
    let mut b = Bytes(data);
    let strategy = Strategy::ALL[usize::from(b.u8() % 4)];
    let image = Size::new(b.size(), b.size());
    let params = TilingParams {
        alpha: f64::from(b.u16()) / 1000.0 - 1.0,
        max_tiles: b.opt(),
        tile_size: b.size(),
        tokens_per_view: u64::from(b.u32()),
        min_tiles: b.size(),
        longest_edge: b.opt(),
        max_grid_side: b.opt(),
    };
    let Ok(plan) = strategy.plan(image, &params) else { return };
    assert_eq!((plan.strategy, plan.image, plan.tile_size), (strategy, image, params.tile_size));
    check_plan(&plan, &params);
}

/// What every plan satisfies.
fn check_plan(plan: &Plan, params: &TilingParams) {
    let t = u64::from(plan.tile_size);
    let (cols, rows) = (u64::from(plan.grid.cols), u64::from(plan.grid.rows));
    assert!(cols >= 1 && rows >= 1, "{plan:?}: at least one tile");
    assert_eq!(u64::from(plan.canvas.width), cols * t, "{plan:?}: canvas of whole tiles");
    assert_eq!(u64::from(plan.canvas.height), rows * t, "{plan:?}: canvas of whole tiles");
    assert!(plan.canvas.area() <= MAX_CANVAS_PIXELS, "{plan:?}: canvas within the limit");
    if let Some(max) = params.max_tiles {
        assert!(plan.tiles() <= max.max(params.min_tiles), "{plan:?}: within the budget {max}");
    }
    assert!(plan.resize.width >= 1 && plan.resize.height >= 1, "{plan:?}: a non-empty resize");
    match plan.fill {
        Fill::Stretch => assert_eq!(plan.resize, plan.canvas, "{plan:?}: stretched to the canvas"),
        Fill::Pad => {
            let right = u64::from(plan.offset.x) + u64::from(plan.resize.width);
            let bottom = u64::from(plan.offset.y) + u64::from(plan.resize.height);
            assert!(right <= u64::from(plan.canvas.width), "{plan:?}: pasted inside the canvas");
            assert!(bottom <= u64::from(plan.canvas.height), "{plan:?}: pasted inside the canvas");
        }
    }
    assert_eq!(plan.image_tokens(), u64::from(plan.views()).saturating_mul(plan.tokens_per_view));
}
