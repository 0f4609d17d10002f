//! `general.*` naming, as `gguf-py`'s `Metadata.load` derives it when there is no model card:
//! from `config.json`'s `_name_or_path` (when it looks like a hub id) and then the directory name,
//! split by `get_model_id_components`; the size label from the parameter count; sampler settings
//! from `generation_config.json`. (Model cards, `README.md` front matter, are not read.)

use std::path::Path;

use edgevl_arch::general;

use crate::checkpoint::JsonFile;
use edgevl_gguf::{Metadata, Value};
use serde_json::{Map, Value as Json};

/// The name parts of a model id.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NameParts {
    /// The model part of the id (after `org/`).
    pub full_name: Option<String>,
    /// The organisation part.
    pub org: Option<String>,
    /// Base name.
    pub basename: Option<String>,
    /// Fine-tune.
    pub finetune: Option<String>,
    /// Version.
    pub version: Option<String>,
    /// Size label.
    pub size_label: Option<String>,
}

/// The naming keys of a converted file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Naming {
    /// `general.name`.
    pub name: Option<String>,
    /// `general.organization`.
    pub organization: Option<String>,
    /// `general.basename`.
    pub basename: Option<String>,
    /// `general.finetune`.
    pub finetune: Option<String>,
    /// `general.version`.
    pub version: Option<String>,
    /// `general.size_label`.
    pub size_label: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Basename,
    SizeLabel,
    Finetune,
    Version,
    Type,
}

fn is_version(p: &str) -> bool {
    // (v|iter)?\d+([.]\d+)*, case-insensitive
    let l = p.to_ascii_lowercase();
    let rest = l.strip_prefix("iter").or_else(|| l.strip_prefix('v')).unwrap_or(&l);
    !rest.is_empty() && rest.split('.').all(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
}

fn is_quant_type(p: &str) -> bool {
    // i?q\d(_\w)*|b?fp?(16|32), case-insensitive
    let l = p.to_ascii_lowercase();
    let q = l.strip_prefix('i').unwrap_or(&l);
    if let Some(rest) = q.strip_prefix('q') {
        let mut it = rest.chars();
        if it.next().is_some_and(|c| c.is_ascii_digit()) {
            let tail: String = it.collect();
            if tail.is_empty() {
                return true;
            }
            // (_\w)* : pairs of '_' and one word char
            let b = tail.as_bytes();
            if b.len() % 2 == 0
                && b.chunks(2).all(|c| c[0] == b'_' && (c[1].is_ascii_alphanumeric() || c[1] == b'_'))
            {
                return true;
            }
        }
    }
    let f = l.strip_prefix('b').unwrap_or(&l);
    let f = f.strip_prefix('f').map(|r| r.strip_prefix('p').unwrap_or(r));
    matches!(f, Some("16") | Some("32"))
}

fn is_size(p: &str) -> bool {
    // (([A]|\d+[x])?\d+([._]\d+)?[KMBT][\d]?|small|mini|medium|large|x?xl), case-insensitive
    let l = p.to_ascii_lowercase();
    if matches!(l.as_str(), "small" | "mini" | "medium" | "large" | "xl" | "xxl") {
        return true;
    }
    let b = l.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let s = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > s
    };
    // optional prefix: 'a' or \d+x
    let try_core = |mut i: usize| -> bool {
        if !digits(&mut i) {
            return false;
        }
        if i < b.len() && (b[i] == b'.' || b[i] == b'_') {
            let mut j = i + 1;
            if digits(&mut j) {
                i = j;
            }
        }
        if i < b.len() && b"kmbt".contains(&b[i]) {
            i += 1;
            if i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            return i == b.len();
        }
        false
    };
    if try_core(0) {
        return true;
    }
    if b.first() == Some(&b'a') && try_core(1) {
        return true;
    }
    if digits(&mut i) && i < b.len() && b[i] == b'x' && try_core(i + 1) {
        return true;
    }
    false
}

