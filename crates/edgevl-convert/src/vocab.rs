//! Tokenizer import: `tokenizer.json` (byte-level BPE) and `tokenizer_config.json` to the
//! `tokenizer.*` keys, as llama.cpp's converter writes them (`_set_vocab_gpt2` + `gguf-py`'s
//! `SpecialVocab`), with `tokenizer.ggml.pre` chosen by llama.cpp's hash of the token ids of its
//! check text. The tokenizer is run by the `tokenizers` crate, the library transformers uses.

use std::collections::HashMap;
use std::path::Path;

use edgevl_arch::hf::{config as cfg, HfArch};
use edgevl_arch::tokenizer as tk;
use edgevl_gguf::{Array, Metadata, Value};
use serde_json::{Map, Value as Json};
use sha2::{Digest, Sha256};
use tokenizers::Tokenizer;

use crate::checkpoint::JsonFile;
use crate::chkhsh as table;
use crate::error::{ConvertError, Result};

/// llama.cpp token types.
mod token_type {
    pub const NORMAL: i32 = 1;
    pub const CONTROL: i32 = 3;
    pub const USER_DEFINED: i32 = 4;
    pub const UNUSED: i32 = 5;
}

/// `tokenizer.json`.
pub const TOKENIZER_JSON: &str = "tokenizer.json";
/// `tokenizer_config.json`.
pub const TOKENIZER_CONFIG: &str = "tokenizer_config.json";

