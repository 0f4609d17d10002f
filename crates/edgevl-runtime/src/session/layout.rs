//! From a rendered conversation to decoder input, for each family's prompt layout (spec 2b, 2c).
//!
//! This project's layout puts an image's embeddings at its marker with nothing around them.
//! InternVL and SmolVLM wrap them in tokens: the placeholder the chat template wrote for an image
//! is replaced by the family's expansion (InternVL `<img>` + `<IMG_CONTEXT>` x rows + `</img>`;
//! SmolVLM per tile `<fake_token_around_image><row_R_col_C>` + `<image>` x rows, ...), the whole
//! text is tokenised at once (as the processors do), and each row token's position takes the next
//! embedding row.

use crate::segment::{EmbeddingBlock, Segment};
use crate::RuntimeError;
use edgevl_arch::family::{idefics3_row_col_token, PromptLayout};
use edgevl_tokenizer::Tokenizer;
use edgevl_vision::Plan;
use std::sync::Arc;

/// An image as the prompt builder needs it: its embedding rows and its plan.
pub(crate) struct ImageRows<'a> {
    /// Content key of the rows.
    pub key: u64,
    /// `[views * tokens_per_view, n_embd]`, in the family's view order.
    pub rows: Arc<[f32]>,
    /// The tiling plan the rows were computed for.
    pub plan: &'a Plan,
}

/// The text an image's placeholder becomes in `layout`, with `tokens_per_view` row tokens per
/// view (`None` for the embeddings-only layout, which has no text).
pub(crate) fn expansion(layout: PromptLayout, plan: &Plan, tokens_per_view: usize) -> Option<String> {
    match layout {
        PromptLayout::EmbeddingsOnly => None,
        PromptLayout::InternVl { start, context, end, .. } => {
            Some(format!("{start}{}{end}", context.repeat(tokens_per_view * plan.views() as usize)))
        }
        PromptLayout::Idefics3 { fake, image, global, .. } => {
            let rows = image.repeat(tokens_per_view);
            let global_form = format!("{fake}{global}{rows}{fake}");
            if !plan.global_view() {
                return Some(global_form);
            }
            let mut text = String::new();
            for r in 0..plan.grid.rows {
                for c in 0..plan.grid.cols {
                    text.push_str(fake);
                    text.push_str(&idefics3_row_col_token(r + 1, c + 1));
                    text.push_str(&rows);
                }
                text.push('\n');
            }
            text.push('\n');
            text.push_str(&global_form);
            Some(text)
        }
    }
}

/// Decoder input of `text`, in which each image is marked by the layout's placeholder, laid out
/// as `layout` wants: the placeholders replaced by the images' expansions, the whole text tokenised
/// (BOS in front when `bos`), and every position holding the layout's row token given the next
/// embedding row of its image.
pub(crate) fn wrapped_segments(
    tokenizer: &Tokenizer,
    layout: PromptLayout,
    text: &str,
    bos: bool,
    images: &[ImageRows<'_>],
    tokens_per_view: usize,
    n_embd: usize,
) -> Result<Vec<Segment>, RuntimeError> {
    let (Some(row_text), Some(placeholder)) = (layout.row_token(), layout.placeholder()) else {
        // The model and the mmproj do not go together: a setting, not the caller's input.
        return Err(RuntimeError::BadSetting("this layout puts no tokens around images".into()));
    };
    let row_id = tokenizer.token_id(row_text).ok_or_else(|| {
        RuntimeError::BadSetting(format!(
            "the LLM's vocabulary has no {row_text} token; pair the mmproj with the LLM it was made for"
        ))
    })?;
    let parts: Vec<&str> = text.split(placeholder).collect();
    if parts.len() - 1 != images.len() {
        return Err(RuntimeError::BadInput(format!(
            "the prompt has {} image placeholder(s) {placeholder} but {} image(s)",
            parts.len() - 1,
            images.len()
        )));
    }
    let mut expanded = String::from(parts[0]);
    for (part, image) in parts[1..].iter().zip(images) {
        expanded.push_str(&expansion(layout, image.plan, tokens_per_view).unwrap_or_default());
        expanded.push_str(part);
    }
    let ids = tokenizer.encode(&expanded, bos, true);
    let mut segments = Vec::new();
    let mut text_run: Vec<u32> = Vec::new();
    let mut images = images.iter();
    let mut current: Option<(&ImageRows<'_>, usize)> = None;
    let mut i = 0;
    while i < ids.len() {
        if ids[i] != row_id {
            text_run.push(ids[i]);
            i += 1;
            continue;
        }
        let run = ids[i..].iter().take_while(|&&id| id == row_id).count();
        if !text_run.is_empty() {
            segments.push(Segment::Tokens(std::mem::take(&mut text_run)));
        }
        let mut left = run;
        while left > 0 {
            let (image, used) = match current.take() {
                Some(c) => c,
                None => (images.next().ok_or_else(|| too_many_rows(row_text))?, 0),
            };
            let n_rows = image.rows.len() / n_embd.max(1);
            let take = left.min(n_rows - used);
            segments.push(Segment::Embeddings(EmbeddingBlock {
                key: image.key,
                rows: image.rows.clone(),
                range: Some(used..used + take),
            }));
            left -= take;
            if used + take < n_rows {
                current = Some((image, used + take));
            }
        }
        i += run;
    }
    if current.is_some() || images.next().is_some() {
        return Err(RuntimeError::BadInput(format!(
            "the tokenised prompt has fewer {row_text} tokens than the images have embedding rows"
        )));
    }
    if !text_run.is_empty() {
        segments.push(Segment::Tokens(text_run));
    }
    Ok(segments)
}

/// The largest `s` such that the vocabulary holds Idefics3's `<row_r_col_c>` tokens for every
/// `r, c <= s` (at least 1: an image that is not split needs none).
pub(crate) fn row_col_grid_side(tokenizer: &Tokenizer) -> u32 {
    const MAX_SIDE: u32 = 64;
    let has_side = |s: u32| {
        (1..=s).all(|i| {
            tokenizer.token_id(&idefics3_row_col_token(i, s)).is_some()
                && tokenizer.token_id(&idefics3_row_col_token(s, i)).is_some()
        })
    };
    (2..=MAX_SIDE).take_while(|&s| has_side(s)).last().unwrap_or(1)
}

fn too_many_rows(row_text: &str) -> RuntimeError {
    RuntimeError::BadInput(format!(
        "the tokenised prompt has more {row_text} tokens than the images have embedding rows"
    ))
}