/// `Metadata.get_model_id_components`.
pub fn model_id_components(model_id: &str, total_params: i64) -> NameParts {
    if model_id.contains(' ') {
        return NameParts { full_name: Some(model_id.to_string()), ..Default::default() };
    }
    let (mut org, full) = match model_id.split_once('/') {
        Some((o, f)) => (Some(o.to_string()), f.to_string()),
        None => (None, model_id.to_string()),
    };
    if org.as_deref().is_some_and(|o| o.starts_with('.')) {
        org = None;
    }
    let mut parts: Vec<String> = full.split('-').filter(|p| !p.is_empty()).map(str::to_string).collect();
    let mut kinds: Vec<Vec<Kind>> = vec![Vec::new(); parts.len()];
    for i in 0..parts.len() {
        let part = parts[i].clone();
        if is_version(&part) {
            kinds[i].push(Kind::Version);
        } else if is_quant_type(&part) {
            kinds[i].push(Kind::Type);
            parts[i] = part.to_uppercase();
        } else if i > 0 && is_size(&part) {
            let mut p: Vec<char> = part.replace('_', ".").chars().collect();
            let n = p.len();
            if p[n - 1].is_ascii_digit() && n >= 2 {
                // bloom-7b1 -> 7.1B
                let last = p[n - 1];
                let pen = p[n - 2];
                p.truncate(n - 2);
                p.push('.');
                p.push(last);
                p.push(pen);
            }
            let n = p.len();
            if n > 1 && p[n - 2].is_ascii_digit() && "kmbt".contains(p[n - 1]) {
                p[n - 1] = p[n - 1].to_ascii_uppercase();
            }
            if total_params != 0 {
                let n = p.len();
                let num: String = p[..n - 1].iter().collect();
                if let (Ok(v), Some(exp)) = (num.parse::<f64>(), " KMBT".find(p[n - 1])) {
                    let label = v * 1000f64.powi(exp as i32);
                    let tp = total_params as f64;
                    if (total_params < 0 && label < (total_params.unsigned_abs() / 8) as f64)
                        || (total_params > 0 && (label - tp).abs() > (7 * total_params / 8) as f64)
                    {
                        kinds[i].push(Kind::Finetune);
                        p[n - 1] = p[n - 1].to_ascii_lowercase();
                    }
                }
            }
            if kinds[i].is_empty() {
                kinds[i].push(Kind::SizeLabel);
            }
            parts[i] = p.into_iter().collect();
        } else if i > 0
            && matches!(part.to_ascii_lowercase().as_str(), "chat" | "instruct" | "vision" | "lora")
        {
            if total_params < 0 && part.eq_ignore_ascii_case("lora") {
                kinds[i].push(Kind::Type);
            } else {
                kinds[i].push(Kind::Finetune);
            }
        }
    }
    let numeric_size = parts
        .iter()
        .zip(&kinds)
        .any(|(n, k)| k.contains(&Kind::SizeLabel) && n.chars().any(|c| c.is_ascii_digit()));
    if numeric_size {
        for (n, k) in parts.iter().zip(kinds.iter_mut()) {
            if k.contains(&Kind::SizeLabel) && n.chars().all(char::is_alphabetic) {
                k.retain(|x| *x != Kind::SizeLabel);
            }
        }
    }
    let mut at_start = true;
    for (part, k) in parts.iter().zip(kinds.iter_mut()) {
        let alpha_first = part.chars().next().is_some_and(char::is_alphabetic);
        if at_start && ((k.is_empty() && alpha_first) || k.contains(&Kind::Version)) {
            k.push(Kind::Basename);
        } else {
            at_start = false;
            if k.is_empty() {
                k.push(Kind::Finetune);
            }
        }
    }
    for k in kinds.iter_mut().rev() {
        if k.contains(&Kind::Basename) && k.len() > 1 {
            k.retain(|x| *x != Kind::Basename);
        } else {
            break;
        }
    }
    let join = |f: &dyn Fn(&Vec<Kind>) -> bool| -> Option<String> {
        let v: Vec<&str> = parts.iter().zip(&kinds).filter(|(_, k)| f(k)).map(|(n, _)| n.as_str()).collect();
        (!v.is_empty()).then(|| v.join("-"))
    };
    let mut basename = join(&|k| k.contains(&Kind::Basename));
    let mut sizes: Vec<&str> = Vec::new();
    for (n, k) in parts.iter().zip(&kinds) {
        if k.contains(&Kind::SizeLabel) && !sizes.contains(&n.as_str()) {
            sizes.push(n);
        }
    }
    let size_label = (!sizes.is_empty()).then(|| sizes.join("-"));
    let finetune = join(&|k| k.contains(&Kind::Finetune));
    let version = join(&|k| k.contains(&Kind::Version) && !k.contains(&Kind::Basename));
    if size_label.is_none() && finetune.is_none() && version.is_none() {
        basename = None;
    }
    NameParts { full_name: Some(full), org, basename, finetune, version, size_label }
}

