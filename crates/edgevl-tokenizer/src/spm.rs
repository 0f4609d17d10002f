//! SentencePiece-style tokenization (`tokenizer.ggml.model = "llama"`), as llama.cpp's
//! `llm_tokenizer_spm`: start from single characters and repeatedly merge the adjacent pair
//! whose concatenation is the highest-scoring token; characters left unmerged that are not
//! tokens fall back to `<0xXX>` byte tokens.

use std::cmp::Ordering;

use crate::merge::merge;
use crate::vocab::Vocab;

/// A token score, totally ordered (NaN scores cannot make the queue inconsistent).
#[derive(Debug, Clone, Copy)]
struct Score(f32);

impl PartialEq for Score {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Score {}
impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Score {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Tokenizes `text` (spaces already escaped to U+2581) and appends the ids to `out`.
pub(crate) fn tokenize(vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
    // Highest score first: a pair may merge when its concatenation is a token.
    let pieces = merge(text, |_, _, joined| {
        vocab.id(joined).map(|id| Score(vocab.tokens.get(id as usize).map_or(0.0, |t| t.score)))
    });
    // Every merged symbol is a token (merges only happen into tokens), so llama.cpp's
    // "resegment" recursion reduces to: token, or bytes.
    for range in pieces {
        let piece = &text[range];
        match vocab.id(piece) {
            Some(id) => out.push(id),
            None => out.extend(piece.bytes().filter_map(|b| byte_token(vocab, b))),
        }
    }
}

/// The token for a raw byte: `<0xXX>`, else the byte itself as a one-character token, else
/// the unknown token (llama.cpp aborts the tokenization in that last case).
fn byte_token(vocab: &Vocab, b: u8) -> Option<u32> {
    vocab
        .id(&format!("<0x{b:02X}>"))
        .or_else(|| if b.is_ascii() { vocab.id(char::from(b).encode_utf8(&mut [0u8; 4])) } else { None })
        .or(vocab.special.unk)
}