/// The hash llama.cpp's converter looks up: sha256 of Python's `str()` of the token id list.
pub fn chkhsh(ids: &[u32]) -> String {
    let list = format!("[{}]", ids.iter().map(u32::to_string).collect::<Vec<_>>().join(", "));
    Sha256::digest(list.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The `tokenizer.ggml.pre` name for a hash, from llama.cpp's table (its last entry for the hash,
/// as llama.cpp's converter gives: two hashes are listed twice).
pub fn pre_tokenizer_name(hash: &str) -> Option<&'static str> {
    table::TABLE.iter().rev().find(|(h, _)| *h == hash).map(|(_, n)| *n)
}

/// `does_token_look_special` of llama.cpp's converter.
fn looks_special(t: &str) -> bool {
    matches!(t, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (t.starts_with("<|") && t.ends_with("|>"))
        || (t.starts_with("<\u{ff5c}") && t.ends_with("\u{ff5c}>"))
        || (t.starts_with("<unused") && t.ends_with('>'))
}

/// Writes the tokenizer keys for a checkpoint in `dir`; `pre_tokenizer`, when given, is written
/// as `tokenizer.ggml.pre` instead of the name llama.cpp's hash table gives (it must be one of
/// the table's names).
pub fn import(
    dir: &Path,
    arch: HfArch,
    config: &Map<String, Json>,
    vocab_size: u64,
    pre_tokenizer: Option<&str>,
    md: &mut Metadata,
) -> Result<()> {
    let tok_path = dir.join(TOKENIZER_JSON);
    let spm = dir.join("tokenizer.model");
    if spm.is_file() {
        return Err(ConvertError::Tokenizer {
            path: spm,
            message: "SentencePiece tokenizer.model is not supported by edgevl convert yet (byte-level BPE tokenizer.json is)"
                .into(),
        });
    }
    let tok_err = |message: String| ConvertError::Tokenizer { path: tok_path.clone(), message };
    if !tok_path.is_file() {
        return Err(tok_err("missing".into()));
    }
    let tok_json = JsonFile::read(&tok_path)?;
    let tok_config = JsonFile::read_optional(&dir.join(TOKENIZER_CONFIG))?;
    let tc = tok_config.as_ref().map(|t| &t.root);

    if arch == HfArch::Llama {
        if let Some(b) = tc.and_then(|t| t.get("add_prefix_space")).and_then(Json::as_bool) {
            md.set(tk::ADD_SPACE_PREFIX.into(), Value::Bool(b));
        }
        let model = tok_json.root.get("model");
        let byte_fallback =
            model.and_then(|m| m.get("byte_fallback")).and_then(Json::as_bool).unwrap_or(false);
        if byte_fallback {
            return Err(tok_err(
                "a SentencePiece-style BPE (byte_fallback) is not supported by edgevl convert yet".into(),
            ));
        }
    }

    let tokenizer = Tokenizer::from_file(&tok_path).map_err(|e| tok_err(format!("cannot load: {e}")))?;
    let vocab = tokenizer.get_vocab(true);
    if let Some(max) = vocab.values().max() {
        if u64::from(*max) >= vocab_size {
            return Err(tok_err(format!(
                "token id {max} is not below config.json's vocab_size {vocab_size}"
            )));
        }
    }
    let check =
        tokenizer.encode(table::CHECK_TEXT, true).map_err(|e| tok_err(format!("encoding failed: {e}")))?;
    let hash = chkhsh(check.get_ids());
    let pre = match pre_tokenizer {
        Some(name) => table::TABLE.iter().map(|(_, n)| *n).find(|n| *n == name).ok_or_else(|| {
            ConvertError::Options(format!(
                "--pre-tokenizer '{name}' is not a pre-tokenizer llama.cpp knows (convert_hf_to_gguf_update.py)"
            ))
        })?,
        None => pre_tokenizer_name(&hash)
            .ok_or_else(|| ConvertError::UnknownPreTokenizer { path: tok_path.clone(), chkhsh: hash.clone() })?,
    };
    // A name llama.cpp knows but edgevl's tokenizer does not run would make a file edgevl refuses.
    edgevl_tokenizer::check_pre_tokenizer(pre)
        .map_err(|e| tok_err(format!("{e}: edgevl could not run the converted file")))?;

    let n = usize::try_from(vocab_size).map_err(|_| tok_err("vocab_size too large".into()))?;
    let mut by_id: HashMap<u32, &str> = HashMap::with_capacity(vocab.len());
    for (t, id) in &vocab {
        by_id.insert(*id, t.as_str());
    }
    let added = tokenizer.get_added_tokens_decoder();
    let added_contents: std::collections::HashSet<&str> =
        added.values().map(|a| a.content.as_str()).collect();
    let mut tokens = Vec::with_capacity(n);
    let mut types = Vec::with_capacity(n);
    for i in 0..n {
        let id = i as u32;
        let Some(&tok) = by_id.get(&id) else {
            tokens.push(format!("[PAD{i}]"));
            types.push(token_type::UNUSED);
            continue;
        };
        let mut tok = tok.to_string();
        if added_contents.contains(tok.as_str()) {
            let info = added.get(&id);
            if info.is_some_and(|a| !a.normalized) {
                let ids = tokenizer
                    .encode(tok.as_str(), false)
                    .map_err(|e| tok_err(format!("encoding '{tok}': {e}")))?;
                tok = tokenizer
                    .decode(ids.get_ids(), false)
                    .map_err(|e| tok_err(format!("decoding '{tok}': {e}")))?;
            }
            if info.is_some_and(|a| a.special) || looks_special(&tok) {
                types.push(token_type::CONTROL);
            } else {
                tok = tok.replace('\u{2581}', " ");
                types.push(token_type::USER_DEFINED);
            }
        } else {
            types.push(token_type::NORMAL);
        }
        tokens.push(tok);
    }
    md.set(tk::MODEL.into(), Value::Str("gpt2".into()));
    md.set(tk::PRE.into(), Value::Str(pre.into()));
    md.set(tk::TOKENS.into(), Value::Array(Array::Str(tokens)));
    md.set(tk::TOKEN_TYPE.into(), Value::Array(Array::I32(types)));
    special_vocab(dir, &tok_json, tok_config.as_ref(), config, md)?;
    if arch == HfArch::Llama && vocab_size == 49152 {
        // llama.cpp: "Apply to granite small models only" (SmolLM's vocabulary size too).
        md.set(tk::ADD_BOS.into(), Value::Bool(false));
    }
    Ok(())
}

/// Id key for a special-token kind of `SpecialVocab`.
fn id_key(kind: &str) -> Option<&'static str> {
    use edgevl_arch::tokenizer::SpecialToken as S;
    Some(match kind {
        "bos" => S::Bos.key(),
        "eos" => S::Eos.key(),
        "unk" => S::Unk.key(),
        "sep" => S::Sep.key(),
        "pad" => S::Pad.key(),
        "cls" => tk::CLS_ID,
        "mask" => S::Mask.key(),
        "eot" => S::Eot.key(),
        "eom" => S::Eom.key(),
        _ => return None,
    })
}

/// `add_{kind}_token` key.
fn add_key(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "bos" => tk::ADD_BOS,
        "eos" => tk::ADD_EOS,
        "sep" => tk::ADD_SEP,
        _ => return None,
    })
}

