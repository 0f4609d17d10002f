#!/usr/bin/env python3
"""Write tests/fixtures/chat/templates.json: chat templates rendered by Hugging Face transformers.

Each case is rendered with transformers' own `render_jinja_template` (what `apply_chat_template`
calls: a sandboxed jinja2 environment with trim_blocks, lstrip_blocks, loop controls,
raise_exception, ...).  Cases whose template raises record `"error": true` instead of `expected`.

Templates: SmolLM2-135M-Instruct's (read from its GGUF, with its BOS/EOS texts), the classic
LLaMA-2 chat template (raise_exception, .strip()), Qwen2.5-Instruct's (whitespace control,
attribute access to missing keys, tool-role turns), a multi-line template exercising
trim_blocks/lstrip_blocks, {% break %}/{% continue %}, namespace() and Python string methods,
one checking that strftime_now is defined, one with transformers' tojson, one with its {% generation %} blocks and
`tools` / `documents` tests, and SmolVLM's template over typed content parts (empty ones included).

Usage (reference venv):  /root/venv-ref/bin/python scripts/gen_chat_template_fixtures.py [MODEL.gguf]
"""
import json
import os
import sys
from pathlib import Path

import gguf
from transformers.utils.chat_template_utils import render_jinja_template

REPO = Path(__file__).resolve().parent.parent
model = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser(
    os.environ.get("EDGEVL_CACHE", "~/.cache/edgevl") + "/SmolLM2-135M-Instruct.Q4_1.gguf")

reader = gguf.GGUFReader(model)
tokens = reader.fields["tokenizer.ggml.tokens"].contents()
smollm2 = {
    "template": reader.fields["tokenizer.chat_template"].contents(),
    "bos_token": tokens[reader.fields["tokenizer.ggml.bos_token_id"].contents()],
    "eos_token": tokens[reader.fields["tokenizer.ggml.eos_token_id"].contents()],
}

llama2 = {
    "template": (
        "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
        "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
        "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
        "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
        "{% if loop.index0 == 0 and system_message != false %}"
        "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
        "{% else %}{% set content = message['content'] %}{% endif %}"
        "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
        "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
    ),
    "bos_token": "<s>",
    "eos_token": "</s>",
}

features = {
    "template": """{%- set ns = namespace(system=0) -%}
{% for m in messages %}
    {% if m.role == 'system' %}
        {% set ns.system = ns.system + 1 %}
    {% endif %}
{% endfor %}
{{ bos_token }}[{{ ns.system }} system]
{% for m in messages %}
    {% if m['content'].startswith('SKIP') %}{% continue %}{% endif %}
    {% if m['content'] == 'STOP' %}{% break %}{% endif %}
    <{{ m['role'] | upper }}> {{ m['content'].strip() | replace('\\n', ' / ') }} ({{ m['content'].split() | length }} words, {{ loop.index }}/{{ loop.length }})
    {% if m['content'].endswith('?') %}
        question: {{ m['content'].lower().title() }}
    {% endif %}
{% endfor %}
{% if add_generation_prompt %}
<ASSISTANT>
{% endif %}
{{ eos_token }}""",
    "bos_token": "<BOS>",
    "eos_token": "<EOS>",
}

# Qwen2.5-Instruct's template (the tool-calling branches are not exercised: no tools are passed).
qwen25 = {
    "template": """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
""",
    "bos_token": "",
    "eos_token": "<|im_end|>",
}

# strftime_now is defined (its value depends on the day, so only its length is compared).
dates = {
    "template": "{% if strftime_now is defined %}{{ strftime_now('%Y') | length }}{% else %}none{% endif %}"
                "{{ messages[0]['content'] | trim }}",
    "bos_token": "",
    "eos_token": "",
}

# transformers' {% generation %} blocks (TRL's assistant-only loss marks the reply with them), with
# whitespace control, and `tools` / `documents` passed as None when there are none.
generation = {
    "template": """{{ 'T' if tools is not none else 'N' }}{{ 'D' if documents is not none else 'n' }}
{% for m in messages %}<|im_start|>{{ m['role'] }}
{% if m['role'] == 'assistant' %}{%- generation -%}
{{ m['content'] }}<|im_end|>
{%- endgeneration %}
{% else %}{{ m['content'] }}<|im_end|>
{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant
{% endif %}""",
    "bos_token": "",
    "eos_token": "<|im_end|>",
}

