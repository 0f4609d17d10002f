//! Chat templates (`tokenizer.chat_template`, Jinja) rendered like Hugging Face
//! transformers' `apply_chat_template`.

use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

use edgevl_gguf::Metadata;
use minijinja::value::{Rest, ValueKind};
use minijinja::{filters, Environment, Error, ErrorKind, State, Value};

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
/// `{% continue %}` available, `raise_exception(msg)` and `strftime_now(fmt)` (local time) defined,
/// and Python string / dict / list methods (`strip`, `startswith`, `split`, `items`, ...)
/// through minijinja-contrib's pycompat layer; `tools` and `documents` are none, and
/// transformers' `{% generation %}` blocks render their body, and `tojson` is transformers'
/// (Python's `json.dumps`, not HTML-escaped; `indent` and `sort_keys`).
///
/// The template comes from the model file, so rendering is bounded: at most
/// [`TEMPLATE_FUEL_BASE`] + [`TEMPLATE_FUEL_PER_MESSAGE`] per message template instructions
/// (minijinja's fuel: endless or huge loops stop with an error), an output of at most
/// [`TEMPLATE_OUTPUT_BASE`] bytes plus [`TEMPLATE_OUTPUT_FACTOR`] times the conversation's
/// bytes, no padding wider than [`MAX_TEMPLATE_PAD`] (`indent`, `format`, `str.format`), no
/// `batch` or `slice` count over [`MAX_TEMPLATE_COUNT`], a template of at most
/// [`MAX_TEMPLATE_BYTES`], compiled and rendered on a thread whose stack holds minijinja's
/// recursion at those bounds (operator chains as long as the template allows, values nested as
/// deep as the fuel allows). minijinja itself refuses `range` over 100,000 items and strings
/// repeated past 100 MB; a template can still grow a string by concatenating it with itself, or
/// by `replace`, in a loop (minijinja has no memory limit: a review grew one to 5-6 GB within the
/// fuel), so a template is as trusted as the rest of the model file (the server never takes one
/// from a request).
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    source: String,
    bos_token: String,
    eos_token: String,
}

/// Template instructions a render may run, plus [`TEMPLATE_FUEL_PER_MESSAGE`] a message.
pub const TEMPLATE_FUEL_BASE: u64 = 1_000_000;
/// Template instructions a render may run per message of the conversation.
pub const TEMPLATE_FUEL_PER_MESSAGE: u64 = 10_000;
/// Bytes a render may write, plus [`TEMPLATE_OUTPUT_FACTOR`] times the conversation's bytes.
pub const TEMPLATE_OUTPUT_BASE: usize = 1 << 20;
/// How many times the conversation's bytes (roles and contents) a render may write beyond
/// [`TEMPLATE_OUTPUT_BASE`].
pub const TEMPLATE_OUTPUT_FACTOR: usize = 8;
/// Widest padding a template may ask for (`indent` width, a `format` field width or precision).
pub const MAX_TEMPLATE_PAD: u64 = 1024;
/// Largest count a template may give `batch` and `slice` (each reserves room for that many).
pub const MAX_TEMPLATE_COUNT: u64 = 100_000;
/// Longest template accepted, in bytes (published chat templates take a few KiB, the largest
/// tens of KiB).
pub const MAX_TEMPLATE_BYTES: usize = 128 << 10;
/// The stack templates are compiled and rendered on. minijinja recurses as deep as a chain of
/// operators is long and a value is nested; the template's length bounds the first and the fuel
/// the second, and this stack holds both at their bounds (8 MiB, a main thread's, held about
/// 30,000 operators). It is reserved address space; only what a template uses is touched.
const TEMPLATE_STACK: usize = 512 << 20;

