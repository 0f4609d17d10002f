//! edgevl-vision: the image side of edgevl up to normalised tiles.
//!
//! * [`load`]: read an image file (JPEG, PNG, WebP, BMP, GIF first frame) with limits checked from
//!   the header before any pixel is decoded, apply the EXIF orientation, convert to RGB.
//! * [`resize`](mod@resize): Pillow-exact bicubic and Lanczos resampling (antialiased when shrinking).
//! * [`tiling`]: the dynamic-resolution strategies as pure functions returning a [`Plan`]: the
//!   three of spec.md section 2 and Idefics3's, at any tile size ([`TilingParams`]).
//! * [`tiles`]: the pixels of a plan — the tiles row-major, the global view first or last as the
//!   model family's [`Preprocess`] says — as one contiguous normalised `[n, 3, T, T]` f32 buffer
//!   ([`TileBatch`]), identical to transformers' PIL-backend processors for InternVL and SmolVLM.
//!
//! ```no_run
//! use edgevl_vision::{load_image, make_tiles, LoadLimits, Preprocess, Strategy, TilingParams};
//! # fn main() -> Result<(), edgevl_vision::VisionError> {
//! let image = load_image("photo.jpg".as_ref(), &LoadLimits::default())?;
//! // SmolVLM's own rule and pixels: 512-pixel tiles, Lanczos, global image last.
//! let plan = Strategy::Idefics3.plan(image.size(), &TilingParams::SMOLVLM)?;
//! let batch = make_tiles(&image, &plan, &Preprocess::SMOLVLM)?;
//! assert_eq!(batch.shape(), [plan.views() as usize, 3, 512, 512]);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod error;
mod gif;
pub mod load;
pub mod normalize;
mod orientation;
mod png;
pub mod resize;
pub mod rgb;
pub mod tiles;
pub mod tiling;

pub use error::VisionError;
pub use load::{decode_image, load_image, read_dimensions, LoadLimits, PILLOW_MAX_PIXELS};
pub use normalize::Normalization;
pub use resize::{resize, resize_with, Filter, PassOrder};
pub use rgb::RgbImage;
pub use tiles::{make_tiles, normalize_views, render_views, GlobalPosition, Preprocess, TileBatch};
pub use tiling::{
    plan_idefics3, plan_internvl, plan_llava_next, plan_relaxed, Fill, GlobalView, Grid, Offset, Plan,
    PlanFn, Size, Strategy, TilingParams, IDEFICS3_MAX_IMAGE_SIZE, MAX_CANVAS_PIXELS, MAX_TILES_LIMIT,
    MAX_TILE_SIZE, TILE_SIZE, TOKENS_PER_TILE,
};
