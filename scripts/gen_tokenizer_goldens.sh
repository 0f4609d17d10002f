#!/usr/bin/env bash
# Write tests/fixtures/tokenizer/smollm2.json: token ids that llama.cpp's `llama-tokenize` gives for
# SmolLM2-135M-Instruct on a set of varied strings.  Format: [{"text": ..., "ids": [...]}, ...].
#
# Also smollm2-pre-<name>.json: the same strings through vocab-only copies of SmolLM2's GGUF whose
# `tokenizer.ggml.pre` is replaced by another pre-tokenizer (default, gpt-2, llama-bpe, qwen2), so that
# every supported splitting rule is checked against llama.cpp; smollm2-pre-smollm-bos-eos.json sets
# add_bos_token and add_eos_token to true.  SmolLM2 splits digits one by one and has
# no digit merges, which would hide how each rule groups digits, so these copies also get 1100 extra
# tokens "00".."99", "000".."999" (type normal) with merges "d d" and "dd d" appended.  The llama-bpe copy also drops
# `tokenizer.ggml.add_bos_token`, checking llama.cpp's default (BOS added for llama-bpe).  The tests
# rebuild the same metadata in memory.
#
# Each string goes through a file (`-f FILE`) so no shell quoting is involved; `--no-escape` keeps
# backslashes verbatim (llama-tokenize would otherwise turn "\n" into a newline).  llama-tokenize
# parses special tokens by default and adds BOS iff the GGUF's add_bos_token says so, i.e. it is
# llama_tokenize(text, add_special=true, parse_special=true).
#
# For SmolLM2 and the committed tiny SentencePiece / Qwen2 models (tests/fixtures/tiny-*/model.gguf)
# it also writes <name>-vocab.json: the special tokens llama.cpp reports when loading (BOS, EOS, EOT,
# UNK, PAD and the end-of-generation set, from `llama-tokenize -v`) and the piece of every token id
# seen, as hex bytes (`llama-tokenize` without --ids prints common_token_to_piece(id, special=true)
# raw).  tiny-llama-spm.json / tiny-qwen2.json hold the ids of the same strings for those models.
#
# <name>-noparse.json: the same strings with --no-parse-special (special-token markup is plain text).
#
# smollm2-long.json: the ids of the whole of tests/fixtures/text/devils-dictionary.txt (~15k tokens,
# the perplexity text) with --no-parse-special, i.e. llama_tokenize(text, add_special=true,
# parse_special=false); regenerate it if that text changes.
#
# Usage: scripts/gen_tokenizer_goldens.sh     (builds llama.cpp and fetches the model if needed)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
bin="$("$here/build-llamacpp.sh" llama-tokenize | tail -n 1)"
model="$("$here/fetch-smollm2.sh" | tail -n 1)"
out="$repo/tests/fixtures/tokenizer/smollm2.json"
mkdir -p "$(dirname "$out")"

# gguf-py from the same llama.cpp source tree writes the vocab-only variants.
PYTHONPATH="$bin/../../src/gguf-py" python3 - "$bin/llama-tokenize" "$model" "$out" <<'PY'
import json, subprocess, sys, tempfile, os
import gguf

