//! The public [`Tokenizer`].

use edgevl_gguf::Metadata;

use crate::bpe::{Bpe, MergeRanks, PreTokenizer};
use crate::config::{keys, TokenizerConfig};
use crate::special::{partition, Fragment};
use crate::vocab::{attr, ModelKind, Vocab};
use crate::{pieces, spm, TokenizerError};

/// A tokenizer built from GGUF metadata that reproduces llama.cpp's `llama_tokenize` and
/// `llama_token_to_piece`.
///
/// Supported: `tokenizer.ggml.model = "gpt2"` (byte-level BPE; pre-tokenizers listed in
/// [`TokenizerError::UnsupportedPreTokenizer`]) and `"llama"` (SentencePiece-style with
/// scores and `<0xXX>` byte fallback).
#[derive(Debug, Clone)]
pub struct Tokenizer {
    vocab: Vocab,
    bpe: Option<Bpe>,
    /// `token_to_piece(id, special = true)` of every token.
    pieces: Vec<Box<[u8]>>,
    /// See [`Tokenizer::max_bytes_per_token`].
    max_bytes_per_token: usize,
    /// See [`Tokenizer::pre_tokenizer_defaulted`].
    pre_defaulted: bool,
}

impl Tokenizer {
    /// Builds the tokenizer from a GGUF file's metadata.
    ///
    /// Errors name the offending key: a missing `tokenizer.ggml.model` / `tokens` /
    /// `merges`, an array of the wrong element type or length, or an unsupported model or
    /// pre-tokenizer. A special-token id past the vocabulary keeps the default (llama.cpp's rule).
    pub fn from_gguf(md: &Metadata) -> Result<Tokenizer, TokenizerError> {
        Self::from_config(&TokenizerConfig::from_metadata(md)?)
    }

    pub(crate) fn from_config(cfg: &TokenizerConfig) -> Result<Tokenizer, TokenizerError> {
        let (vocab, bpe) = match cfg.model.as_str() {
            "llama" => (Vocab::new(cfg, ModelKind::Spm, true)?, None),
            "gpt2" => {
                let pre = PreTokenizer::from_name(cfg.pre.as_deref())?;
                let merges = cfg.merges.as_deref().ok_or(TokenizerError::MissingKey { key: keys::MERGES })?;
                let vocab = Vocab::new(cfg, ModelKind::Bpe, pre.default_add_bos)?;
                (vocab, Some(Bpe::new(pre, MergeRanks::new(merges))))
            }
            other => return Err(TokenizerError::UnsupportedModel { model: other.to_owned() }),
        };
        let pieces = pieces::build(&vocab);
        let longest = pieces.iter().map(|p| p.len()).max().unwrap_or(0).max(4);
        let pre_defaulted = bpe.is_some() && cfg.pre.as_deref().is_none_or(str::is_empty);
        Ok(Tokenizer { vocab, bpe, pieces, max_bytes_per_token: 4 * longest, pre_defaulted })
    }

    /// Whether a byte-level BPE file named no `tokenizer.ggml.pre`, so llama.cpp's default
    /// splitting rules are used (llama.cpp warns that generation quality will be degraded; the
    /// file's converter did not know the tokenizer). Callers at a terminal should warn too, with
    /// [`crate::PRE_DEFAULTED_WARNING`].
    pub fn pre_tokenizer_defaulted(&self) -> bool {
        self.pre_defaulted
    }

    /// A bound on the bytes of text one token stands for: a text of `n` bytes tokenises to at
    /// least `n / max_bytes_per_token()` tokens, so a prompt far past a context can be refused
    /// before it is tokenised. Four times the longest piece (at least 4 bytes, the unknown
    /// token's widest character): a margin for normalisation, which may shorten text.
    pub fn max_bytes_per_token(&self) -> usize {
        self.max_bytes_per_token
    }

