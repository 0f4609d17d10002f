//! The greedy pair-merging loop shared by BPE and SentencePiece-style tokenization.
//!
//! The text starts as one symbol per character. Every adjacent pair that may merge goes into a
//! priority queue; the best pair (ties: leftmost) is merged, and the new symbol's pairs with
//! its neighbours are queued. Queue entries whose symbols changed since are skipped. This is
//! the loop of llama.cpp's `llm_tokenizer_bpe_session` and `llm_tokenizer_spm_session`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::Range;

/// One symbol: `text[start..start + len]`; `len == 0` once merged into its left neighbour.
#[derive(Debug, Clone, Copy)]
struct Symbol {
    prev: Option<usize>,
    next: Option<usize>,
    start: usize,
    len: usize,
}

/// Merges `text` greedily and returns the byte ranges of the final symbols, in order.
///
/// `priority(left, right, joined)` says whether two adjacent symbols may merge and how good
/// that is (higher is merged first).
pub(crate) fn merge<P: Ord>(
    text: &str,
    mut priority: impl FnMut(&str, &str, &str) -> Option<P>,
) -> Vec<Range<usize>> {
    let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
    for (i, (start, c)) in text.char_indices().enumerate() {
        let len = c.len_utf8();
        symbols.push(Symbol {
            prev: i.checked_sub(1),
            next: (start + len < text.len()).then_some(i + 1),
            start,
            len,
        });
    }
    // (priority, leftmost first, right index, size of the pair in bytes)
    let mut queue: BinaryHeap<(P, Reverse<usize>, usize, usize)> = BinaryHeap::new();
    let mut try_add =
        |queue: &mut BinaryHeap<_>, symbols: &[Symbol], left: Option<usize>, right: Option<usize>| {
            let (Some(l), Some(r)) = (left, right) else { return };
            let (ls, rs) = (symbols[l], symbols[r]);
            let joined = &text[ls.start..rs.start + rs.len];
            let (lt, rt) = joined.split_at(ls.len);
            if let Some(p) = priority(lt, rt, joined) {
                queue.push((p, Reverse(l), r, joined.len()));
            }
        };
    for i in 1..symbols.len() {
        try_add(&mut queue, &symbols, Some(i - 1), Some(i));
    }
    while let Some((_, Reverse(l), r, size)) = queue.pop() {
        let (ll, rl) = (symbols[l].len, symbols[r].len);
        // Skip pairs that changed since they were queued (llama.cpp compares the texts; as
        // symbols only grow, comparing the sizes is equivalent).
        if ll == 0 || rl == 0 || ll + rl != size {
            continue;
        }
        symbols[l].len += rl;
        symbols[r].len = 0;
        let rnext = symbols[r].next;
        symbols[l].next = rnext;
        if let Some(n) = rnext {
            symbols[n].prev = Some(l);
        }
        let lprev = symbols[l].prev;
        try_add(&mut queue, &symbols, lprev, Some(l));
        try_add(&mut queue, &symbols, Some(l), rnext);
    }
    symbols.iter().filter(|s| s.len > 0).map(|s| s.start..s.start + s.len).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_best_pairs_first_and_leftmost_on_ties() {
        // Every pair of equal characters merges, all with the same priority: leftmost wins.
        let ranges = merge("aaa", |l, r, _| (l == r).then_some(0));
        assert_eq!(ranges, [0..2, 2..3]);
        // "bc" beats "ab".
        let ranges = merge("abc", |_, _, j| match j {
            "ab" => Some(1),
            "bc" => Some(2),
            _ => None,
        });
        assert_eq!(ranges, [0..1, 1..3]);
        assert!(merge("", |_, _, _| Some(0)).is_empty());
    }
}
