//! What goes into the decoder, as runs of token ids or blocks of ready embeddings, and the
//! per-position record of what the KV cache holds, so a new turn can reuse the longest cached
//! prefix.

use std::sync::Arc;

/// A run of decoder input.
///
/// Text arrives as [`Segment::Tokens`]. [`Segment::Embeddings`] carries rows produced outside
/// the LLM — the seam through which encoded images enter a session — and goes through the
/// decoder as `DecoderInput::Embeddings`.
#[derive(Clone, Debug)]
pub enum Segment {
    /// Token ids, embedded with the model's table.
    Tokens(Vec<u32>),
    /// Ready embeddings, one row per position.
    Embeddings(EmbeddingBlock),
}

/// Rows of embeddings `[n, n_embd]` (row-major) with a key identifying their content (for an
/// image: a hash of its pixels, tiling plan and projector), so that a cached prefix holding the
/// same block is recognised without comparing the values. A segment may take a run of the
/// block's rows (a family layout puts tokens between an image's tiles).
#[derive(Clone, Debug)]
pub struct EmbeddingBlock {
    /// Content key; equal keys must mean equal rows.
    pub key: u64,
    /// `n * n_embd` values.
    pub rows: Arc<[f32]>,
    /// The rows of `rows` this segment takes; `None` = all of them.
    pub range: Option<std::ops::Range<usize>>,
}

impl EmbeddingBlock {
    /// A block whose segment takes all its rows.
    pub fn whole(key: u64, rows: Arc<[f32]>) -> Self {
        EmbeddingBlock { key, rows, range: None }
    }

    /// Rows `first..first + n` of `self` (row indices of the whole block).
    fn rows_taken(&self, n_embd: usize) -> std::ops::Range<usize> {
        self.range.clone().unwrap_or(0..self.rows.len() / n_embd.max(1))
    }
}

/// The origin of one KV-cache position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cell {
    /// A token id.
    Token(u32),
    /// Row `row` of the embedding block with key `key`.
    Embedding {
        /// The block's content key.
        key: u64,
        /// Row within the block.
        row: usize,
    },
}

/// A slice of a segment small enough for one forward pass.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Piece<'a> {
    /// Token ids.
    Tokens(&'a [u32]),
    /// Embedding rows `first..first + data.len() / n_embd` of the block with `key`.
    Embeddings { key: u64, first: usize, data: &'a [f32] },
}

impl Piece<'_> {
    /// The cells this piece occupies, in order.
    pub(crate) fn cells(&self, n_embd: usize) -> Vec<Cell> {
        match *self {
            Piece::Tokens(t) => t.iter().map(|&id| Cell::Token(id)).collect(),
            Piece::Embeddings { key, first, data } => {
                (first..first + data.len() / n_embd).map(|row| Cell::Embedding { key, row }).collect()
            }
        }
    }
}

impl Segment {
    /// Positions this segment occupies (whole rows only; the decoder rejects a ragged block).
    pub fn n_positions(&self, n_embd: usize) -> usize {
        match self {
            Segment::Tokens(t) => t.len(),
            Segment::Embeddings(b) => b.rows_taken(n_embd).len(),
        }
    }

    /// The cells of this segment, in order.
    pub fn cells(&self, n_embd: usize) -> Vec<Cell> {
        self.piece(0, self.n_positions(n_embd), n_embd).cells(n_embd)
    }

    /// Positions `start..end` of this segment as one piece.
    pub(crate) fn piece(&self, start: usize, end: usize, n_embd: usize) -> Piece<'_> {
        match self {
            Segment::Tokens(t) => Piece::Tokens(&t[start..end]),
            Segment::Embeddings(b) => {
                let first = b.rows_taken(n_embd).start + start;
                let last = first + (end - start);
                Piece::Embeddings { key: b.key, first, data: &b.rows[first * n_embd..last * n_embd] }
            }
        }
    }
}

/// Split positions `from..` of `segments` into pieces of at most `chunk` positions; a piece
/// never spans two segments.
pub(crate) fn pieces(segments: &[Segment], from: usize, chunk: usize, n_embd: usize) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut seg_start = 0;
    for s in segments {
        let n = s.n_positions(n_embd);
        let seg_end = seg_start + n;
        let mut p = from.max(seg_start);
        while p < seg_end {
            let q = (p + chunk).min(seg_end);
            out.push(s.piece(p - seg_start, q - seg_start, n_embd));
            p = q;
        }
        seg_start = seg_end;
    }
    out
}

/// Length of the longest common prefix of two cell sequences.
pub(crate) fn common_prefix(a: &[Cell], b: &[Cell]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_respect_chunk_and_segment_bounds() {
        let segs = vec![
            Segment::Tokens((0..5).collect()),
            Segment::Embeddings(EmbeddingBlock::whole(9, vec![0.0; 3 * 2].into())),
            Segment::Tokens(vec![7, 8]),
        ];
        let cells: Vec<Cell> = pieces(&segs, 3, 2, 2).iter().flat_map(|p| p.cells(2)).collect();
        let all: Vec<Cell> = segs.iter().flat_map(|s| s.cells(2)).collect();
        assert_eq!(all.len(), 10);
        assert_eq!(cells, all[3..]);
        let sizes: Vec<usize> = pieces(&segs, 3, 2, 2).iter().map(|p| p.cells(2).len()).collect();
        assert_eq!(sizes, vec![2, 2, 1, 2]);
        assert_eq!(common_prefix(&all, &all[..4]), 4);
        assert_eq!(common_prefix(&all[1..], &all), 0);
    }
}
