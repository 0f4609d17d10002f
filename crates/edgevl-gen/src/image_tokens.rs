//! Image tokens of the vocabularies: each vision family's (see [`family_image_tokens`]), and
//! the ones llama.cpp's `mtmd` looks up in the LLM's vocabulary for the `lfm2` projector
//! (`tools/mtmd/mtmd.cpp`): an image is wrapped in `<|image_start|>` ... `<|image_end|>`; a tiled
//! image puts `<|img_row_R_col_C|>` (1-based) before each tile and `<|img_thumbnail|>` before
//! the global view.

use edgevl_arch::family::{idefics3_row_col_token, PromptLayout, VisionFamily};

/// Largest grid side whose `<row_R_col_C>` tokens SmolVLM's vocabulary holds (6 x 6).
pub const IDEFICS3_MAX_GRID_SIDE: u32 = 6;

/// The image tokens of a vision family's LLM vocabulary: InternVL's `<img>`, `</img>`,
/// `<IMG_CONTEXT>`; SmolVLM's `<fake_token_around_image>`, `<image>`, `<global-img>` and
/// `<row_R_col_C>` for R, C in 1..=6; none for this project's layout (embeddings only).
pub fn family_image_tokens(family: VisionFamily) -> Vec<String> {
    match family.prompt() {
        PromptLayout::EmbeddingsOnly => Vec::new(),
        PromptLayout::InternVl { start, context, end, .. } => vec![start.into(), end.into(), context.into()],
        PromptLayout::Idefics3 { fake, image, global, .. } => {
            let mut out: Vec<String> = vec![fake.into(), image.into(), global.into()];
            for r in 1..=IDEFICS3_MAX_GRID_SIDE {
                out.extend((1..=IDEFICS3_MAX_GRID_SIDE).map(|c| idefics3_row_col_token(r, c)));
            }
            out
        }
    }
}

/// Opens an image.
pub const IMAGE_START: &str = "<|image_start|>";
/// Closes an image.
pub const IMAGE_END: &str = "<|image_end|>";
/// Precedes the global view of a tiled image.
pub const IMAGE_THUMBNAIL: &str = "<|img_thumbnail|>";

/// Most tiles a grid of any tiling planner has by default: edgevl's relaxed strategy allows 16
/// (spec section 2), InternVL's 12 and llama.cpp's lfm2 slicer 10.
pub const MAX_GRID_TILES: usize = 16;

/// The marker of the tile at 1-based row `row` and column `col`.
pub fn tile_token(row: usize, col: usize) -> String {
    format!("<|img_row_{row}_col_{col}|>")
}

/// Every lfm2 image token for grids of at most `max_tiles` tiles: the three fixed ones, then
/// `<|img_row_R_col_C|>` for every `R * C <= max_tiles`, rows outer.
pub fn lfm2_image_tokens(max_tiles: usize) -> Vec<String> {
    let mut out = vec![IMAGE_START.to_string(), IMAGE_END.to_string(), IMAGE_THUMBNAIL.to_string()];
    for row in 1..=max_tiles {
        out.extend((1..=max_tiles / row).map(|col| tile_token(row, col)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_every_grid_up_to_the_budget_once() {
        let toks = lfm2_image_tokens(MAX_GRID_TILES);
        // sum over rows r of floor(16 / r) = 50 grid cells, plus the three fixed tokens.
        assert_eq!(toks.len(), 53);
        let set: std::collections::HashSet<_> = toks.iter().collect();
        assert_eq!(set.len(), toks.len());
        for (r, c) in [(1, 1), (1, 16), (16, 1), (4, 4), (2, 8), (3, 5)] {
            assert!(set.contains(&tile_token(r, c)), "{r}x{c}");
        }
        assert!(!set.contains(&tile_token(3, 6)));
        assert_eq!(tile_token(2, 3), "<|img_row_2_col_3|>");
    }
}
