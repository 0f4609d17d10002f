//! Chat templates rendered like transformers' `apply_chat_template`, compared with
//! `tests/fixtures/chat/templates.json` (rendered by transformers itself, see
//! scripts/gen_chat_template_fixtures.py).

use edgevl_testdata::{repo_root as repo, smollm2_path};

use edgevl_gguf::{GgufFile, Metadata, Value};
use edgevl_tokenizer::{ChatMessage, ChatTemplate, ContentForm};
use serde::Deserialize;

#[derive(Deserialize)]
struct Msg {
    role: String,
    content: Content,
}

/// A message's content as the fixture holds it: a string, or typed parts as a vision model's
/// processor passes them (rendered by edgevl from its marked-string form, [`ContentForm::Parts`]).
#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: String,
}

/// What marks an image in edgevl's string form of a message.
const MARKER: &str = "<__media__>";

#[derive(Deserialize)]
struct Case {
    name: String,
    template: String,
    bos_token: String,
    eos_token: String,
    messages: Vec<Msg>,
    add_generation_prompt: bool,
    expected: Option<String>,
    #[serde(default)]
    error: bool,
    #[serde(default)]
    error_message: String,
}

fn cases() -> Vec<Case> {
    let path = repo().join("tests/fixtures/chat/templates.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn messages(case: &Case) -> Vec<ChatMessage> {
    let text = |c: &Content| match c {
        Content::Text(t) => t.clone(),
        Content::Parts(parts) => {
            parts.iter().map(|p| if p.kind == "image" { MARKER } else { p.text.as_str() }).collect()
        }
    };
    case.messages.iter().map(|m| ChatMessage::new(&m.role, text(&m.content))).collect()
}

/// How `case`'s messages are handed to its template.
fn form(case: &Case) -> ContentForm<'static> {
    if case.messages.iter().any(|m| matches!(m.content, Content::Parts(_))) {
        ContentForm::Parts { image_marker: MARKER }
    } else {
        ContentForm::Text
    }
}