tokenize, model, out = sys.argv[1:4]
texts = [
    "",
    "Hello world",
    " Hello world",
    "   leading spaces and trailing   ",
    "The quick brown fox jumps over the lazy dog.",
    "don't I'll we've they're she's I'd you'm DON'T I'LL",
    "1234567 and 12 and 3.14159 and 1,000,000",
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00dcber \u00e5ngstr\u00f6m fa\u00e7ade",
    "\u4f60\u597d\uff0c\u4e16\u754c\uff01\u8fd9\u662f\u4e00\u4e2a\u6d4b\u8bd5\u3002",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3068\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8",
    "emoji: \U0001F600\U0001F389\U0001F44D\U0001F3FD \U0001F468\u200d\U0001F469\u200d\U0001F467 \u2764\ufe0f",
    "def add(a, b):\n    return a + b\n\nprint(add(1, 2))\n",
    "fn main() {\n\tlet x: Vec<u32> = vec![1, 2, 3];\n\tprintln!(\"{:?}\", x);\n}",
    "tabs\tand\t\tdouble tabs\t",
    "newlines\n\n\nand\r\nwindows\rlines\n",
    "runs of spaces:     five      six       seven",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n",
    "text <|endoftext|> more <reponame> and <|im_end|><|im_start|> glued",
    "partial special <|im_start and im_end|> not special",
    "Supercalifragilisticexpialidocious" * 3,
    "antidisestablishmentarianism_pneumonoultramicroscopicsilicovolcanoconiosis",
    "\u0417\u0434\u0440\u0430\u0432\u0441\u0442\u0432\u0443\u0439, \u043c\u0438\u0440! \u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac \u0639\u0631\u0628\u064a \u05e2\u05d1\u05e8\u05d9\u05ea \u0939\u093f\u0928\u094d\u0926\u0940",
    "math: \u2211 x\u00b2 \u2264 \u221e, \u03b1\u2192\u03b2, \u00bd + \u00bc = \u00be, \u2460\u2461\u2462",
    "URL https://example.com/a/b?c=1&d=2#frag and email a.b@c.org",
    "!!!??? ... --- *** ### $$$ %%% ^^^ &&& ((( ))) ___ === +++ ~~~ ``` ||| <<< >>>",
    "   ",
    "\n",
    " \u3000 ideographic\u00a0nbsp\u2009thin space",
    "MixedCASE camelCase snake_case kebab-case SCREAMING_CASE",
    "a" * 200,
    "0x1F 0b1010 1e-9 -42 +7 007",
    "<s> hi </s><unk> [INST] x [/INST]",
    "\u2581already\u2581escaped \u2581 spaces\u2581",
]

def run(model_path, extra=()):
    cases = []
    for text in texts:
        with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as f:
            f.write(text.encode("utf-8"))
            path = f.name
        try:
            res = subprocess.run(
                [tokenize, "-m", model_path, "-f", path, "--ids", "--no-escape", "--log-disable", *extra],
                capture_output=True, check=True,
            )
        finally:
            os.unlink(path)
        last = res.stdout.decode("utf-8").strip().splitlines()[-1]
        cases.append({"text": text, "ids": json.loads(last)})
    return cases


def write(path, cases):
    with open(path, "w", encoding="utf-8") as f:
        f.write("[\n" + ",\n".join(json.dumps(c, ensure_ascii=False) for c in cases) + "\n]\n")
    print(f"wrote {len(cases)} cases to {path}", file=sys.stderr)


D = "0123456789"
DIGIT_TOKENS = [a + b for a in D for b in D] + [a + b + c for a in D for b in D for c in D]
DIGIT_MERGES = [f"{a} {b}" for a in D for b in D] + [f"{a}{b} {c}" for a in D for b in D for c in D]


