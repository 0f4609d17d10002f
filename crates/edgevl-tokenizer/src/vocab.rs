//! The validated vocabulary: token texts, scores, attributes and special-token ids, with
//! llama.cpp's defaults and text-based auto-detection of end-of-generation tokens.

use std::collections::{BTreeSet, HashMap};

use crate::config::{Special, TokenizerConfig};
use crate::TokenizerError;

/// Token attribute bits (llama.cpp's `llama_token_attr`).
pub(crate) mod attr {
    pub const UNKNOWN: u16 = 1 << 0;
    pub const UNUSED: u16 = 1 << 1;
    pub const NORMAL: u16 = 1 << 2;
    pub const CONTROL: u16 = 1 << 3;
    pub const USER_DEFINED: u16 = 1 << 4;
    pub const BYTE: u16 = 1 << 5;
}

/// Attribute of a `tokenizer.ggml.token_type` value (1 normal, 2 unknown, 3 control,
/// 4 user-defined, 5 unused, 6 byte; anything else is "undefined", as in llama.cpp).
fn attr_of_type(t: i32) -> u16 {
    match t {
        1 => attr::NORMAL,
        2 => attr::UNKNOWN,
        3 => attr::CONTROL,
        4 => attr::USER_DEFINED,
        5 => attr::UNUSED,
        6 => attr::BYTE,
        _ => 0,
    }
}

/// One vocabulary entry.
#[derive(Debug, Clone)]
pub(crate) struct TokenData {
    pub text: String,
    pub score: f32,
    pub attr: u16,
}

/// Which tokenizer algorithm the vocabulary belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ModelKind {
    /// `gpt2`: byte-level BPE.
    Bpe,
    /// `llama`: SentencePiece-style.
    Spm,
}

/// Special-token ids (`None` = the model has no such token).
#[derive(Debug, Clone, Default)]
pub(crate) struct SpecialIds {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub unk: Option<u32>,
    pub sep: Option<u32>,
    pub pad: Option<u32>,
    pub mask: Option<u32>,
    pub fim_pre: Option<u32>,
    pub fim_suf: Option<u32>,
    pub fim_mid: Option<u32>,
    pub fim_pad: Option<u32>,
    pub fim_rep: Option<u32>,
    pub fim_sep: Option<u32>,
}

impl SpecialIds {
    fn slot(&mut self, kind: Special) -> &mut Option<u32> {
        match kind {
            Special::Bos => &mut self.bos,
            Special::Eos => &mut self.eos,
            Special::Eot => &mut self.eot,
            Special::Eom => &mut self.eom,
            Special::Unk => &mut self.unk,
            Special::Sep => &mut self.sep,
            Special::Pad => &mut self.pad,
            Special::Mask => &mut self.mask,
            Special::FimPre => &mut self.fim_pre,
            Special::FimSuf => &mut self.fim_suf,
            Special::FimMid => &mut self.fim_mid,
            Special::FimPad => &mut self.fim_pad,
            Special::FimRep => &mut self.fim_rep,
            Special::FimSep => &mut self.fim_sep,
        }
    }
}

