//! Reading the tokenizer's GGUF metadata into plain owned data.

use edgevl_gguf::{GgufError, Metadata};

use crate::TokenizerError;

/// GGUF keys read by this crate (spelled once, in `edgevl-arch`).
pub(crate) use edgevl_arch::tokenizer as keys;
/// The special tokens that GGUF metadata can name by id.
pub(crate) use edgevl_arch::tokenizer::SpecialToken as Special;

/// Tokenizer metadata as found in the file, not yet validated.
#[derive(Debug, Clone, Default)]
pub(crate) struct TokenizerConfig {
    /// `tokenizer.ggml.model`.
    pub model: String,
    /// `tokenizer.ggml.pre`.
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.token_type`.
    pub token_types: Option<Vec<i32>>,
    /// `tokenizer.ggml.scores` (f32, or i32 converted like llama.cpp does).
    pub scores: Option<Vec<f32>>,
    /// `tokenizer.ggml.merges`.
    pub merges: Option<Vec<String>>,
    /// Special-token ids present in the metadata.
    pub special_ids: Vec<(Special, u32)>,
    /// `tokenizer.ggml.add_bos_token`.
    pub add_bos: Option<bool>,
    /// `tokenizer.ggml.add_eos_token`.
    pub add_eos: Option<bool>,
    /// `tokenizer.ggml.add_space_prefix`.
    pub add_space_prefix: Option<bool>,
}

fn ctx<T>(key: &'static str, r: Result<T, GgufError>) -> Result<T, TokenizerError> {
    r.map_err(|source| TokenizerError::Metadata { key, source })
}

/// Reads an array key only when present.
fn opt_array<'m, T: ?Sized>(
    md: &'m Metadata,
    key: &'static str,
    get: impl FnOnce(&'m Metadata) -> Result<&'m T, GgufError>,
) -> Result<Option<&'m T>, TokenizerError> {
    if md.get(key).is_none() {
        return Ok(None);
    }
    ctx(key, get(md)).map(Some)
}

impl TokenizerConfig {
    /// Reads every tokenizer key from `md`; element types are checked here.
    pub(crate) fn from_metadata(md: &Metadata) -> Result<Self, TokenizerError> {
        let model = match ctx(keys::MODEL, md.opt_str(keys::MODEL))? {
            Some(m) => m.to_owned(),
            None => return Err(TokenizerError::MissingKey { key: keys::MODEL }),
        };
        let pre = ctx(keys::PRE, md.opt_str(keys::PRE))?.map(str::to_owned);
        let tokens = match opt_array(md, keys::TOKENS, |m| m.get_str_array(keys::TOKENS))? {
            Some(t) => t.to_vec(),
            None => return Err(TokenizerError::MissingKey { key: keys::TOKENS }),
        };
        let token_types =
            opt_array(md, keys::TOKEN_TYPE, |m| m.get_i32_array(keys::TOKEN_TYPE))?.map(<[i32]>::to_vec);
        let scores = if md.get(keys::SCORES).is_none() {
            None
        } else {
            // llama.cpp accepts f32 or i32 scores.
            match md.get_f32_array(keys::SCORES) {
                Ok(s) => Some(s.to_vec()),
                Err(f32_err) => match md.get_i32_array(keys::SCORES) {
                    Ok(s) => Some(s.iter().map(|&v| v as f32).collect()),
                    Err(_) => return Err(TokenizerError::Metadata { key: keys::SCORES, source: f32_err }),
                },
            }
        };
        let merges = opt_array(md, keys::MERGES, |m| m.get_str_array(keys::MERGES))?.map(<[String]>::to_vec);
        let mut special_ids = Vec::new();
        for kind in Special::ALL {
            if let Some(id) = ctx(kind.key(), md.opt_u32(kind.key()))? {
                special_ids.push((kind, id));
            }
        }
        Ok(TokenizerConfig {
            model,
            pre,
            tokens,
            token_types,
            scores,
            merges,
            special_ids,
            add_bos: ctx(keys::ADD_BOS, md.opt_bool(keys::ADD_BOS))?,
            add_eos: ctx(keys::ADD_EOS, md.opt_bool(keys::ADD_EOS))?,
            add_space_prefix: ctx(keys::ADD_SPACE_PREFIX, md.opt_bool(keys::ADD_SPACE_PREFIX))?,
        })
    }
}
