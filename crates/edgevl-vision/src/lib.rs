//! edgevl-vision: the image side of edgevl up to normalised tiles.
//!
//! * [`load`]: read an image file (JPEG, PNG, WebP, BMP, GIF first frame) with limits checked from
//!   the header before any pixel is decoded, apply the EXIF orientation, convert to RGB.
//! * [`resize`](mod@resize): Pillow-exact bicubic and Lanczos resampling (antialiased when shrinking).
//! * [`tiling`]: the three dynamic-resolution strategies of spec.md section 2 as pure functions
//!   returning a [`Plan`].
//! * [`tiles`]: the pixels of a plan — global view first, then the tiles row-major — as one
//!   contiguous normalised `[n, 3, 384, 384]` f32 buffer ([`TileBatch`]).
//!
//! ```no_run
//! use edgevl_vision::{load_image, make_tiles, LoadLimits, Normalization, Strategy, TilingParams};
//! # fn main() -> Result<(), edgevl_vision::VisionError> {
//! let image = load_image("photo.jpg".as_ref(), &LoadLimits::default())?;
//! let plan = Strategy::Relaxed.plan(image.size(), &TilingParams::default())?;
//! let batch = make_tiles(&image, &plan, &Normalization::SIGLIP)?;
//! assert_eq!(batch.n_tiles(), plan.views() as usize);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod error;
pub mod load;
pub mod normalize;
pub mod resize;
pub mod rgb;
pub mod tiles;
pub mod tiling;

pub use error::VisionError;
pub use load::{decode_image, load_image, LoadLimits};
pub use normalize::Normalization;
pub use resize::{resize, resize_with, Filter, PassOrder};
pub use rgb::RgbImage;
pub use tiles::{make_tiles, normalize_views, render_views, TileBatch};
pub use tiling::{
    plan_internvl, plan_llava_next, plan_relaxed, Fill, Grid, Offset, Plan, PlanFn, Size, Strategy,
    TilingParams, MAX_TILES_LIMIT, TILE_SIZE, TOKENS_PER_TILE,
};