    /// Tokenizes `text` like `llama_tokenize(vocab, text, add_special, parse_special)`.
    ///
    /// `add_special` adds BOS (and EOS) when the model's `add_bos` (`add_eos`) says so.
    /// With `parse_special`, control tokens written in the text (e.g. `<|im_start|>`) become
    /// those tokens; otherwise they are tokenized as plain text. User-defined tokens are
    /// always matched.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let v = &self.vocab;
        let frags = partition(text, v, parse_special);
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && v.add_bos {
            out.extend(v.special.bos);
        }
        match &self.bpe {
            Some(bpe) => {
                for f in &frags {
                    match f {
                        Fragment::Text(r) => bpe.tokenize(v, &text[r.clone()], &mut out),
                        Fragment::Token(id) => out.push(*id),
                    }
                }
            }
            None => {
                // A space is prefixed to the text at the start and after each special token.
                let mut prev_special = true;
                let mut buf = String::new();
                for f in &frags {
                    match f {
                        Fragment::Text(r) => {
                            buf.clear();
                            if v.add_space_prefix && prev_special {
                                buf.push(' ');
                            }
                            buf.push_str(&text[r.clone()]);
                            let escaped = buf.replace(' ', "\u{2581}");
                            spm::tokenize(v, &escaped, &mut out);
                            prev_special = false;
                        }
                        Fragment::Token(id) => {
                            out.push(*id);
                            prev_special = true;
                        }
                    }
                }
            }
        }
        if add_special && v.add_eos {
            out.extend(v.special.eos);
        }
        out
    }

    /// The bytes `id` stands for, as printed while generating (llama.cpp's
    /// `token_to_piece(id, special = false)`): byte-level decoded for BPE, `▁` as space and
    /// `<0xXX>` as that byte for SentencePiece; control and unknown tokens give nothing, as
    /// do ids outside the vocabulary.
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.piece(id, false)
    }

    /// Like [`Tokenizer::token_bytes`], but with `special = true` control and unknown tokens
    /// render as their text (e.g. `<|im_end|>`).
    pub fn piece(&self, id: u32, special: bool) -> &[u8] {
        if !special && self.vocab.attr(id) & (attr::CONTROL | attr::UNKNOWN) != 0 {
            return &[];
        }
        self.pieces.get(id as usize).map_or(&[], |p| p)
    }

    /// Concatenates the pieces of `ids` (control tokens omitted) and converts them to text,
    /// replacing invalid UTF-8 with U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        self.decode_pieces(ids, false)
    }

    /// Like [`Tokenizer::decode`], but control and unknown tokens render as their text.
    pub fn decode_with_special(&self, ids: &[u32]) -> String {
        self.decode_pieces(ids, true)
    }

    fn decode_pieces(&self, ids: &[u32], special: bool) -> String {
        let bytes: Vec<u8> = ids.iter().flat_map(|&id| self.piece(id, special).iter().copied()).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The beginning-of-sequence token, if the model has one.
    pub fn bos(&self) -> Option<u32> {
        self.vocab.special.bos
    }

    /// The end-of-sequence token, if the model has one.
    pub fn eos(&self) -> Option<u32> {
        self.vocab.special.eos
    }

    /// The end-of-turn token (from metadata, or found by its text such as `<|im_end|>`).
    pub fn eot(&self) -> Option<u32> {
        self.vocab.special.eot
    }

    /// The unknown token, if any.
    pub fn unk(&self) -> Option<u32> {
        self.vocab.special.unk
    }

    /// The padding token, if any.
    pub fn pad(&self) -> Option<u32> {
        self.vocab.special.pad
    }

    /// Whether generating `id` ends generation: EOS, EOT, EOM, the FIM pad/repo/separator
    /// tokens and tokens llama.cpp recognises by text (`<|im_end|>`, `<|endoftext|>`,
    /// `<|eot_id|>`, `</s>`, ...).
    pub fn is_eog(&self, id: u32) -> bool {
        self.vocab.eog.contains(&id)
    }

    /// All end-of-generation tokens, ascending.
    pub fn eog_tokens(&self) -> impl Iterator<Item = u32> + '_ {
        self.vocab.eog.iter().copied()
    }

    /// Whether `id` is a control token (rendered as nothing by [`Tokenizer::token_bytes`]).
    pub fn is_control(&self, id: u32) -> bool {
        self.vocab.attr(id) & attr::CONTROL != 0
    }

    /// Number of tokens in the vocabulary.
    pub fn n_vocab(&self) -> usize {
        self.vocab.tokens.len()
    }

    /// Whether `encode(.., add_special = true, ..)` adds a BOS token.
    pub fn add_bos(&self) -> bool {
        self.vocab.add_bos && self.vocab.special.bos.is_some()
    }

    /// Whether `encode(.., add_special = true, ..)` adds an EOS token.
    pub fn add_eos(&self) -> bool {
        self.vocab.add_eos && self.vocab.special.eos.is_some()
    }

    /// The raw vocabulary text of `id` (e.g. `Ġhello`, `▁hello`, `<0x0A>`), if in range.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.vocab.tokens.get(id as usize).map(|t| t.text.as_str())
    }

    /// The id of the token whose vocabulary text is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.id(text)
    }
}

#[cfg(test)]
mod tests {
    /// The tokenizer is shared between threads by the runtime.
    #[test]
    fn tokenizer_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<super::Tokenizer>();
        check::<crate::ChatTemplate>();
    }
}
