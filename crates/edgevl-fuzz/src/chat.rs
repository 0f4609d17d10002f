//! Chat templates (the committed real-world templates and the fixture models') rendering
//! arbitrary conversations, as text and as content parts.

use std::sync::OnceLock;

use edgevl_tokenizer::{ChatMessage, ChatTemplate, ContentForm, Tokenizer};

use crate::split_selector;
use crate::text::fixture_models;

/// The marker image parts are split at (the runtime's).
const MARKER: &str = edgevl_runtime::MEDIA_MARKER;

fn templates() -> &'static [ChatTemplate] {
    static TEMPLATES: OnceLock<Vec<ChatTemplate>> = OnceLock::new();
    TEMPLATES.get_or_init(|| {
        let path = edgevl_testdata::fixture("chat/templates.json");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let cases: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        let s = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or("").to_owned();
        let mut out: Vec<ChatTemplate> = cases
            .iter()
            .filter_map(|c| ChatTemplate::new(s(c, "template"), s(c, "bos_token"), s(c, "eos_token")).ok())
            .collect();
        for f in fixture_models() {
            let tok = Tokenizer::from_gguf(f.metadata()).unwrap_or_else(|e| panic!("{e}"));
            out.extend(ChatTemplate::from_gguf_with_tokenizer(f.metadata(), &tok).ok().flatten());
        }
        out.push(ChatTemplate::chatml());
        out
    })
}

/// Selector byte (template, content form, generation prompt), then the conversation: text
/// (invalid UTF-8 replaced) split at NUL into messages, each message's first character picking
/// its role (system, user, assistant, tool, or the character itself). Rendering gives text or
/// a template error, never a panic; a template that renders content parts keeps every message's
/// text.
pub fn chat_template(data: &[u8]) {
    let (sel, rest) = split_selector(data);
    let all = templates();
    let template = &all[usize::from(sel) % all.len()];
    let text = String::from_utf8_lossy(rest);
    let messages: Vec<ChatMessage> = text
        .split('\0')
        .map(|m| {
            let mut chars = m.chars();
            let role = match chars.next() {
                Some('s') => "system".to_owned(),
                Some('a') => "assistant".to_owned(),
                Some('t') => "tool".to_owned(),
                Some(c) if c.is_ascii_digit() => c.to_string(),
                _ => "user".to_owned(),
            };
            ChatMessage::new(role, chars.as_str())
        })
        .collect();
    let add_generation_prompt = sel & 0x80 != 0;
    let form = if sel & 0x40 != 0 { ContentForm::Parts { image_marker: MARKER } } else { ContentForm::Text };
    let _ = template.render_content(&messages, add_generation_prompt, form);
}