/// Sets `v` in an ordered list of (key, value), keeping the first position of a key.
fn upsert<T>(list: &mut Vec<(String, T)>, k: &str, v: T, keep_existing: bool) {
    match list.iter_mut().find(|(x, _)| x == k) {
        Some(slot) if !keep_existing => slot.1 = v,
        Some(_) => {}
        None => list.push((k.to_string(), v)),
    }
}

/// gguf-py's `SpecialVocab(load_merges=True)` and `add_to_gguf`: merges, special ids, add flags,
/// chat template, normalizer flags.
fn special_vocab(
    dir: &Path,
    tok_json: &JsonFile,
    tok_config: Option<&JsonFile>,
    config: &Map<String, Json>,
    md: &mut Metadata,
) -> Result<()> {
    let merges = match tok_json.root.get("model").and_then(|m| m.get("merges")) {
        Some(Json::Array(list)) => list
            .iter()
            .map(|m| match m {
                Json::String(s) => Some(s.clone()),
                Json::Array(pair) if pair.len() == 2 => {
                    let enc =
                        |s: &str| s.chars().map(|c| if c == ' ' { '\u{120}' } else { c }).collect::<String>();
                    Some(format!("{} {}", enc(pair[0].as_str()?), enc(pair[1].as_str()?)))
                }
                _ => None,
            })
            .collect::<Option<Vec<String>>>()
            .ok_or_else(|| ConvertError::Tokenizer {
                path: tok_json.path.clone(),
                message: "model.merges is neither strings nor pairs of strings".into(),
            })?,
        _ => Vec::new(),
    };
    let added: Vec<(&str, u64)> = tok_json
        .root
        .get("added_tokens")
        .and_then(Json::as_array)
        .map(|a| {
            a.iter().filter_map(|t| Some((t.get("content")?.as_str()?, t.get("id")?.as_u64()?))).collect()
        })
        .unwrap_or_default();
    let mut kinds: Vec<&str> = cfg::SPECIAL_TOKEN_KINDS.to_vec();
    let mut ids: Vec<(String, u64)> = Vec::new();
    let mut add: Vec<(String, bool)> = Vec::new();
    let mut tc: Option<Map<String, Json>> = tok_config.map(|t| t.root.clone());
    let content = |v: Option<&Json>| -> Option<String> {
        match v? {
            Json::String(s) => Some(s.clone()),
            Json::Object(o) => o.get("content").and_then(Json::as_str).map(str::to_string),
            _ => None,
        }
    };
    // Post-processor: ByteLevel adds nothing; a TemplateProcessing's leading/trailing special tokens.
    let mut processors: Vec<&Json> = Vec::new();
    if let Some(pp) = tok_json.root.get("post_processor").filter(|p| !p.is_null()) {
        match pp.get("processors").and_then(Json::as_array) {
            Some(list) => processors.extend(list.iter()),
            None => processors.push(pp),
        }
    }
    for p in processors {
        match p.get("type").and_then(Json::as_str) {
            Some("ByteLevel") => {
                upsert(&mut add, "bos", false, true);
                upsert(&mut add, "eos", false, true);
            }
            Some("TemplateProcessing") => {
                let single = p.get("single").and_then(Json::as_array).cloned().unwrap_or_default();
                if single.len() > 1 {
                    let special_id = |j: &Json| {
                        j.get("SpecialToken")
                            .and_then(|s| s.get("id"))
                            .and_then(Json::as_str)
                            .map(str::to_string)
                    };
                    let bos = tc.as_ref().and_then(|t| content(t.get("bos_token")));
                    let eos = tc.as_ref().and_then(|t| content(t.get("eos_token")));
                    if let Some(first) = single.first().and_then(special_id) {
                        let is_bos = bos.as_deref() == Some(first.as_str());
                        if bos.is_none() {
                            if let Some(t) = tc.as_mut() {
                                t.insert("bos_token".into(), Json::String(first.clone()));
                            }
                        }
                        upsert(&mut add, "bos", is_bos || bos.is_none(), false);
                    }
                    if let Some(last) = single.last().and_then(special_id) {
                        if eos.as_deref() != Some(last.as_str()) && eos.is_some() {
                            kinds.push("eot");
                            if let Some(t) = tc.as_mut() {
                                t.insert("eot_token".into(), Json::String(eos.clone().unwrap_or_default()));
                                t.insert("eos_token".into(), Json::String(last.clone()));
                            }
                        }
                        upsert(&mut add, "eos", true, false);
                    }
                }
            }
            _ => {}
        }
    }
    let mut chat_templates: Vec<(String, String)> = Vec::new();
    // As gguf-py: no templates without a tokenizer_config.json (or with an empty one); its
    // `chat_template` key, when there, is the template whatever it holds (null or a list of no
    // usable entries: none); only without the key do the template files count.
    if let Some(tc) = tc.as_ref().filter(|tc| !tc.is_empty()) {
        chat_templates = match tc.get("chat_template") {
            Some(v) => named_templates(v),
            None => template_files(dir)?,
        };
        for kind in &kinds {
            if let Some(b) = tc.get(&format!("add_{kind}_token")).and_then(Json::as_bool) {
                upsert(&mut add, kind, b, true);
            }
            let Some(c) = content(tc.get(&format!("{kind}_token"))) else { continue };
            if let Some((_, id)) = added.iter().find(|(a, _)| *a == c) {
                upsert(&mut ids, kind, *id, true);
            }
        }
    }
    let text_config = config.get(cfg::TEXT_CONFIG);
    for kind in &kinds {
        let key = format!("{kind}_token_id");
        let v = config.get(&key).filter(|v| !v.is_null()).or_else(|| text_config.and_then(|t| t.get(&key)));
        if let Some(id) = v.and_then(Json::as_u64) {
            upsert(&mut ids, kind, id, true);
        }
    }
    if !merges.is_empty() {
        md.set(tk::MERGES.into(), Value::Array(Array::Str(merges)));
    }
    for (kind, id) in ids {
        if let (Some(k), Ok(id)) = (id_key(&kind), u32::try_from(id)) {
            md.set(k.into(), Value::U32(id));
        }
    }
    for (kind, b) in add {
        if let Some(k) = add_key(&kind) {
            md.set(k.into(), Value::Bool(b));
        }
    }
    // gguf-py's `add_chat_template`: the others by name (a name given twice keeps its last
    // template; listed here in name order, where gguf-py lists a Python set), then the list of
    // names, then the one named "default" as the template.
    let mut others = Vec::new();
    let mut default = None;
    for (name, template) in chat_templates {
        if name == "default" {
            default = Some(template);
        } else {
            md.set(format!("{}.{name}", tk::CHAT_TEMPLATE), Value::Str(template));
            others.push(name);
        }
    }
    if !others.is_empty() {
        others.sort();
        others.dedup();
        md.set(tk::CHAT_TEMPLATES.into(), Value::Array(Array::Str(others)));
    }
    if let Some(template) = default {
        md.set(tk::CHAT_TEMPLATE.into(), Value::Str(template));
    }
    if let Some(norm) = tok_json.root.get("normalizer").filter(|n| !n.is_null()) {
        let (mut lower, mut strip) = (None, None);
        normalizer_flags(norm, &mut lower, &mut strip);
        if let Some(b) = lower {
            md.set(tk::NORMALIZER_LOWERCASE.into(), Value::Bool(b));
        }
        if let Some(b) = strip {
            md.set(tk::NORMALIZER_STRIP_ACCENTS.into(), Value::Bool(b));
        }
    }
    Ok(())
}

