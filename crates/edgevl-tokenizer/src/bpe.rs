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

/// The `tokenizer.ggml.pre` names llama.cpp's loader (`llama-vocab.cpp`) maps onto each rule set
/// edgevl implements, with its flags: (names, rules, ignore_merges, add_bos by default). Names of
/// one row share llama.cpp's regexes and flags (its `clean_spaces` only tidies a whole-text
/// detokenisation, which generation does not use).
const PRE_TOKENIZERS: &[(&[&str], &[Rule], bool, bool)] = &[
    (&["default"], DEFAULT_RULES, false, false),
    (
        &[
            "llama3",
            "llama-v3",
            "llama-bpe",
            "falcon3",
            "falcon-h1",
            "pixtral",
            "midm-2.0",
            "lfm2",
            "jina-v5-nano",
        ],
        LLAMA3_RULES,
        true,
        true,
    ),
    (&["dbrx", "smaug-bpe"], LLAMA3_RULES, false, false),
    (
        &[
            "gpt-2",
            "phi-2",
            "jina-es",
            "jina-de",
            "gigachat",
            "jina-v2-es",
            "jina-v2-de",
            "a.x-4.0",
            "mellum",
            "modern-bert",
            "mpt",
            "olmo",
            "jais",
            "trillion",
            "granite-docling",
            "exaone4",
        ],
        GPT2_RULES,
        false,
        false,
    ),
    (
        &["smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b", "mellum2"],
        SMOLLM_RULES,
        false,
        false,
    ),
    (
        &["qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "stablelm2", "hunyuan", "solar-open", "megrez"],
        QWEN2_RULES,
        false,
        false,
    ),
];

/// Every accepted `tokenizer.ggml.pre` name, quoted and comma-separated (for error messages).
pub(crate) fn supported_pre() -> String {
    let names: Vec<String> =
        PRE_TOKENIZERS.iter().flat_map(|(names, ..)| names.iter()).map(|n| format!("{n:?}")).collect();
    names.join(", ")
}

impl PreTokenizer {
    /// The pre-tokenizer named by `tokenizer.ggml.pre`; absent means "default" (llama.cpp
    /// warns that quality will be degraded).
    pub(crate) fn from_name(name: Option<&str>) -> Result<Self, TokenizerError> {
        let name = name.filter(|n| !n.is_empty()).unwrap_or("default");
        let found = PRE_TOKENIZERS.iter().find(|(names, ..)| names.contains(&name));
        match found {
            Some(&(_, rules, ignore_merges, default_add_bos)) => {
                Ok(PreTokenizer { rules, ignore_merges, default_add_bos })
            }
            None => Err(TokenizerError::UnsupportedPreTokenizer {
                pre: name.to_owned(),
                supported: supported_pre(),
            }),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// llama.cpp's `llama-vocab.cpp` (0.3.36's) maps these names onto the rule sets edgevl has,
    /// each with its flags; the converter writes them from its hash table.
    #[test]
    fn llama_cpp_aliases_take_their_groups_rules_and_flags() {
        let of = |name| {
            let p = PreTokenizer::from_name(Some(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            (p.rules, p.ignore_merges, p.default_add_bos)
        };
        for name in ["falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano"] {
            assert_eq!(of(name), (LLAMA3_RULES, true, true), "{name}");
        }
        for name in ["dbrx", "smaug-bpe"] {
            assert_eq!(of(name), (LLAMA3_RULES, false, false), "{name}");
        }
        for name in ["refact", "command-r", "codeshell", "exaone", "minerva-7b", "mellum2"] {
            assert_eq!(of(name), (SMOLLM_RULES, false, false), "{name}");
        }
        for name in ["phi-2", "mpt", "olmo", "jais", "trillion", "granite-docling", "exaone4", "gigachat"] {
            assert_eq!(of(name), (GPT2_RULES, false, false), "{name}");
        }
        for name in ["stablelm2", "hunyuan", "solar-open", "megrez", "kormo", "f2llmv2"] {
            assert_eq!(of(name), (QWEN2_RULES, false, false), "{name}");
        }
        // Absent or empty is llama.cpp's default; a name with other regexes is refused, listing the names.
        assert_eq!(of(""), (DEFAULT_RULES, false, false));
        let e = PreTokenizer::from_name(Some("deepseek-llm")).unwrap_err().to_string();
        assert!(e.contains("deepseek-llm") && e.contains("\"falcon3\""), "{e}");
    }
}
