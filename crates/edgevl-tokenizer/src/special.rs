//! Splitting text around special tokens before tokenization (llama.cpp's
//! `tokenizer_st_partition`).

use std::ops::Range;

use crate::vocab::{attr, Vocab};

/// A piece of the input: raw text (a byte range of it) or an already-known token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fragment {
    /// Text still to be tokenized.
    Text(Range<usize>),
    /// A special token found in the text.
    Token(u32),
}

/// Splits `text` at every occurrence of a special token, longest tokens first.
///
/// User-defined tokens are always matched; control and unknown tokens only when
/// `parse_special` is set.
pub(crate) fn partition(text: &str, vocab: &Vocab, parse_special: bool) -> Vec<Fragment> {
    if text.is_empty() {
        return Vec::new();
    }
    let mut frags = vec![Fragment::Text(0..text.len())];
    for &id in &vocab.special_cache {
        if !parse_special && vocab.attr(id) & (attr::CONTROL | attr::UNKNOWN) != 0 {
            continue;
        }
        let needle = vocab.text(id);
        if needle.is_empty() {
            continue;
        }
        let mut next = Vec::with_capacity(frags.len());
        for frag in frags {
            let Fragment::Text(range) = frag else {
                next.push(frag);
                continue;
            };
            let mut start = range.start;
            while let Some(found) = text[start..range.end].find(needle) {
                let at = start + found;
                if at > start {
                    next.push(Fragment::Text(start..at));
                }
                next.push(Fragment::Token(id));
                start = at + needle.len();
            }
            if start < range.end {
                next.push(Fragment::Text(start..range.end));
            }
        }
        frags = next;
    }
    frags
}