/// Runs `f` (a template's compilation or rendering) on a thread with [`TEMPLATE_STACK`].
fn on_template_stack<T: Send>(
    f: impl FnOnce() -> Result<T, TokenizerError> + Send,
) -> Result<T, TokenizerError> {
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("edgevl-template".into())
            .stack_size(TEMPLATE_STACK)
            .spawn_scoped(scope, f)
            .map_err(|e| TokenizerError::TemplateThread(e.to_string()))?;
        thread.join().unwrap_or_else(|_| Err(TokenizerError::TemplateThread("it panicked".into())))
    })
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
        let source = source.into();
        if source.len() > MAX_TEMPLATE_BYTES {
            return Err(TokenizerError::TemplateTooLarge { bytes: source.len(), limit: MAX_TEMPLATE_BYTES });
        }
        let source = without_generation_tags(&source);
        let t = ChatTemplate { source, bos_token: bos_token.into(), eos_token: eos_token.into() };
        on_template_stack(|| t.environment().template_from_str(&t.source).map(drop).map_err(Into::into))?;
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
        env.set_unknown_method_callback(|state, value, method, args| {
            if method == "format" && value.kind() == ValueKind::String {
                check_padding(value.as_str().unwrap_or(""), args)?;
            }
            minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
        });
        // The builtins that pad by a number the template gives, with that number bounded.
        let builtins = [
            ("indent", Value::from_function(filters::indent)),
            ("format", Value::from_function(filters::format)),
        ];
        for (name, builtin) in builtins {
            env.add_filter(name, move |state: &State, args: Rest<Value>| {
                let fmt =
                    if name == "format" { args.first().and_then(Value::as_str).unwrap_or("") } else { "" };
                check_padding(fmt, args.get(1..).unwrap_or(&[]))?;
                builtin.call(state, &args)
            });
        }
        // The builtins that reserve memory by a number the template gives, with that number bounded.
        let sized = [
            ("batch", Value::from_function(filters::batch)),
            ("slice", Value::from_function(filters::slice)),
        ];
        for (name, builtin) in sized {
            env.add_filter(name, move |state: &State, args: Rest<Value>| {
                let n = args.get(1).and_then(|v| u64::try_from(v.clone()).ok()).unwrap_or(0);
                if n > MAX_TEMPLATE_COUNT {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        format!("{name}({n}): more than {MAX_TEMPLATE_COUNT} items at once"),
                    ));
                }
                builtin.call(state, &args)
            });
        }
        env.add_filter("tojson", crate::tojson::tojson);
        env.add_function("raise_exception", |msg: String| -> Result<Value, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_function("strftime_now", |fmt: String| {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let now = i64::try_from(now).unwrap_or(0);
            crate::datefmt::strftime(&fmt, now + crate::datefmt::local_offset(now))
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
        let conversation_bytes: usize = messages.iter().map(|m| m.role.len() + m.content.len()).sum();
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| {
                // In transformers' order: a template that prints a message (`tojson`, `items()`) sees role first.
                Value::from_iter([
                    ("role", Value::from(m.role.as_str())),
                    ("content", form.content(&m.content)),
                ])
            })
            .collect();
        let ctx = minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.as_str(),
            eos_token => self.eos_token.as_str(),
            // transformers passes these as None when there are none (a template's `tools is not none`).
            tools => Value::from(()),
            documents => Value::from(()),
        };
        let n = messages.len() as u64;
        let limit =
            TEMPLATE_OUTPUT_BASE.saturating_add(TEMPLATE_OUTPUT_FACTOR.saturating_mul(conversation_bytes));
        on_template_stack(|| {
            let mut env = self.environment();
            env.set_fuel(Some(
                TEMPLATE_FUEL_BASE.saturating_add(TEMPLATE_FUEL_PER_MESSAGE.saturating_mul(n)),
            ));
            let template = env.template_from_str(&self.source)?;
            let mut out = Bounded { buf: Vec::new(), limit };
            let rendered = template.render_captured_to(ctx, &mut out).map(drop);
            match rendered {
                Ok(_) => Ok(String::from_utf8_lossy(&out.buf).into_owned()),
                Err(_) if out.buf.len() >= limit => Err(TokenizerError::TemplateOutputTooLarge { limit }),
                Err(e) => Err(e.into()),
            }
        })
    }

    /// Whether the template reads a message's content only as a list of parts (SmolVLM's does, as
    /// llama.cpp's "requires typed content"): a text message given as a string renders without
    /// its text, given as one text part ([`ContentForm::TextPart`]) with it.
    pub fn wants_content_parts(&self) -> bool {
        const PROBE: &str = "probe text";
        let msg = [ChatMessage::new("user", PROBE)];
        let keeps = |form| self.render_content(&msg, true, form).is_ok_and(|out| out.contains(PROBE));
        !keeps(ContentForm::Text) && keeps(ContentForm::TextPart)
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

/// A writer that refuses to grow past `limit` bytes (it keeps exactly `limit` then).
struct Bounded {
    buf: Vec<u8>,
    limit: usize,
}

impl io::Write for Bounded {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = self.limit - self.buf.len();
        if data.len() > room {
            self.buf.extend_from_slice(&data[..room]);
            return Err(io::Error::other("the rendered prompt is too long"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Refuses a padding wider than [`MAX_TEMPLATE_PAD`]: a number among `args` (or in their
/// keyword arguments), or a width or precision written in the format string `fmt` (`%10.3f`,
/// `{:>10}`).
fn check_padding(fmt: &str, args: &[Value]) -> Result<(), Error> {
    fn too_wide(v: &Value) -> bool {
        match v.kind() {
            ValueKind::Number => {
                i64::try_from(v.clone()).map_or(true, |n| n.unsigned_abs() > MAX_TEMPLATE_PAD)
            }
            ValueKind::Map => v.try_iter().is_ok_and(|mut keys| {
                keys.any(|k| {
                    v.get_item(&k).is_ok_and(|item| item.kind() == ValueKind::Number && too_wide(&item))
                })
            }),
            _ => false,
        }
    }
    let spec_widths = format_spec_numbers(fmt);
    if args.iter().any(too_wide) || spec_widths.into_iter().any(|n| n > MAX_TEMPLATE_PAD) {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("padding wider than {MAX_TEMPLATE_PAD} is refused"),
        ));
    }
    Ok(())
}

/// The numbers written in the conversion specs of a format string: after `%` up to the
/// conversion letter, and inside `{...}` (saturating at `u64::MAX`).
fn format_spec_numbers(fmt: &str) -> Vec<u64> {
    let mut out = Vec::new();
    let mut in_spec = false;
    let mut num: Option<u64> = None;
    for c in fmt.chars() {
        if let Some(d) = c.to_digit(10).filter(|_| in_spec) {
            num = Some(num.unwrap_or(0).saturating_mul(10).saturating_add(u64::from(d)));
            continue;
        }
        out.extend(num.take());
        match c {
            '%' | '{' => in_spec = true,
            '}' => in_spec = false,
            c if in_spec && c.is_ascii_alphabetic() && c != 'l' && c != 'h' => in_spec = false,
            _ => {}
        }
    }
    out.extend(num);
    out
}

/// `source` with transformers' `{% generation %}` / `{% endgeneration %}` tags (its marking of the
/// assistant's tokens for training, common in TRL fine-tunes) as a block that always renders its
/// body, as transformers and llama.cpp render them (minijinja has no such tag: the template did
/// not compile). Whitespace-control markers are kept; comments, expressions, strings inside
/// tags and `{% raw %}` blocks are copied as they are.
fn without_generation_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(open) = rest.find('{') {
        let (before, from) = rest.split_at(open);
        out.push_str(before);
        let close = match &from[..from.len().min(2)] {
            "{#" => "#}",
            "{{" => "}}",
            "{%" => "%}",
            _ => {
                out.push('{');
                rest = &from[1..];
                continue;
            }
        };
        // The end of the comment, expression or tag (past quoted strings), or of the text.
        let end = if close == "#}" { from.find(close).map(|e| e + 2) } else { tag_end(from, close) };
        let end = end.unwrap_or(from.len());
        let tag = &from[..end];
        rest = &from[end..];
        if close != "%}" {
            out.push_str(tag);
            continue;
        }
        let (lead, word, trail) = tag_parts(tag);
        match word {
            "generation" => out.push_str(&format!("{{%{lead} if true {trail}%}}")),
            "endgeneration" => out.push_str(&format!("{{%{lead} endif {trail}%}}")),
            "raw" => {
                // Up to and including the closing `{% endraw %}` (any markers), unchanged.
                out.push_str(tag);
                let stop = endraw_end(rest).unwrap_or(rest.len());
                out.push_str(&rest[..stop]);
                rest = &rest[stop..];
            }
            _ => out.push_str(tag),
        }
    }
    out.push_str(rest);
    out
}

/// The byte just past `close` ending the tag or expression that starts `text`, skipping quoted
/// strings (which may hold `close`).
fn tag_end(text: &str, close: &str) -> Option<usize> {
    let mut quote = None;
    let mut chars = text.char_indices().skip(2);
    while let Some((i, c)) = chars.next() {
        match quote {
            Some(_) if c == '\\' => {
                chars.next();
            }
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if text[i..].starts_with(close) => return Some(i + close.len()),
            None => {}
        }
    }
    None
}

/// A `{% ... %}` tag's leading whitespace-control marker, its statement (trimmed) and its trailing
/// marker (`-` or `+`, or empty).
fn tag_parts(tag: &str) -> (&str, &str, &str) {
    let inner = tag.get(2..tag.len().saturating_sub(2)).unwrap_or("");
    let lead = if inner.starts_with(['-', '+']) { &inner[..1] } else { "" };
    let body = &inner[lead.len()..];
    let trail = if body.ends_with(['-', '+']) { &body[body.len() - 1..] } else { "" };
    (lead, body[..body.len() - trail.len()].trim(), trail)
}

/// The byte just past the first `{% endraw %}` tag (with any whitespace-control markers) in `text`.
fn endraw_end(text: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(at) = text[from..].find("{%").map(|a| from + a) {
        let end = text[at..].find("%}").map(|e| at + e + 2)?;
        if tag_parts(&text[at..end]).1 == "endraw" {
            return Some(end);
        }
        from = at + 2;
    }
    None
}

/// How message contents are handed to a chat template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentForm<'a> {
    /// A string, as text models' templates expect.
    Text,
    /// A list of parts, as transformers' processors pass them to vision models' templates:
    /// the content is split at each `image_marker` into `{"type": "text", "text": ...}` parts
    /// (empty ones left out; an empty message is one empty text part) and `{"type": "image"}`
    /// parts, in order.
    Parts {
        /// What marks an image in a message's text.
        image_marker: &'a str,
    },
    /// The whole content as one text part: [`ContentForm::Parts`] without images, for a template
    /// that reads contents only as parts when no image can be in them.
    TextPart,
}

impl ContentForm<'_> {
    fn content(self, text: &str) -> Value {
        match self {
            ContentForm::Text => Value::from(text),
            ContentForm::Parts { image_marker } => {
                let mut parts = Vec::new();
                for (i, piece) in text.split(image_marker).enumerate() {
                    if i > 0 {
                        parts.push(Value::from_iter([("type", Value::from("image"))]));
                    }
                    if !piece.is_empty() {
                        parts.push(Value::from_iter([
                            ("type", Value::from("text")),
                            ("text", Value::from(piece)),
                        ]));
                    }
                }
                // An empty message is one empty text part (as transformers passes it), not an empty
                // list: templates read `content[0]` (SmolVLM's failed on an empty reply in the history).
                if parts.is_empty() {
                    parts.push(Value::from_iter([("type", Value::from("text")), ("text", Value::from(""))]));
                }
                Value::from(parts)
            }
            ContentForm::TextPart => Value::from(vec![Value::from_iter([
                ("type", Value::from("text")),
                ("text", Value::from(text)),
            ])]),
        }
    }
}
