//! Chat templates (`tokenizer.chat_template`, Jinja) rendered like Hugging Face
//! transformers' `apply_chat_template`.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use edgevl_gguf::Metadata;
use minijinja::{Environment, Error, ErrorKind, Value};

use crate::config::{keys, TokenizerConfig};
use crate::{Tokenizer, TokenizerError};

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, ...
    pub role: String,
    /// The message text.
    pub content: String,
}

impl ChatMessage {
    /// A message with this role and content.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage { role: role.into(), content: content.into() }
    }
}

/// A Jinja chat template with the `bos_token` / `eos_token` values it is rendered with.
///
/// Rendering follows transformers: `trim_blocks` and `lstrip_blocks` on, `{% break %}` /
/// `{% continue %}` available, `raise_exception(msg)` and `strftime_now(fmt)` (UTC) defined,
/// and Python string / dict / list methods (`strip`, `startswith`, `split`, `items`, ...)
/// through minijinja-contrib's pycompat layer. Not supported: tools / documents, and
/// transformers' non-HTML-escaping `tojson`.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    source: String,
    bos_token: String,
    eos_token: String,
}

/// The ChatML format (`<|im_start|>role\ncontent<|im_end|>\n`).
const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

impl ChatTemplate {
    /// Parses `source`; syntax errors are reported here rather than at render time.
    pub fn new(
        source: impl Into<String>,
        bos_token: impl Into<String>,
        eos_token: impl Into<String>,
    ) -> Result<Self, TokenizerError> {
        let t =
            ChatTemplate { source: source.into(), bos_token: bos_token.into(), eos_token: eos_token.into() };
        t.environment().template_from_str(&t.source)?;
        Ok(t)
    }

    /// The template stored in `tokenizer.chat_template`, with `bos_token` / `eos_token` set
    /// to the texts of the model's BOS / EOS tokens. `Ok(None)` when the file has no
    /// template: the caller should then warn (one line) and fall back to
    /// [`ChatTemplate::chatml`].
    pub fn from_gguf(md: &Metadata) -> Result<Option<Self>, TokenizerError> {
        let source = md
            .opt_str(keys::CHAT_TEMPLATE)
            .map_err(|source| TokenizerError::Metadata { key: keys::CHAT_TEMPLATE, source })?;
        if source.is_none() {
            return Ok(None);
        }
        let tok = Tokenizer::from_config(&TokenizerConfig::from_metadata(md)?)?;
        Self::from_gguf_with_tokenizer(md, &tok)
    }

    /// Like [`ChatTemplate::from_gguf`], reusing an already built tokenizer of the same file
    /// for the BOS / EOS texts.
    pub fn from_gguf_with_tokenizer(md: &Metadata, tok: &Tokenizer) -> Result<Option<Self>, TokenizerError> {
        let source = md
            .opt_str(keys::CHAT_TEMPLATE)
            .map_err(|source| TokenizerError::Metadata { key: keys::CHAT_TEMPLATE, source })?;
        let Some(source) = source else {
            return Ok(None);
        };
        let text = |id: Option<u32>| id.and_then(|id| tok.token_text(id)).unwrap_or("").to_owned();
        Self::new(source, text(tok.bos()), text(tok.eos())).map(Some)
    }

    /// The ChatML template, the fallback for files without `tokenizer.chat_template`
    /// (ChatML is what SmolLM2 and Qwen2 use; other models may expect another format).
    pub fn chatml() -> Self {
        ChatTemplate { source: CHATML.to_owned(), bos_token: String::new(), eos_token: String::new() }
    }

    /// The template text.
    pub fn source(&self) -> &str {
        &self.source
    }

    fn environment(&self) -> Environment<'static> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> Result<Value, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_function("strftime_now", |fmt: String| {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            crate::datefmt::strftime(&fmt, i64::try_from(now).unwrap_or(0))
        });
        env
    }

    /// Renders the conversation; with `add_generation_prompt` the text ends with the header
    /// of the assistant's reply. Each message's content is a string.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, TokenizerError> {
        self.render_content(messages, add_generation_prompt, ContentForm::Text)
    }

    /// Renders the conversation with message contents in `form`.
    pub fn render_content(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        form: ContentForm<'_>,
    ) -> Result<String, TokenizerError> {
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| {
                let mut map = BTreeMap::new();
                map.insert("role", Value::from(m.role.as_str()));
                map.insert("content", form.content(&m.content));
                Value::from(map)
            })
            .collect();
        let ctx = minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.as_str(),
            eos_token => self.eos_token.as_str(),
        };
        Ok(self.environment().render_str(&self.source, ctx)?)
    }

    /// Whether the template renders content parts (`{"type": "image"}`) as vision models'
    /// templates do: a user message of an image and a text, rendered in
    /// [`ContentForm::Parts`], gives `image_text` (what the template writes for an image) and
    /// the text.
    pub fn renders_image_parts(&self, image_text: &str) -> bool {
        const MARKER: &str = "\u{1}image\u{1}";
        const PROBE: &str = "probe text";
        let msg = [ChatMessage::new("user", format!("{MARKER}{PROBE}"))];
        self.render_content(&msg, true, ContentForm::Parts { image_marker: MARKER })
            .is_ok_and(|out| out.contains(image_text) && out.contains(PROBE))
    }
}

/// How message contents are handed to a chat template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentForm<'a> {
    /// A string, as text models' templates expect.
    Text,
    /// A list of parts, as transformers' processors pass them to vision models' templates:
    /// the content is split at each `image_marker` into `{"type": "text", "text": ...}` parts
    /// (empty ones left out) and `{"type": "image"}` parts, in order.
    Parts {
        /// What marks an image in a message's text.
        image_marker: &'a str,
    },
}

impl ContentForm<'_> {
    fn content(self, text: &str) -> Value {
        match self {
            ContentForm::Text => Value::from(text),
            ContentForm::Parts { image_marker } => {
                let mut parts = Vec::new();
                for (i, piece) in text.split(image_marker).enumerate() {
                    if i > 0 {
                        parts.push(Value::from(BTreeMap::from([("type", Value::from("image"))])));
                    }
                    if !piece.is_empty() {
                        parts.push(Value::from(BTreeMap::from([
                            ("type", Value::from("text")),
                            ("text", Value::from(piece)),
                        ])));
                    }
                }
                Value::from(parts)
            }
        }
    }
}