/// The templates of a `chat_template` value as gguf-py reads it: a string is the default; a
/// list of `{"name", "template"}` gives each by name (other characters than ASCII letters and
/// digits in a name become `_`; an entry without both is skipped).
fn named_templates(v: &Json) -> Vec<(String, String)> {
    match v {
        Json::String(t) => vec![("default".into(), t.clone())],
        Json::Array(list) => list
            .iter()
            .filter_map(|c| {
                let name: String = c
                    .get("name")?
                    .as_str()?
                    .chars()
                    .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '_' })
                    .collect();
                let template = c.get("template")?.as_str()?;
                (!name.is_empty()).then(|| (name, template.to_string()))
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The templates of files beside the tokenizer, as gguf-py reads them when `tokenizer_config.json`
/// has none: `chat_template.jinja` (the default) with `additional_chat_templates/NAME.jinja`, else
/// `chat_template.json`'s `chat_template`.
fn template_files(dir: &Path) -> Result<Vec<(String, String)>> {
    let read = |path: &Path| {
        edgevl_gguf::read_regular_text(path, crate::checkpoint::MAX_JSON_BYTES)
            .map_err(|source| ConvertError::Io { path: path.to_path_buf(), source })
    };
    let jinja = dir.join("chat_template.jinja");
    if !jinja.is_file() {
        let cj = dir.join("chat_template.json");
        return Ok(JsonFile::read_optional(&cj)?
            .and_then(|j| j.root.get("chat_template").map(named_templates))
            .unwrap_or_default());
    }
    let mut out = vec![("default".to_string(), read(&jinja)?)];
    let extra = dir.join("additional_chat_templates");
    if let Ok(entries) = std::fs::read_dir(&extra) {
        let mut paths: Vec<_> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "jinja") && p.is_file())
            .collect();
        paths.sort();
        for path in paths.into_iter().take(MAX_NAMED_TEMPLATES) {
            let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            out.extend(named_templates(&serde_json::json!([{"name": name, "template": read(&path)?}])));
        }
    }
    Ok(out)
}