/// Texts llama.cpp recognises as special tokens when the metadata does not name them.
/// Each list is searched only when the id is still unset; the token also becomes a control
/// token.
const AUTO_DETECT: [(Special, &[&str]); 8] = [
    (
        Special::Eot,
        &[
            "<|eot_id|>",
            "<|im_end|>",
            "<|end|>",
            "<end_of_turn>",
            "<|endoftext|>",
            "<|end_of_text|>",
            "<EOT>",
            "_<EOT>",
            "[EOT]",
            "<｜end▁of▁sentence｜>",
            "<end_of_utterance>",
        ],
    ),
    (Special::Eom, &["<|eom_id|>"]),
    (
        Special::FimPre,
        &[
            "<|fim_prefix|>",
            "<fim-prefix>",
            "<fim_prefix>",
            "<｜fim▁begin｜>",
            "<PRE>",
            "▁<PRE>",
            "<|code_prefix|>",
            "<|prefix|>",
        ],
    ),
    (
        Special::FimSuf,
        &[
            "<|fim_suffix|>",
            "<fim-suffix>",
            "<fim_suffix>",
            "<｜fim▁hole｜>",
            "<SUF>",
            "▁<SUF>",
            "<|code_suffix|>",
            "<|suffix|>",
        ],
    ),
    (
        Special::FimMid,
        &[
            "<|fim_middle|>",
            "<fim-middle>",
            "<fim_middle>",
            "<｜fim▁end｜>",
            "<MID>",
            "▁<MID>",
            "<|code_middle|>",
            "<|middle|>",
        ],
    ),
    (Special::FimPad, &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"]),
    (Special::FimRep, &["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"]),
    (Special::FimSep, &["<|file_sep|>"]),
];

/// Texts of tokens that end generation (llama.cpp's list).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// The validated vocabulary.
#[derive(Debug, Clone)]
pub(crate) struct Vocab {
    pub kind: ModelKind,
    pub tokens: Vec<TokenData>,
    pub token_to_id: HashMap<String, u32>,
    pub special: SpecialIds,
    pub eog: BTreeSet<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    pub add_space_prefix: bool,
    /// Control, user-defined and unknown tokens, longest text first (matched in this order).
    pub special_cache: Vec<u32>,
}

impl Vocab {
    /// Validates `cfg` and applies llama.cpp's defaults. `default_add_bos` is the model /
    /// pre-tokenizer default used when `tokenizer.ggml.add_bos_token` is absent.
    pub(crate) fn new(
        cfg: &TokenizerConfig,
        kind: ModelKind,
        default_add_bos: bool,
    ) -> Result<Self, TokenizerError> {
        use crate::config::keys;
        let n = cfg.tokens.len();
        if n == 0 {
            return Err(TokenizerError::EmptyVocabulary);
        }
        if n > crate::MAX_VOCAB {
            return Err(TokenizerError::VocabularyTooLarge { n });
        }
        let check_len = |key: &'static str, found: usize| {
            if found == n {
                Ok(())
            } else {
                Err(TokenizerError::LengthMismatch { key, found, expected: n })
            }
        };
        if let Some(t) = &cfg.token_types {
            check_len(keys::TOKEN_TYPE, t.len())?;
        }
        if let Some(s) = &cfg.scores {
            check_len(keys::SCORES, s.len())?;
        }

        let mut tokens = Vec::with_capacity(n);
        let mut token_to_id = HashMap::with_capacity(n);
        for (i, text) in cfg.tokens.iter().enumerate() {
            // llama.cpp renames empty tokens so that they can never match.
            let text = if text.is_empty() { format!("[EMPTY_{i}]") } else { text.clone() };
            let id = i as u32; // fits: n <= MAX_VOCAB checked above
            token_to_id.insert(text.clone(), id);
            tokens.push(TokenData {
                text,
                score: cfg.scores.as_ref().and_then(|s| s.get(i).copied()).unwrap_or(0.0),
                attr: cfg
                    .token_types
                    .as_ref()
                    .and_then(|t| t.get(i))
                    .map_or(attr::NORMAL, |&t| attr_of_type(t)),
            });
        }

        let mut special = SpecialIds::default();
        // llama.cpp's defaults, disabled when outside the vocabulary.
        let defaults = match kind {
            ModelKind::Spm => [(Special::Bos, 1), (Special::Eos, 2), (Special::Unk, 0)].as_slice(),
            ModelKind::Bpe => [(Special::Bos, 11), (Special::Eos, 11)].as_slice(),
        };
        for &(k, id) in defaults {
            *special.slot(k) = (id < n).then_some(id as u32);
        }
        // An id past the vocabulary keeps the default, as llama.cpp's loader does ("bad special
        // token ... using default id"): fine-tunes that set the padding id to the vocabulary size load.
        for &(k, id) in &cfg.special_ids {
            if (id as usize) < n {
                *special.slot(k) = Some(id);
            }
        }

        let mut vocab = Vocab {
            kind,
            tokens,
            token_to_id,
            special,
            eog: BTreeSet::new(),
            add_bos: cfg.add_bos.unwrap_or(default_add_bos),
            add_eos: cfg.add_eos.unwrap_or(false),
            add_space_prefix: match kind {
                ModelKind::Spm => cfg.add_space_prefix.unwrap_or(true),
                // llama.cpp reads the key for every model type.
                ModelKind::Bpe => cfg.add_space_prefix.unwrap_or(false),
            },
            special_cache: Vec::new(),
        };
        vocab.auto_detect_specials();
        vocab.collect_eog();
        let mut special_cache: Vec<u32> = (0..n as u32)
            .filter(|&id| vocab.attr(id) & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0)
            .collect();
        // Longest first; ties by id (llama.cpp's order for ties is unspecified).
        special_cache.sort_by_key(|&id| std::cmp::Reverse(vocab.text(id).len()));
        vocab.special_cache = special_cache;
        Ok(vocab)
    }

    /// Attribute bits of `id` (0 when out of range).
    pub(crate) fn attr(&self, id: u32) -> u16 {
        self.tokens.get(id as usize).map_or(0, |t| t.attr)
    }

    /// Text of `id` ("" when out of range).
    pub(crate) fn text(&self, id: u32) -> &str {
        self.tokens.get(id as usize).map_or("", |t| t.text.as_str())
    }

    /// The id of the token whose text is exactly `text`.
    pub(crate) fn id(&self, text: &str) -> Option<u32> {
        self.token_to_id.get(text).copied()
    }

    fn mark_control(&mut self, id: u32) {
        if let Some(t) = self.tokens.get_mut(id as usize) {
            t.attr |= attr::CONTROL;
        }
    }

    /// Finds EOT/EOM/FIM tokens by their text when the metadata does not name them.
    fn auto_detect_specials(&mut self) {
        for (kind, texts) in AUTO_DETECT {
            if self.special.slot(kind).is_some() {
                continue;
            }
            // Lowest id first (llama.cpp walks a hash map, so its choice among several
            // candidates is arbitrary).
            let found = (0..self.tokens.len() as u32).find(|&id| texts.contains(&self.text(id)));
            if let Some(id) = found {
                *self.special.slot(kind) = Some(id);
                self.mark_control(id);
            }
        }
    }

    /// Builds the set of end-of-generation tokens.
    fn collect_eog(&mut self) {
        let s = &self.special;
        let mut eog: BTreeSet<u32> =
            [s.fim_pad, s.fim_rep, s.fim_sep, s.eos, s.eot, s.eom].into_iter().flatten().collect();
        let by_text: Vec<u32> =
            (0..self.tokens.len() as u32).filter(|&id| EOG_TEXTS.contains(&self.text(id))).collect();
        for id in by_text {
            eog.insert(id);
            self.mark_control(id);
        }
        self.eog = eog;
    }
}