#[test]
fn renders_like_transformers() {
    let cases = cases();
    assert!(cases.len() >= 10);
    let mut failures = Vec::new();
    for case in &cases {
        let tpl = ChatTemplate::new(&case.template, &case.bos_token, &case.eos_token)
            .unwrap_or_else(|e| panic!("{}: template does not parse: {e}", case.name));
        let got = tpl.render_content(&messages(case), case.add_generation_prompt, form(case));
        match (&case.expected, got) {
            (Some(want), Ok(got)) if *want == got => {}
            (None, Err(e)) if case.error => {
                let msg = e.to_string();
                if !msg.contains(&case.error_message) {
                    failures.push(format!(
                        "{}: error {msg:?} does not contain {:?}",
                        case.name, case.error_message
                    ));
                }
            }
            (want, got) => {
                failures.push(format!("{}:\n  transformers {want:?}\n  edgevl       {got:?}", case.name))
            }
        }
    }
    assert!(failures.is_empty(), "{} cases differ:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn smollm2_template_from_gguf_renders_like_transformers() {
    let file = GgufFile::open(smollm2_path()).expect("open SmolLM2");
    let tpl =
        ChatTemplate::from_gguf(file.metadata()).expect("template").expect("SmolLM2 has a chat template");
    let mut checked = 0;
    for case in cases().iter().filter(|c| c.name.starts_with("smollm2/")) {
        assert_eq!(tpl.source(), case.template);
        let got = tpl.render(&messages(case), case.add_generation_prompt).expect("render");
        assert_eq!(Some(got), case.expected, "{}", case.name);
        checked += 1;
    }
    assert!(checked >= 4);
}

#[test]
fn chatml_fallback_matches_smollm2_when_a_system_message_is_given() {
    // SmolLM2's template is ChatML plus a default system message, so with an explicit system
    // message both must agree with what transformers rendered.
    for case in cases().iter().filter(|c| c.name.starts_with("smollm2/with_system")) {
        let got = ChatTemplate::chatml().render(&messages(case), case.add_generation_prompt).expect("render");
        assert_eq!(Some(got), case.expected, "{}", case.name);
    }
}

#[test]
fn missing_template_gives_none_and_bad_template_an_error() {
    let md = Metadata::new();
    assert!(ChatTemplate::from_gguf(&md).expect("no template is not an error").is_none());

    let mut md = Metadata::new();
    md.set("tokenizer.chat_template".to_owned(), Value::U32(7));
    let err = ChatTemplate::from_gguf(&md).expect_err("wrong type");
    assert!(err.to_string().contains("tokenizer.chat_template"), "{err}");

    let err = ChatTemplate::new("{% for m in messages %}", "", "").expect_err("unclosed block");
    assert!(err.to_string().contains("chat template"), "{err}");
}

/// Vision models' templates take content parts; transformers' processors build them from the
/// message (image parts where the images go). These are the published SmolVLM (Idefics3) and
/// InternVL (transformers' conversion) templates.
#[test]
fn content_parts_render_as_vision_templates_expect() {
    use edgevl_tokenizer::{ChatMessage, ChatTemplate, ContentForm};
    let smolvlm = "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}";
    let internvl = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n'}}{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' %}{{ '<IMG_CONTEXT>\\n' }}{% elif content['type'] == 'video' %}{{ '<video>\\n' }}{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}{{'<|im_end|>\\n'}}{% endfor %}{% if add_generation_prompt %}{{'<|im_start|>assistant\\n' }}{% endif %}";
    let parts = ContentForm::Parts { image_marker: "<__media__>" };
    let msgs = [
        ChatMessage::new("user", "<__media__>What is it?"),
        ChatMessage::new("assistant", "A cat."),
        ChatMessage::new("user", "And <__media__> this<__media__>"),
    ];
    let t = ChatTemplate::new(smolvlm, "", "").unwrap();
    assert_eq!(
        t.render_content(&msgs, true, parts).unwrap(),
        "<|im_start|>User:<image>What is it?<end_of_utterance>\nAssistant: A cat.<end_of_utterance>\nUser: And <image> this<image><end_of_utterance>\nAssistant:"
    );
    assert!(t.renders_image_parts("<image>"));
    let t = ChatTemplate::new(internvl, "", "").unwrap();
    assert_eq!(
        t.render_content(&msgs[..1], true, parts).unwrap(),
        "<|im_start|>user\n<IMG_CONTEXT>\nWhat is it?<|im_end|>\n<|im_start|>assistant\n"
    );
    assert!(t.renders_image_parts("<IMG_CONTEXT>"));
    // A text model's template prints the part list as a value: no image text appears.
    assert!(!ChatTemplate::chatml().renders_image_parts("<IMG_CONTEXT>"));
}

/// Renders `source` over one short user message.
fn render_hostile(source: &str) -> Result<String, edgevl_tokenizer::TokenizerError> {
    let t = ChatTemplate::new(source, "<s>", "</s>").expect("the template parses");
    t.render(&[ChatMessage::new("user", "Hi")], true)
}

/// Hostile templates (a model file's) end with an error naming the limit, quickly and without a
/// large allocation: endless loops run out of fuel, huge outputs stop at the output limit, and
/// padding wider than MAX_TEMPLATE_PAD is refused (they would ask for terabytes).
#[test]
fn hostile_templates_end_with_a_clear_error() {
    let cases = [
        ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "fuel"),
        ("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}", "passed"),
        ("{{ 'a\nb' | indent(1000000000000) }}", "padding wider than 1024"),
        ("{{ 'a\nb' | indent(width=1000000000000) }}", "padding wider than 1024"),
        ("{{ '%1000000000000d' | format(1) }}", "padding wider than 1024"),
        ("{{ '%.1000000000000f' | format(1.5) }}", "padding wider than 1024"),
        ("{{ '{:>1000000000000}'.format(1) }}", "padding wider than 1024"),
        ("{{ 'x' * 1000000000000 }}", "too large"),
        ("{% for i in range(1000000000000) %}{% endfor %}", "too many elements"),
        // These reserved room for the count given (an abort on a 100 GB allocation).
        ("{{ [1, 2, 3] | batch(4294967295) | list }}", "batch(4294967295): more than 100000"),
        ("{{ [1, 2, 3] | slice(1000000000) | list }}", "slice(1000000000): more than 100000"),
    ];
    for (source, needle) in cases {
        let e = render_hostile(source).expect_err(source).to_string();
        assert!(e.contains(needle), "{source}: {e}");
    }
}