/// The most named templates read from `additional_chat_templates` (a folder of thousands would
/// otherwise all go into the file's header).
const MAX_NAMED_TEMPLATES: usize = 64;

/// `SpecialVocab._parse_normalizer`.
fn normalizer_flags(n: &Json, lower: &mut Option<bool>, strip: &mut Option<bool>) {
    match n.get("type").and_then(Json::as_str) {
        Some("Lowercase") => *lower = Some(true),
        Some("StripAccents") => *strip = Some(true),
        Some("BertNormalizer") => {
            if let Some(b) = n.get("lowercase").and_then(Json::as_bool) {
                *lower = Some(b);
            }
            if let Some(b) = n.get("strip_accents").and_then(Json::as_bool) {
                *strip = Some(b);
            }
        }
        Some("Sequence") => {
            for m in n.get("normalizers").and_then(Json::as_array).into_iter().flatten() {
                normalizer_flags(m, lower, strip);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_of_pythons_list_repr() {
        // sha256("[]") and sha256("[1, 2]"), as Python's hashlib gives them.
        assert_eq!(chkhsh(&[]), "4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945");
        assert_eq!(chkhsh(&[1, 2]), "3a316d6d3226f84c1e46e4447fa8d5fd800bff4a1bc6498152523cd4a602b69b");
        assert_eq!(
            pre_tokenizer_name("855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249"),
            Some("smollm")
        );
    }

    #[test]
    fn a_hash_listed_twice_takes_its_last_name() {
        // llama.cpp's `get_vocab_base_pre` sets `res` in a chain of `if`s, so its last match is
        // written: OLMo's hash is also MPT's, jina-v2-en's also bert-bge's.
        let hash = "b6dc8df998e1cfbdc4eac8243701a65afe638679230920b50d6f17d81c098166";
        assert_eq!(pre_tokenizer_name(hash), Some("olmo"));
        let hash = "0876d13b50744004aa9aeae05e7b0647eac9d801b5ba4668afc01e709c15e19f";
        assert_eq!(pre_tokenizer_name(hash), Some("jina-v2-en"));
    }
}
