//! Byte-level BPE (`tokenizer.ggml.model = "gpt2"`), as llama.cpp's `llm_tokenizer_bpe`.

use std::cmp::Reverse;
use std::collections::HashMap;

use crate::merge::merge;
use crate::pretokenize::{self, ClassSet, Rule};
use crate::unicode::ByteLevel;
use crate::vocab::Vocab;
use crate::TokenizerError;

/// Settings that follow from `tokenizer.ggml.pre`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PreTokenizer {
    /// The splitting rules, applied in order.
    pub rules: &'static [Rule],
    /// A word that is itself a token is emitted whole, without merging.
    pub ignore_merges: bool,
    /// Whether a BOS token is added when `tokenizer.ggml.add_bos_token` is absent.
    pub default_add_bos: bool,
}

const DEFAULT_RULES: &[Rule] = &[
    Rule::Run(ClassSet::PUNCT_AND_SYMBOLS),
    Rule::Gpt2,
    Rule::Run(ClassSet::NUMBER),
    Rule::AsciiDigitTriples,
];
const GPT2_RULES: &[Rule] = &[Rule::Gpt2];
const SMOLLM_RULES: &[Rule] = &[Rule::Single(ClassSet::NUMBER), Rule::Gpt2];
const LLAMA3_RULES: &[Rule] = &[Rule::Llama3 { max_digits: 3 }];
const QWEN2_RULES: &[Rule] = &[Rule::Llama3 { max_digits: 1 }];

/// Pre-tokenizer names accepted in `tokenizer.ggml.pre` (llama.cpp's spellings).
pub(crate) const SUPPORTED_PRE: &str =
    "\"default\", \"gpt-2\", \"llama3\", \"llama-v3\", \"llama-bpe\", \"smollm\", \"starcoder\", \"qwen2\", \"deepseek-r1-qwen\"";

impl PreTokenizer {
    /// The pre-tokenizer named by `tokenizer.ggml.pre`; absent means "default" (llama.cpp
    /// warns that quality will be degraded).
    pub(crate) fn from_name(name: Option<&str>) -> Result<Self, TokenizerError> {
        let p =
            |rules, ignore_merges, default_add_bos| PreTokenizer { rules, ignore_merges, default_add_bos };
        Ok(match name.unwrap_or("") {
            "" | "default" => p(DEFAULT_RULES, false, false),
            "gpt-2" => p(GPT2_RULES, false, false),
            "llama3" | "llama-v3" | "llama-bpe" => p(LLAMA3_RULES, true, true),
            "smollm" | "starcoder" => p(SMOLLM_RULES, false, false),
            "qwen2" | "deepseek-r1-qwen" => p(QWEN2_RULES, false, false),
            other => {
                return Err(TokenizerError::UnsupportedPreTokenizer {
                    pre: other.to_owned(),
                    supported: SUPPORTED_PRE.to_owned(),
                })
            }
        })
    }
}

/// Merge ranks keyed by the pair of strings.
#[derive(Debug, Clone, Default)]
pub(crate) struct MergeRanks {
    ranks: HashMap<Box<[u8]>, u32>,
}

/// An unambiguous key for the pair `(a, b)`.
fn pair_key(buf: &mut Vec<u8>, a: &str, b: &str) {
    buf.clear();
    buf.extend_from_slice(&(a.len() as u64).to_le_bytes());
    buf.extend_from_slice(a.as_bytes());
    buf.extend_from_slice(b.as_bytes());
}

impl MergeRanks {
    /// Parses `tokenizer.ggml.merges`: entry `i` is "first second", split at the first space
    /// after the first byte, and has rank `i`; the first occurrence of a pair wins. Entries
    /// without such a space can never apply and are ignored, as in llama.cpp.
    pub(crate) fn new(merges: &[String]) -> Self {
        let mut ranks = HashMap::with_capacity(merges.len());
        let mut key = Vec::new();
        for (rank, m) in merges.iter().enumerate() {
            let Some(pos) = m.bytes().skip(1).position(|b| b == b' ').map(|p| p + 1) else {
                continue;
            };
            pair_key(&mut key, &m[..pos], &m[pos + 1..]);
            ranks.entry(key.clone().into_boxed_slice()).or_insert(rank.min(u32::MAX as usize) as u32);
        }
        MergeRanks { ranks }
    }

    fn rank(&self, buf: &mut Vec<u8>, a: &str, b: &str) -> Option<u32> {
        pair_key(buf, a, b);
        self.ranks.get(buf.as_slice()).copied()
    }
}

/// The byte-level BPE tokenizer.
#[derive(Debug, Clone)]
pub(crate) struct Bpe {
    pre: PreTokenizer,
    ranks: MergeRanks,
    byte_level: ByteLevel,
}

impl Bpe {
    /// A tokenizer with these settings and merges.
    pub(crate) fn new(pre: PreTokenizer, ranks: MergeRanks) -> Self {
        Bpe { pre, ranks, byte_level: ByteLevel::new() }
    }

    /// Tokenizes one text fragment (no special tokens) and appends the ids to `out`.
    pub(crate) fn tokenize(&self, vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
        let mut word = String::new();
        let mut key = Vec::new();
        for range in pretokenize::split(text, self.pre.rules) {
            word.clear();
            self.byte_level.encode_into(&text.as_bytes()[range], &mut word);
            self.tokenize_word(vocab, &word, &mut key, out);
        }
    }

    fn tokenize_word(&self, vocab: &Vocab, word: &str, key: &mut Vec<u8>, out: &mut Vec<u32>) {
        if self.pre.ignore_merges {
            if let Some(id) = vocab.id(word) {
                out.push(id);
                return;
            }
        }
        // Lowest rank first.
        let pieces = merge(word, |l, r, _| self.ranks.rank(key, l, r).map(Reverse));
        for range in pieces {
            let piece = &word[range];
            match vocab.id(piece) {
                Some(id) => out.push(id),
                // Not a token: llama.cpp looks each byte of the piece up as a one-byte token
                // and drops the bytes that are not tokens.
                None => out.extend(
                    piece
                        .bytes()
                        .filter(u8::is_ascii)
                        .filter_map(|b| vocab.id(char::from(b).encode_utf8(&mut [0u8; 4]))),
                ),
            }
        }
    }
}