def vocab_only_variant(path, pre, drop, set_bools):
    """Copy every metadata key of the model (no tensors), with tokenizer.ggml.pre = pre, the keys
    in `drop` left out and the bool keys in `set_bools` set."""
    reader = gguf.GGUFReader(model)
    writer = gguf.GGUFWriter(path, arch=reader.fields["general.architecture"].contents())
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture" or key in drop or key in set_bools:
            continue
        value = pre if key == "tokenizer.ggml.pre" else field.contents()
        if key == "tokenizer.ggml.tokens":
            value = value + DIGIT_TOKENS
        elif key == "tokenizer.ggml.token_type":
            value = value + [1] * len(DIGIT_TOKENS)
        elif key == "tokenizer.ggml.merges":
            value = value + DIGIT_MERGES
        if field.types[0] == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(key, value, field.types[0], sub_type=field.types[-1])
        else:
            writer.add_key_value(key, value, field.types[0])
    for key, value in set_bools.items():
        writer.add_bool(key, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def pieces(model_path, cases):
    """id -> hex of the bytes llama-tokenize prints for it (token_to_piece with special=true)."""
    found = {}
    for case in cases:
        ids = case["ids"]
        if not ids:
            continue
        with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as f:
            f.write(case["text"].encode("utf-8"))
            path = f.name
        try:
            res = subprocess.run([tokenize, "-m", model_path, "-f", path, "--no-escape", "--log-disable"],
                                 capture_output=True, check=True)
        finally:
            os.unlink(path)
        outb, pos = res.stdout, 0
        for i, tid in enumerate(ids):
            prefix = b"%6d -> '" % tid
            assert outb.startswith(prefix, pos), (case["text"], tid, outb[pos:pos + 40])
            start = pos + len(prefix)
            end = outb.index(b"'\n" + b"%6d -> '" % ids[i + 1], start) if i + 1 < len(ids) else len(outb) - 2
            found[tid] = outb[start:end].hex()
            pos = end + 2
    return {str(k): found[k] for k in sorted(found)}


def specials(model_path):
    """Special tokens from llama.cpp's own load log (print_info)."""
    res = subprocess.run([tokenize, "-m", model_path, "-p", "x", "--ids", "-v"], capture_output=True, check=True)
    info = {"eog": []}
    names = {"BOS": "bos", "EOS": "eos", "EOT": "eot", "UNK": "unk", "PAD": "pad", "EOG": "eog"}
    for line in res.stderr.decode("utf-8", "replace").splitlines():
        if "print_info:" not in line or " token " not in line:
            continue
        label, _, rest = line.split("print_info:", 1)[1].partition(" token")
        key = names.get(label.strip())
        if key is None:
            continue
        tid = int(rest.split("=", 1)[1].split()[0])
        if key == "eog":
            info["eog"].append(tid)
        else:
            info[key] = tid
    return info


def vocab_golden(name, model_path, cases):
    data = specials(model_path)
    data["pieces"] = pieces(model_path, cases)
    path = os.path.join(os.path.dirname(out), f"{name}-vocab.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=None)
        f.write("\n")
    print(f"wrote {len(data['pieces'])} pieces to {path}", file=sys.stderr)


long_text = os.path.join(os.path.dirname(os.path.dirname(out)), "text", "devils-dictionary.txt")
res = subprocess.run([tokenize, "-m", model, "-f", long_text, "--ids", "--no-escape", "--no-parse-special",
                      "--log-disable"], capture_output=True, check=True)
long_ids = json.loads(res.stdout.decode("utf-8").strip().splitlines()[-1])
with open(os.path.join(os.path.dirname(out), "smollm2-long.json"), "w", encoding="utf-8") as f:
    json.dump({"text_file": "tests/fixtures/text/devils-dictionary.txt", "parse_special": False, "ids": long_ids}, f)
    f.write("\n")
print(f"wrote {len(long_ids)} ids of {long_text}", file=sys.stderr)

main_cases = run(model)
write(out, main_cases)
vocab_golden("smollm2", model, main_cases)
fixtures = os.path.join(os.path.dirname(os.path.dirname(out)))
# Special-token markup as plain text: llama_tokenize(text, add_special=true, parse_special=false).
write(os.path.join(os.path.dirname(out), "smollm2-noparse.json"), run(model, ["--no-parse-special"]))
for tiny in ("tiny-llama-spm", "tiny-qwen2"):
    tiny_model = os.path.join(fixtures, tiny, "model.gguf")
    tiny_cases = run(tiny_model)
    write(os.path.join(os.path.dirname(out), f"{tiny}.json"), tiny_cases)
    vocab_golden(tiny, tiny_model, tiny_cases)
    write(os.path.join(os.path.dirname(out), f"{tiny}-noparse.json"), run(tiny_model, ["--no-parse-special"]))
# name: (pre-tokenizer, keys dropped, bool keys set)
variants = {
    "default": ("default", (), {}),
    "gpt-2": ("gpt-2", (), {}),
    "llama-bpe": ("llama-bpe", ("tokenizer.ggml.add_bos_token",), {}),
    "qwen2": ("qwen2", (), {}),
    "smollm-bos-eos": ("smollm", (), {"tokenizer.ggml.add_bos_token": True, "tokenizer.ggml.add_eos_token": True}),
}
with tempfile.TemporaryDirectory() as tmp:
    for name, (pre, drop, set_bools) in variants.items():
        path = os.path.join(tmp, f"{name}.gguf")
        vocab_only_variant(path, pre, drop, set_bools)
        write(os.path.join(os.path.dirname(out), f"smollm2-pre-{name}.json"), run(path))
PY
