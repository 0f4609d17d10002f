#!/usr/bin/env python3
"""Drive `edgevl serve` with the official `openai` Python package: a non-streamed and a streamed
chat on SmolLM2 at temperature 0 must both equal `edgevl run`'s greedy text (read from a file),
the streamed one with usage (cached_tokens > 0: the conversation is in the slot's KV cache); a
stream with edgevl's progress comments reads as chunks only;
the model list and retrieve (an unknown id is NotFoundError), a wrong API key (AuthenticationError) and an unsupported option (BadRequestError).
Usage: server_openai_check.py URL API_KEY PROMPT MAX_TOKENS EXPECTED_FILE
"""
import sys

import openai

url, key, prompt, max_tokens, expected_file = sys.argv[1:6]
max_tokens = int(max_tokens)
with open(expected_file, encoding="utf-8") as f:
    expected = f.read()
if expected.endswith("\n"):
    expected = expected[:-1]  # `edgevl run` ends the answer with a newline
client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=300)
passed = failed = 0


def check(name, ok, detail=""):
    global passed, failed
    print(f"{'ok  ' if ok else 'FAIL'} {name}" + ("" if ok else f": {detail}"))
    if ok:
        passed += 1
    else:
        failed += 1


messages = [{"role": "user", "content": prompt}]
models = client.models.list()
model = models.data[0].id
check("models.list", "SmolLM2" in model, model)
check("models.retrieve", client.models.retrieve(model).id == model, model)
try:
    client.models.retrieve("no-such-model")
    check("models.retrieve unknown is NotFoundError", False, "no error")
except openai.NotFoundError as e:
    check("models.retrieve unknown is NotFoundError", "no-such-model" in str(e), str(e))

r = client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=max_tokens)
text = r.choices[0].message.content
check("non-streamed greedy text equals edgevl run", text == expected, f"{text!r} != {expected!r}")
check("usage", r.usage.prompt_tokens > 0 and 0 < r.usage.completion_tokens <= max_tokens, str(r.usage))

chunks = list(client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=max_tokens,
                                             stream=True, stream_options={"include_usage": True}))
streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
check("streamed greedy text equals edgevl run", streamed == expected, f"{streamed!r} != {expected!r}")
usage = chunks[-1].usage
cached = usage.prompt_tokens_details.cached_tokens if usage and usage.prompt_tokens_details else 0
check("streamed usage with cached_tokens > 0", usage is not None and cached > 0, str(usage))
check("one finish_reason", sum(1 for c in chunks if c.choices and c.choices[0].finish_reason) == 1)

# edgevl's progress comments (`: progress {...}` lines) are skipped by the client: the same text. The raw
# response shows they were sent (a new conversation, so the prefill has positions to report).
fresh = [{"role": "user", "content": prompt + " "}]
progress = {"include_usage": True, "include_progress": True}
with_progress = list(client.chat.completions.create(model=model, messages=fresh, temperature=0,
                                                    max_tokens=max_tokens, stream=True, stream_options=progress))
raw = client.chat.completions.with_raw_response.create(model=model, messages=fresh + [{"role": "user", "content": "?"}],
                                                       temperature=0, max_tokens=2, stream=True,
                                                       stream_options=progress)
comments = [line for line in raw.http_response.iter_lines() if line.startswith(": progress ")]
check("streamed with include_progress: the client reads chunks only",
      all(c.choices or c.usage for c in with_progress) and any(c.choices and c.choices[0].delta.content
                                                               for c in with_progress), str(with_progress[:3]))
check("include_progress sends progress comments", len(comments) >= 2 and '"step":"prefill"' in comments[0],
      str(comments))

try:
    openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0).models.list()
    check("wrong API key refused", False, "no error")
except openai.AuthenticationError:
    check("wrong API key refused", True)
try:
    client.chat.completions.create(model=model, messages=messages, n=2, max_tokens=4)
    check("n=2 refused", False, "no error")
except openai.BadRequestError as e:
    check("n=2 refused", "n > 1" in str(e), str(e))
    check("the refusal names its parameter", e.param == "n", repr(e.param))

print(f"server-openai: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