/// minijinja recurses as deep as an operator chain is long and a value is nested: the longest
/// chain a template may hold (its length is capped) and the deepest value the fuel lets a loop
/// build render on the template thread's stack (on an 8 MiB stack, 30,000 operators aborted the
/// process); a template past the cap is refused.
#[test]
fn deep_templates_render_within_the_template_stack() {
    let chain = format!("{{{{ 1{} }}}}", " + 1".repeat(32_000));
    assert!(chain.len() <= edgevl_tokenizer::MAX_TEMPLATE_BYTES);
    assert_eq!(render_hostile(&chain).expect("renders"), "32001");
    let nots = format!("{{{{ {}true }}}}", "not ".repeat(32_000));
    assert_eq!(render_hostile(&nots).expect("renders"), "True");
    let nested = "{% set ns = namespace(s=[]) %}{% for i in range(100) %}{% for j in range(1000) %}\
                  {% set ns.s = [ns.s] %}{% endfor %}{% endfor %}{{ ns.s == ns.s }} {{ ns.s | string | length }}";
    assert_eq!(render_hostile(nested).expect("renders"), "True 200002");
    let too_long = "x".repeat(edgevl_tokenizer::MAX_TEMPLATE_BYTES + 1);
    let e = ChatTemplate::new(too_long, "", "").expect_err("too long");
    assert!(e.to_string().contains("more than the 131072 accepted"), "{e}");
}

/// The limits leave real templates alone: padding within the limit, long conversations.
#[test]
fn template_limits_leave_ordinary_renders_alone() {
    let out = render_hostile("{{ 'a\nb' | indent(4) }}|{{ '%05d' | format(42) }}|{{ '{:>3}'.format(7) }}")
        .expect("renders");
    assert_eq!(out, "a\n    b|00042|  7");
    // 2,000 messages of 1 KB through ChatML: 2 MB out, within fuel and output limits.
    let msgs: Vec<ChatMessage> =
        (0..2000).map(|i| ChatMessage::new("user", format!("{i:04}{}", "x".repeat(1020)))).collect();
    let out = ChatTemplate::chatml().render(&msgs, true).expect("a long conversation renders");
    assert_eq!(out.matches("<|im_start|>user\n").count(), 2000);
    assert!(out.ends_with("<|im_start|>assistant\n"));
}

/// `{% generation %}` tags are rewritten only where they are tags: not after a `{%` inside an
/// expression's string or a comment, not inside `{% raw %}`, not confused by a `%}` in a string
/// (expected texts from transformers 5.25's render_jinja_template).
#[test]
fn generation_tags_are_found_as_jinja_finds_them() {
    let msgs = [ChatMessage::new("user", "hi")];
    for (template, want) in [
        (
            "{% for m in messages %}{{ '{%' }}{% generation %}{{ m.content }}{% endgeneration %}{% endfor %}",
            "{%hi",
        ),
        (
            "{% for m in messages %}{# {% #}{% generation %}{{ m.content }}{% endgeneration %}{% endfor %}",
            "hi",
        ),
        ("{% raw %}{% generation %}{% endraw %}{% generation %}x{% endgeneration %}", "{% generation %}x"),
        (
            "{% for m in messages %}{% generation %}{{ m.content ~ '%}' }}{% endgeneration %}{% endfor %}",
            "hi%}",
        ),
    ] {
        let t = ChatTemplate::new(template, "", "").unwrap_or_else(|e| panic!("{template}: {e}"));
        assert_eq!(t.render(&msgs, false).unwrap(), want, "{template}");
    }
}
