//! `tokenizer.*` keys (llama.cpp's `llama-vocab.cpp`).

/// `tokenizer.ggml.model`: `gpt2` (byte-level BPE), `llama` (SentencePiece), ...
pub const MODEL: &str = "tokenizer.ggml.model";
/// `tokenizer.ggml.pre`: the pre-tokenizer's name.
pub const PRE: &str = "tokenizer.ggml.pre";
/// `tokenizer.ggml.tokens`: the vocabulary.
pub const TOKENS: &str = "tokenizer.ggml.tokens";
/// `tokenizer.ggml.token_type`: one llama.cpp token type per token.
pub const TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
/// `tokenizer.ggml.scores`: SentencePiece scores.
pub const SCORES: &str = "tokenizer.ggml.scores";
/// `tokenizer.ggml.merges`: BPE merges, `"a b"` each.
pub const MERGES: &str = "tokenizer.ggml.merges";
/// `tokenizer.ggml.add_bos_token`.
pub const ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
/// `tokenizer.ggml.add_eos_token`.
pub const ADD_EOS: &str = "tokenizer.ggml.add_eos_token";
/// `tokenizer.ggml.add_space_prefix` (SentencePiece).
pub const ADD_SPACE_PREFIX: &str = "tokenizer.ggml.add_space_prefix";
/// `tokenizer.chat_template`: the Jinja chat template (`tokenizer.chat_template.NAME`: a named
/// one besides it, e.g. `tool_use`).
pub const CHAT_TEMPLATE: &str = "tokenizer.chat_template";
/// `tokenizer.chat_templates`: the names of the named templates.
pub const CHAT_TEMPLATES: &str = "tokenizer.chat_templates";

/// The special tokens GGUF metadata names by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpecialToken {
    /// Beginning of sequence.
    Bos,
    /// End of sequence.
    Eos,
    /// End of turn.
    Eot,
    /// End of message.
    Eom,
    /// Unknown.
    Unk,
    /// Separator.
    Sep,
    /// Padding.
    Pad,
    /// Mask.
    Mask,
    /// Fill-in-the-middle prefix.
    FimPre,
    /// Fill-in-the-middle suffix.
    FimSuf,
    /// Fill-in-the-middle middle.
    FimMid,
    /// Fill-in-the-middle padding.
    FimPad,
    /// Fill-in-the-middle repository.
    FimRep,
    /// Fill-in-the-middle file separator.
    FimSep,
}

impl SpecialToken {
    /// All kinds, in the order llama.cpp reads them.
    pub const ALL: [SpecialToken; 14] = [
        SpecialToken::Bos,
        SpecialToken::Eos,
        SpecialToken::Eot,
        SpecialToken::Eom,
        SpecialToken::Unk,
        SpecialToken::Sep,
        SpecialToken::Pad,
        SpecialToken::Mask,
        SpecialToken::FimPre,
        SpecialToken::FimSuf,
        SpecialToken::FimMid,
        SpecialToken::FimPad,
        SpecialToken::FimRep,
        SpecialToken::FimSep,
    ];

    /// The GGUF key holding this token's id (llama.cpp spells the separator `seperator`).
    pub fn key(self) -> &'static str {
        match self {
            SpecialToken::Bos => "tokenizer.ggml.bos_token_id",
            SpecialToken::Eos => "tokenizer.ggml.eos_token_id",
            SpecialToken::Eot => "tokenizer.ggml.eot_token_id",
            SpecialToken::Eom => "tokenizer.ggml.eom_token_id",
            SpecialToken::Unk => "tokenizer.ggml.unknown_token_id",
            SpecialToken::Sep => "tokenizer.ggml.seperator_token_id",
            SpecialToken::Pad => "tokenizer.ggml.padding_token_id",
            SpecialToken::Mask => "tokenizer.ggml.mask_token_id",
            SpecialToken::FimPre => "tokenizer.ggml.fim_pre_token_id",
            SpecialToken::FimSuf => "tokenizer.ggml.fim_suf_token_id",
            SpecialToken::FimMid => "tokenizer.ggml.fim_mid_token_id",
            SpecialToken::FimPad => "tokenizer.ggml.fim_pad_token_id",
            SpecialToken::FimRep => "tokenizer.ggml.fim_rep_token_id",
            SpecialToken::FimSep => "tokenizer.ggml.fim_sep_token_id",
        }
    }
}

/// `tokenizer.ggml.add_sep_token`.
pub const ADD_SEP: &str = "tokenizer.ggml.add_sep_token";
/// `tokenizer.ggml.cls_token_id` (BERT-style classifier token).
pub const CLS_ID: &str = "tokenizer.ggml.cls_token_id";
/// `tokenizer.ggml.normalizer.lowercase`.
pub const NORMALIZER_LOWERCASE: &str = "tokenizer.ggml.normalizer.lowercase";
/// `tokenizer.ggml.normalizer.strip_accents`.
pub const NORMALIZER_STRIP_ACCENTS: &str = "tokenizer.ggml.normalizer.strip_accents";