# transformers' tojson (Python's json.dumps, ensure_ascii=False, no HTML escaping) on messages, dict
# literals (insertion order, nested, empty), floats in both notations, indent and sort_keys; and a
# message's items() in insertion order.
tojson = {
    "template": """{{ messages | tojson }}
{{ messages[0] | tojson(indent=2) }}
{{ {'b': 1, 'a': [1.5, none, true, false, 'x'], 'c': 1e20, 'd': 0.0001, 'e': -0.00000015, 'f': 10, 'g': {}, 'h': []} | tojson }}
{{ {'b': 1, 'a': {'z': 2, 'y': [3]}} | tojson(sort_keys=true, indent=1) }}
{% for k, v in messages[0].items() %}{{ k }}={{ v }};{% endfor %}""",
    "bos_token": "",
    "eos_token": "",
}

# SmolVLM's template (Idefics3), which reads message['content'] as a list of typed parts, as a
# vision model's processor passes them; read from the tiny SmolVLM fixture.
smolvlm_reader = gguf.GGUFReader(str(REPO / "tests/fixtures/tiny-smolvlm/model.gguf"))
smolvlm = {
    "template": smolvlm_reader.fields["tokenizer.chat_template"].contents(),
    "bos_token": "<|im_start|>",
    "eos_token": "<end_of_utterance>",
}

conversations = {
    "tool_turn": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "Let me check."},
        {"role": "tool", "content": "{\"temp\": 21}"},
        {"role": "tool", "content": "{\"sky\": \"clear\"}"},
        {"role": "user", "content": "Thanks"},
    ],
    "single_user": [{"role": "user", "content": "Hello! How are you?"}],
    "with_system": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "  What is 2+2?  "},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3+3?\nExplain."},
    ],
    "unicode": [{"role": "user", "content": "héllo 世界 😀 <b>&amp;</b> \"quotes\" 'single'"}],
    "control_flow": [
        {"role": "user", "content": "first question?"},
        {"role": "assistant", "content": "SKIP this one"},
        {"role": "user", "content": "  multi\nline  "},
        {"role": "assistant", "content": "STOP"},
        {"role": "user", "content": "never shown"},
    ],
    # Typed parts (a vision model's processor's form); an empty reply is one empty text part.
    "parts_empty_reply": [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is it?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": ""}]},
        {"role": "user", "content": [{"type": "text", "text": "again"}]},
    ],
    "parts_empty_system": [
        {"role": "system", "content": [{"type": "text", "text": ""}]},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
    ],
    "bad_order": [
        {"role": "assistant", "content": "I speak first"},
        {"role": "user", "content": "hi"},
    ],
}

plan = [
    ("smollm2", smollm2, ["single_user", "with_system", "unicode"]),
    ("llama2", llama2, ["single_user", "with_system", "unicode", "bad_order"]),
    ("features", features, ["single_user", "with_system", "control_flow"]),
    ("qwen25", qwen25, ["single_user", "with_system", "tool_turn"]),
    ("dates", dates, ["with_system"]),
    ("generation", generation, ["single_user", "with_system"]),
    ("tojson", tojson, ["unicode", "with_system"]),
    ("smolvlm", smolvlm, ["parts_empty_reply", "parts_empty_system"]),
]

cases = []
for name, t, convs in plan:
    for conv in convs:
        for agp in (False, True):
            case = {
                "name": f"{name}/{conv}/agp={agp}",
                "template": t["template"],
                "bos_token": t["bos_token"],
                "eos_token": t["eos_token"],
                "messages": conversations[conv],
                "add_generation_prompt": agp,
            }
            try:
                case["expected"] = render_jinja_template(
                    conversations=[conversations[conv]],
                    chat_template=t["template"],
                    add_generation_prompt=agp,
                    bos_token=t["bos_token"],
                    eos_token=t["eos_token"],
                )[0][0]
            except Exception as e:  # jinja2.exceptions.TemplateError from raise_exception
                case["error"] = True
                case["error_message"] = str(e)
            cases.append(case)

out = REPO / "tests/fixtures/chat/templates.json"
out.write_text(json.dumps(cases, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
print(f"wrote {len(cases)} cases to {out}", file=sys.stderr)