/// `Metadata.id_to_title`: title-case lowercase words that are not versions or numbers, `-` to space.
pub fn id_to_title(s: &str) -> String {
    s.trim()
        .replace('-', " ")
        .split_whitespace()
        .map(|w| {
            let lower = w.chars().any(char::is_alphabetic) && !w.chars().any(char::is_uppercase);
            let versionish =
                w.starts_with(|c: char| c.is_ascii_digit()) || is_version(w) && w.starts_with('v');
            if lower && !versionish {
                title(w)
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Python's `str.title()` for ASCII-ish words: upper after a non-letter, lower after a letter.
fn title(w: &str) -> String {
    let mut out = String::with_capacity(w.len());
    let mut prev_alpha = false;
    for c in w.chars() {
        if prev_alpha {
            out.extend(c.to_lowercase());
        } else {
            out.extend(c.to_uppercase());
        }
        prev_alpha = c.is_alphabetic();
    }
    out
}

/// gguf-py's `model_weight_count_rounded_notation(n, min_digits=2)`.
pub fn size_label(total_params: u64) -> String {
    let n = total_params as f64;
    let (scaled, suffix) = if n > 1e12 {
        (n * 1e-12, "T")
    } else if n > 1e9 {
        (n * 1e-9, "B")
    } else if n > 1e6 {
        (n * 1e-6, "M")
    } else {
        (n * 1e-3, "K")
    };
    let rounded = format!("{}", scaled.round_ties_even() as i64);
    let fix = 2usize.saturating_sub(rounded.trim_start_matches('0').len());
    format!("{scaled:.fix$}{suffix}")
}

impl Naming {
    /// The naming heuristics for a checkpoint in `dir` with `config` (merged) and `total_params` elements.
    pub fn derive(dir: &Path, config: &Map<String, Json>, total_params: u64) -> Self {
        let mut n = Naming::default();
        let tp = i64::try_from(total_params).unwrap_or(i64::MAX);
        let mut apply = |p: NameParts| {
            n.name = n.name.take().or(p.full_name.as_deref().map(id_to_title));
            n.organization = n.organization.take().or(p.org.as_deref().map(id_to_title));
            n.basename = n.basename.take().or(p.basename);
            n.finetune = n.finetune.take().or(p.finetune);
            n.version = n.version.take().or(p.version);
            n.size_label = n.size_label.take().or(p.size_label);
        };
        if let Some(id) = config.get(edgevl_arch::hf::config::NAME_OR_PATH).and_then(Json::as_str) {
            if id.matches('/').count() <= 1 {
                apply(model_id_components(id, tp));
            }
        }
        let dir_name = dir.file_name().map(|s| s.to_string_lossy().into_owned());
        if let Some(d) = dir_name.as_deref() {
            apply(model_id_components(d, tp));
        }
        if n.name.is_none() {
            n.name = dir_name;
        }
        if n.size_label.is_none() && total_params > 0 {
            n.size_label = Some(size_label(total_params));
        }
        n
    }

    /// Writes the keys in `set_gguf_meta_model`'s order (after any sampling keys).
    pub fn write(&self, md: &mut Metadata) {
        let s = |v: &str| Value::Str(v.to_string());
        md.set(general::NAME.into(), s(self.name.as_deref().unwrap_or("")));
        for (key, v) in [
            (general::VERSION, &self.version),
            (general::ORGANIZATION, &self.organization),
            (general::FINETUNE, &self.finetune),
            (general::BASENAME, &self.basename),
            (general::SIZE_LABEL, &self.size_label),
        ] {
            if let Some(v) = v {
                md.set(key.into(), s(v));
            }
        }
    }
}

/// Writes the keys every converted file starts with, in llama.cpp's order: `general.architecture`
/// = `arch`, `general.type` = `file_kind`, the sampler settings of the checkpoint's
/// `generation_config.json`, then the naming keys derived from `dir`, `config` and `n_params`.
pub fn write_header(
    md: &mut Metadata,
    dir: &Path,
    arch: &str,
    file_kind: &str,
    config: &Map<String, Json>,
    n_params: u64,
) {
    md.set(general::ARCHITECTURE.into(), Value::Str(arch.into()));
    md.set(general::TYPE.into(), Value::Str(file_kind.into()));
    if let Some(gen) = JsonFile::read_optional(&dir.join(GENERATION_CONFIG)).ok().flatten() {
        write_sampling(md, &gen.root);
    }
    Naming::derive(dir, config, n_params).write(md);
}

/// `generation_config.json`: recommended sampler settings.
pub const GENERATION_CONFIG: &str = "generation_config.json";

/// Sampler settings from `generation_config.json`, as `general.sampling.*` (ints as i32, floats as f32).
pub fn write_sampling(md: &mut Metadata, gen: &Map<String, Json>) {
    for (field, key) in general::SAMPLING_KEYS {
        let v = gen.get(field).or_else(|| {
            if field == "repetition_penalty" {
                gen.get("penalty_repeat")
            } else {
                None
            }
        });
        let value = match v {
            Some(Json::String(s)) => Value::Str(s.clone()),
            Some(Json::Number(n)) if matches!(field, "top_k" | "penalty_last_n" | "mirostat") => {
                match n.as_i64() {
                    Some(i) => Value::I32(i as i32),
                    None => continue,
                }
            }
            Some(Json::Number(n)) => match n.as_f64() {
                Some(f) => Value::F32(f as f32),
                None => continue,
            },
            _ => continue,
        };
        md.set(key.into(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids_split_as_gguf_py_does() {
        // Expected values from gguf-py's Metadata.get_model_id_components (its own unit tests).
        let p = model_id_components("Mixtral-8x7B-Instruct-v0.1", 0);
        assert_eq!(
            (p.basename.as_deref(), p.size_label.as_deref(), p.finetune.as_deref(), p.version.as_deref()),
            (Some("Mixtral"), Some("8x7B"), Some("Instruct"), Some("v0.1"))
        );
        let p = model_id_components("bigscience/bloom-7b1-petals", 0);
        assert_eq!(
            (p.org.as_deref(), p.basename.as_deref(), p.size_label.as_deref(), p.finetune.as_deref()),
            (Some("bigscience"), Some("bloom"), Some("7.1B"), Some("petals"))
        );
        let p = model_id_components("SmolLM2-135M-Instruct", 134515008);
        assert_eq!(
            (p.basename.as_deref(), p.size_label.as_deref(), p.finetune.as_deref()),
            (Some("SmolLM2"), Some("135M"), Some("Instruct"))
        );
        assert_eq!(id_to_title("SmolLM2-135M-Instruct"), "SmolLM2 135M Instruct");
        assert_eq!(id_to_title("meta-llama"), "Meta Llama");
        assert_eq!(size_label(134515008), "135M");
        assert_eq!(size_label(2_730_000_000), "2.7B");
    }
}
