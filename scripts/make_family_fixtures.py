#!/usr/bin/env python3
"""Tiny seeded InternVL and SmolVLM models, converted by llama.cpp, with transformers' references (issue 13).

Run by hand with the reference venv (torch, transformers 5.x, tokenizers, Pillow, numpy), not in CI:

    /root/venv-ref/bin/python scripts/make_family_fixtures.py [--family internvl|smolvlm] [--keep-hf DIR]

It writes tests/fixtures/tiny-internvl/ and tests/fixtures/tiny-smolvlm/, each with

  model.gguf          the language model, by llama.cpp's convert_hf_to_gguf.py --outtype f32
  mmproj.gguf         the vision tower + projector, by the same converter with --mmproj --outtype f32
  reference.json      index of everything below plus the exact configs, special-token ids, prompt cases,
                      the conversion check and the GGUF metadata/tensor listing (see tests/fixtures/README.md)
  *.bin               transformers' float32 outputs, raw little-endian, row-major, no header

The converter is the one in the llama-cpp-python 0.3.36 sdist (scripts/build-llamacpp.sh unpacks it to
~/.cache/edgevl/llama.cpp-0.3.36/src). It runs in a child process with PYTHONPATH=<src>/gguf-py:<src> and
TextModel.get_vocab_base_pre monkeypatched to return the pre-tokenizer we really used ("qwen2" for InternVL,
"smollm" for SmolVLM): our locally trained BPE has a hash the converter does not know (as in
scripts/make_tiny_hf_models.py). Nothing else in the converter is changed.

The references are transformers' own: InternVLForConditionalGeneration / Idefics3ForConditionalGeneration in
float32 with eager attention, InternVLProcessor (GotOcr2ImageProcessorPil) / Idefics3Processor
(Idefics3ImageProcessorPil), i.e. the PIL image backends. InternVL's checkpoint is rewritten to OpenGVLab's
original layout (InternVLChatModel: fused attn.qkv, ls1/ls2, mlp1.{0,1,3}, language_model.model.*) because that
is what llama.cpp's converter reads; SmolVLM's is transformers' own save (what the hub's SmolVLM files are).

Input images are never stored: see lcg_image() (the README states the recipe). If llama.cpp binaries already
exist in ~/.cache/edgevl/llama.cpp-0.3.36/build-native-noamx/bin, llama-tokenize cross-checks the GGUF
tokenizers; this script never starts a build.

Determinism: every weight comes from a seeded torch.Generator, torch runs on one thread, the temporary folders
have fixed names inside the temporary directory and the converter gets a fixed --model-name, so a re-run writes
byte-identical files (checked: see the README).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from llamacpp_goldens import write_json  # noqa: E402 - same scripts/ directory, standard library only

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
CORPUS = FIXTURES / "text" / "devils-dictionary.txt"
LLAMACPP_VERSION = "0.3.36"
CACHE = Path(os.environ.get("EDGEVL_CACHE", Path.home() / ".cache" / "edgevl"))
LLAMACPP_SRC = CACHE / f"llama.cpp-{LLAMACPP_VERSION}" / "src"
LLAMACPP_BIN = CACHE / f"llama.cpp-{LLAMACPP_VERSION}" / "build-native-noamx" / "bin"

IVL_VOCAB = 320  # small: the 797-position logits reference is vocab-wide
SMOL_VOCAB = 384  # 43 special tokens of its own
GREEDY_N = 16

QWEN2_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# The chat templates, verbatim: InternVL's from the transformers-format checkpoints (OpenGVLab/InternVL3-1B-hf),
# SmolVLM's from HuggingFaceTB/SmolVLM-256M-Instruct (Idefics3).
INTERNVL_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n'}}{% if message['content'] is string %}"
    "{{ message['content'] }}{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' %}"
    "{{ '<IMG_CONTEXT>\n' }}{% elif content['type'] == 'video' %}{{ '<video>\n' }}{% elif content['type'] == 'text' %}"
    "{{ content['text'] }}{% endif %}{% endfor %}{% endif %}{{'<|im_end|>\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{'<|im_start|>assistant\n' }}{% endif %}"
)
SMOLVLM_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}{% if message['content'][0]['type'] == "
    "'image' %}{{':'}}{% else %}{{': '}}{% endif %}{% for line in message['content'] %}{% if line['type'] == 'text' %}"
    "{{line['text']}}{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

IMAGE_RECIPE = (
    "W x H RGB image, 8 bits per channel, bytes in row-major order y = 0..H-1, x = 0..W-1, channels R, G, B "
    "(byte index (y*W + x)*3 + c). A 32-bit LCG seeded with state = W*65536 + H (mod 2^32) is stepped before every "
    "byte: state = (state*1664525 + 1013904223) mod 2^32, byte = state >> 24. Plain noise, no smoothing."
)


def log(msg: str) -> None:
    print(f"make_family_fixtures: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------- converter mode


def convert_mode(hf_dir: str, out_file: str, pre: str, model_name: str, mmproj: bool, outtype: str) -> None:
    """Child-process entry: llama.cpp's converter with only the pre-tokenizer hash check patched out."""
    from conversion.base import TextModel  # from the sdist tree via PYTHONPATH

    def get_vocab_base_pre(self, tokenizer) -> str:  # noqa: ARG001 - signature of the patched method
        return pre

    TextModel.get_vocab_base_pre = get_vocab_base_pre
    import convert_hf_to_gguf

    sys.argv = ["convert_hf_to_gguf.py", hf_dir, "--outtype", outtype, "--outfile", out_file]
    if model_name:
        sys.argv += ["--model-name", model_name]
    if mmproj:
        sys.argv.append("--mmproj")
    convert_hf_to_gguf.main()


def convert(hf_dir: Path, out_file: Path, pre: str, model_name: str, mmproj: bool, outtype: str = "f32") -> None:
    """llama.cpp's convert_hf_to_gguf.py in a child process (model_name "": the converter derives the name)."""
    if not (LLAMACPP_SRC / "convert_hf_to_gguf.py").is_file():
        sys.exit(f"make_family_fixtures: {LLAMACPP_SRC}/convert_hf_to_gguf.py missing; run scripts/build-llamacpp.sh")
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{LLAMACPP_SRC / 'gguf-py'}{os.pathsep}{LLAMACPP_SRC}"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--convert", str(hf_dir), str(out_file), pre, model_name,
           outtype]
    if mmproj:
        cmd.append("--mmproj")
    subprocess.run(cmd, env=env, check=True, stdout=sys.stderr)


# --------------------------------------------------------------------------------------------- images


def lcg_bytes(n: int, seed: int):
    """n bytes of the LCG stream (state stepped before each byte, byte = state >> 24), vectorised by jumping
    ahead in blocks: s[k*B + i] = A_B * s[(k-1)*B + i] + C_B (mod 2^32)."""
    import numpy as np

    a, c, m = 1664525, 1013904223, 1 << 32
    block = 1 << 12
    first = np.empty(min(n, block), dtype=np.uint64)
    s = seed % m
    for i in range(first.size):
        s = (s * a + c) % m
        first[i] = s
    ab, cb = 1, 0  # x -> ab*x + cb after `block` steps
    for _ in range(block):
        ab, cb = (ab * a) % m, (cb * a + c) % m
    out = np.empty(n, dtype=np.uint8)
    cur = first
    mask = np.uint64(0xFFFFFFFF)
    for start in range(0, n, block):
        take = min(block, n - start)
        out[start:start + take] = (cur[:take] >> np.uint64(24)).astype(np.uint8)
        cur = (cur * np.uint64(ab) + np.uint64(cb)) & mask
    return out


def lcg_image(w: int, h: int):
    """The input image (see IMAGE_RECIPE) as a PIL RGB image."""
    from PIL import Image

    data = lcg_bytes(w * h * 3, (w * 65536 + h) % (1 << 32)).reshape(h, w, 3)
    return Image.fromarray(data, mode="RGB")


def normalise_like_processor(img, mean, std):
    """What transformers' PIL backend does to an image that needs no resize: rescale in float64 by 1/255, cast to
    float32, then (x - mean) / std in float32, channel-first."""
    import numpy as np

    x = np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)
    x = (x.astype(np.float64) * (1 / 255)).astype(np.float32)
    m = np.array(mean, dtype=np.float32)[:, None, None]
    s = np.array(std, dtype=np.float32)[:, None, None]
    return (x - m) / s


def image_desc(w: int, h: int) -> dict:
    return {"width": w, "height": h, "seed": (w * 65536 + h) % (1 << 32)}


# --------------------------------------------------------------------------------------------- tokenizers


def corpus_lines() -> list[str]:
    text = CORPUS.read_text(encoding="utf-8")
    return [line for line in text.split("\n") if line.strip()]


def finish_tokenizer(hf_dir: Path, template: str, extra: dict) -> None:
    """Like Qwen2's / SmolLM2's tokenizer_config.json: no BOS/EOS added, and the chat template inside it (the
    converter copies tokenizer_config.json's chat_template into tokenizer.chat_template)."""
    cfg_path = hf_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg.update({"add_bos_token": False, "add_eos_token": False, "add_prefix_space": False, "chat_template": template})
    cfg.update(extra)
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True), encoding="utf-8")
    jinja = hf_dir / "chat_template.jinja"
    if jinja.exists():
        jinja.unlink()


INTERNVL_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"]


def build_internvl_tokenizer(hf_dir: Path):
    """Byte-level BPE with Qwen2's pre-tokenizer regex and NFC normalizer (as tiny-qwen2), trained here on the
    Devil's Dictionary, plus InternVL's special tokens appended as added special tokens (ids IVL_VOCAB-7..IVL_VOCAB-1)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=IVL_VOCAB - len(INTERNVL_SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    tok.train_from_iterator(corpus_lines(), trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in INTERNVL_SPECIALS])
    assert tok.get_vocab_size() == IVL_VOCAB, tok.get_vocab_size()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
    )
    fast.save_pretrained(hf_dir)
    # The attributes InternVLProcessor reads (tokenizer.start_image_token, ..._id), as in InternVL3-1B-hf.
    finish_tokenizer(
        hf_dir,
        INTERNVL_TEMPLATE,
        {
            "start_image_token": "<img>",
            "end_image_token": "</img>",
            "context_image_token": "<IMG_CONTEXT>",
            "video_token": "<video>",
        },
    )
    return AutoTokenizer.from_pretrained(hf_dir)


SMOLVLM_HEAD = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
SMOLVLM_TAIL = ["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>"] + [
    f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)
]


def build_smolvlm_tokenizer(hf_dir: Path):
    """Byte-level BPE with SmolLM2's pre-tokenizer (digits split one by one, then GPT-2's byte-level regex; no
    normalizer), trained here on the Devil's Dictionary plus "\\n" and "\\n\\n" samples so that, as in SmolLM2's
    vocabulary, "\\n\\n" is one token (llama.cpp's idefics3 prompt looks it up). <|endoftext|> <|im_start|>
    <|im_end|> are ids 0, 1, 2 (as SmolLM2); the Idefics3 tokens are appended as added special tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=SMOL_VOCAB - len(SMOLVLM_TAIL),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=SMOLVLM_HEAD,
        show_progress=False,
    )
    tok.train_from_iterator(corpus_lines() + ["\n\n"] * 200 + ["\n"] * 200, trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SMOLVLM_TAIL])
    assert tok.get_vocab_size() == SMOL_VOCAB, tok.get_vocab_size()
    assert tok.token_to_id("ĊĊ") is not None, "\\n\\n must be one token"
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    fast.save_pretrained(hf_dir)
    finish_tokenizer(hf_dir, SMOLVLM_TEMPLATE, {})
    return AutoTokenizer.from_pretrained(hf_dir)


# --------------------------------------------------------------------------------------------- weights


def randomise(model, seed: int, text_prefixes: tuple[str, ...], text_scale: float) -> None:
    """Every parameter random, from one seeded generator, in named_parameters() order:
    text decoder (names starting with text_prefixes): matrices and embeddings N(0, text_scale), RMSNorm weights
      1 + N(0, 0.1), biases N(0, 0.1) (as scripts/make_tiny_hf_models.py, which uses 0.15; here larger, because
      with 0.15 greedy decoding after hundreds of image tokens falls into repeating one token);
    vision tower and projector: matrices / conv kernels N(0, 1/fan_in), norm weights 1 + N(0, 0.2), biases N(0, 0.1),
      class token and position embeddings N(0, 0.5), layer scales (lambda_1/2) uniform in [0.1, 1.0)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            shape = p.shape
            is_norm = ("norm" in name) and name.endswith("weight")
            if name.startswith(text_prefixes):
                if is_norm:
                    p.copy_(1.0 + 0.1 * torch.randn(shape, generator=gen))
                elif name.endswith(".bias"):
                    p.copy_(0.1 * torch.randn(shape, generator=gen))
                else:
                    p.copy_(text_scale * torch.randn(shape, generator=gen))
            elif ".lambda_" in name:
                p.copy_(0.1 + 0.9 * torch.rand(shape, generator=gen))
            elif "cls_token" in name or "position_embedding" in name:
                p.copy_(0.5 * torch.randn(shape, generator=gen))
            elif is_norm:
                p.copy_(1.0 + 0.2 * torch.randn(shape, generator=gen))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(shape, generator=gen))
            else:
                fan_in = int(math.prod(shape[1:]))
                p.copy_(torch.randn(shape, generator=gen) / math.sqrt(fan_in))


# --------------------------------------------------------------------------------------------- helpers


def write_bin(out_dir: Path, name: str, array) -> dict:
    import numpy as np

    a = np.ascontiguousarray(array, dtype="<f4")
    (out_dir / name).write_bytes(a.tobytes())
    return {"file": name, "shape": [int(d) for d in a.shape]}


def margins(logits) -> list[float]:
    import numpy as np

    top2 = np.sort(logits, axis=1)[:, -2:]
    return [round(float(m), 6) for m in (top2[:, 1] - top2[:, 0])]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def gguf_listing(path: Path) -> dict:
    """Every metadata key (with its value; long arrays summarised) and every tensor (shape in GGUF order, type)."""
    sys.path.insert(0, str(LLAMACPP_SRC / "gguf-py"))
    import gguf  # noqa: E402

    reader = gguf.GGUFReader(str(path))
    meta = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        vtype = field.types[0] if field.types else None
        if vtype == gguf.GGUFValueType.ARRAY:
            n = len(field.data)
            etype = field.types[1]
            if n <= 8 and etype != gguf.GGUFValueType.STRING:
                meta[key] = [field.parts[i].tolist()[0] for i in field.data]
            else:
                meta[key] = f"array[{n}] of {etype.name.lower()}"
        elif vtype == gguf.GGUFValueType.STRING:
            s = bytes(field.parts[field.data[0]]).decode("utf-8")
            meta[key] = s if len(s) <= 200 else f"string ({len(s)} chars, sha256 {hashlib.sha256(s.encode()).hexdigest()[:16]})"
        else:
            v = field.parts[field.data[0]].tolist()[0]
            meta[key] = round(v, 9) if isinstance(v, float) else v
    tensors = {t.name: [[int(d) for d in t.shape], t.tensor_type.name] for t in reader.tensors}
    return {"bytes": path.stat().st_size, "sha256": sha256(path), "metadata": meta, "tensors": tensors}


def gguf_arrays(path: Path) -> dict:
    """name -> numpy array in PyTorch order (GGUF dims reversed)."""
    import numpy as np

    sys.path.insert(0, str(LLAMACPP_SRC / "gguf-py"))
    import gguf  # noqa: E402

    reader = gguf.GGUFReader(str(path))
    out = {}
    for t in reader.tensors:
        assert t.tensor_type == gguf.GGMLQuantizationType.F32, (t.name, t.tensor_type)
        shape = [int(d) for d in reversed(list(t.shape))]
        out[t.name] = np.array(t.data, dtype=np.float32).reshape(shape)
    return out


def gguf_string(path: Path, key: str) -> str | None:
    sys.path.insert(0, str(LLAMACPP_SRC / "gguf-py"))
    import gguf  # noqa: E402

    field = gguf.GGUFReader(str(path)).fields.get(key)
    return None if field is None else bytes(field.parts[field.data[0]]).decode("utf-8")


def check_conversion(expected: dict, path: Path) -> dict:
    """expected: GGUF name -> numpy array (PyTorch order). Every GGUF tensor must be expected and bit-identical,
    and every expected tensor present."""
    import numpy as np

    got = gguf_arrays(path)
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    bad = []
    for name in sorted(set(got) & set(expected)):
        e = np.asarray(expected[name], dtype=np.float32)
        g = got[name]
        if g.size != e.size or not np.array_equal(g.reshape(-1), e.reshape(-1)):
            bad.append(name)
        elif list(g.shape) != list(e.shape):
            # same values, different rank (e.g. [1,1,C] vs [C]); record, not an error
            pass
    if missing or unexpected or bad:
        raise SystemExit(f"conversion check failed for {path.name}: missing {missing} unexpected {unexpected} differ {bad}")
    return {"tensors": len(got), "bit_identical": True}


def llama_tokenize(gguf: Path, text: str) -> list[int] | None:
    exe = LLAMACPP_BIN / "llama-tokenize"
    if not exe.is_file():
        return None
    out = subprocess.run(
        [str(exe), "-m", str(gguf), "--stdin", "--ids", "--no-escape", "--log-disable"],
        input=text.encode("utf-8"),
        check=True,
        capture_output=True,
    )
    return json.loads(out.stdout.decode("utf-8").strip().splitlines()[-1])


TOKENIZE_STRINGS = [
    "Hello world",
    " The Devil's Dictionary, 1906-1911.",
    "line one\nline two\n\nline four",
    "3 33 333 3.14159",
    "café naïve — ✓",
]


def tokenize_check(tokenizer, gguf: Path, cases: list[dict]) -> dict:
    """llama-tokenize (specials parsed, BOS per metadata) on a few strings and on every prompt case's expanded text
    (the processor's input_ids decoded back to text), against transformers' ids."""
    if not (LLAMACPP_BIN / "llama-tokenize").is_file():
        log("llama-tokenize not built yet: tokenizer cross-check skipped")
        return {"done": False, "why": "llama-tokenize was not built when the fixtures were made"}
    rows = []
    for text in TOKENIZE_STRINGS:
        ids = llama_tokenize(gguf, text)
        hf = [int(t) for t in tokenizer(text, add_special_tokens=True)["input_ids"]]
        rows.append({"text": text, "llamacpp_ids": ids, "hf_ids": hf, "agree": ids == hf})
    prompts = []
    for case in cases:
        expanded = tokenizer.decode(case["input_ids"], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        ids = llama_tokenize(gguf, expanded)
        prompts.append({"case": case["name"], "agree": ids == case["input_ids"]})
    return {
        "done": True,
        "how": "`llama-tokenize -m model.gguf --stdin --ids --no-escape` (specials parsed, BOS per GGUF metadata) vs "
        "the transformers tokenizer; prompt cases: the processor's input_ids decoded to text (lossless byte-level "
        "BPE), re-tokenized by llama.cpp, compared with input_ids",
        "strings": rows,
        "prompt_cases": prompts,
        "all_agree": all(r["agree"] for r in rows) and all(p["agree"] for p in prompts),
    }


def text_greedy_check(model, tokenizer, gguf: Path, case: dict) -> dict:
    """The text-only prompt case through llama.cpp as a third party: llama-completion's prompt ids and greedy
    continuation on model.gguf against transformers' generate() on the same ids (no image involved)."""
    import torch

    if not (LLAMACPP_BIN / "llama-completion").is_file():
        return {"done": False, "why": "llama-completion was not built when the fixtures were made"}
    from make_tiny_hf_models import llamacpp_greedy

    ids = case["input_ids"]
    with torch.no_grad():
        gen = model.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             do_sample=False, max_new_tokens=GREEDY_N)
    hf = [int(t) for t in gen[0, len(ids):]]
    lc_prompt, lc = llamacpp_greedy(LLAMACPP_BIN, gguf, case["text"], GREEDY_N)
    return {
        "done": True,
        "case": case["name"],
        "how": f"`llama-completion -m model.gguf -p TEXT -n {GREEDY_N} --temp 0 -no-cnv -t 2 --no-repack --seed 1` "
        "(ids from its session file, as scripts/make_tiny_hf_models.py) vs transformers generate(do_sample=False)",
        "llamacpp_prompt_ids_equal": lc_prompt == ids,
        "hf_greedy_ids": hf,
        "llamacpp_greedy_ids": lc,
        "greedy_equal": hf == lc,
    }


# --------------------------------------------------------------------------------------------- InternVL

IVL_VISION = dict(hidden_size=32, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4, image_size=448,
                  patch_size=14, layer_norm_eps=1e-6)
IVL_TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=4096, rms_norm_eps=1e-6, rope_theta=1000000.0)
IVL_MIN_TILES, IVL_MAX_TILES = 1, 12
IVL_TEXT_SCALE = 0.5


def internvl_processor(tokenizer):
    from transformers import InternVLProcessor
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

    class InternVLProcessorNoVideo(InternVLProcessor):
        """InternVLProcessor without its video processor, which needs torchvision (not installed here); videos are
        never passed, so nothing else changes."""

        def check_argument_for_proper_class(self, argument_name, argument):
            if argument_name == "video_processor" and argument is None:
                return None
            return super().check_argument_for_proper_class(argument_name, argument)

    image_processor = GotOcr2ImageProcessorPil(
        size={"height": 448, "width": 448},
        crop_to_patches=True,
        min_patches=IVL_MIN_TILES,
        max_patches=IVL_MAX_TILES,
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
        resample=3,  # BICUBIC
        do_convert_rgb=True,
    )
    return InternVLProcessorNoVideo(
        image_processor=image_processor, tokenizer=tokenizer, image_seq_length=256, chat_template=INTERNVL_TEMPLATE
    )


def build_internvl(tokenizer):
    import torch
    from transformers import InternVLConfig, InternVLForConditionalGeneration

    text = dict(IVL_TEXT)
    theta = text.pop("rope_theta")
    config = InternVLConfig(
        vision_config=dict(
            model_type="internvl_vision",
            attention_bias=True,
            use_qk_norm=False,
            norm_type="layer_norm",
            use_mean_pooling=True,
            hidden_act="gelu",
            layer_scale_init_value=0.1,
            use_absolute_position_embeddings=True,
            **IVL_VISION,
        ),
        text_config=dict(
            model_type="qwen2",
            vocab_size=IVL_VOCAB,
            rope_parameters={"rope_type": "default", "rope_theta": theta},
            tie_word_embeddings=True,
            use_sliding_window=False,
            bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
            eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
            pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
            **text,
        ),
        image_token_id=tokenizer.context_image_token_id,
        image_seq_length=256,
        downsample_ratio=0.5,
        projector_hidden_act="gelu",
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        tie_word_embeddings=True,
        attn_implementation="eager",
    )
    torch.manual_seed(0)
    model = InternVLForConditionalGeneration(config)
    randomise(model, seed=1301, text_prefixes=("model.language_model.", "lm_head."), text_scale=IVL_TEXT_SCALE)
    model.eval()
    assert model.lm_head.weight.data_ptr() == model.model.language_model.embed_tokens.weight.data_ptr(), "tied"
    assert model.model.vision_tower.encoder.layer[0].attention.q_proj.bias is not None
    model.generation_config.eos_token_id = [
        tokenizer.convert_tokens_to_ids("<|im_end|>"),
        tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    ]
    model.generation_config.pad_token_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    model.generation_config.bos_token_id = None
    return model


def internvl_original_layout(model) -> dict:
    """The HF model's weights under OpenGVLab's original InternVLChatModel names (what llama.cpp converts)."""
    import torch

    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    out = {}
    L = model.config.vision_config.num_hidden_layers
    vt = "model.vision_tower."
    out["vision_model.embeddings.class_embedding"] = sd[vt + "embeddings.cls_token"]
    out["vision_model.embeddings.position_embedding"] = sd[vt + "embeddings.position_embeddings"]
    out["vision_model.embeddings.patch_embedding.weight"] = sd[vt + "embeddings.patch_embeddings.projection.weight"]
    out["vision_model.embeddings.patch_embedding.bias"] = sd[vt + "embeddings.patch_embeddings.projection.bias"]
    for i in range(L):
        src, dst = f"{vt}encoder.layer.{i}.", f"vision_model.encoder.layers.{i}."
        for kind in ("weight", "bias"):
            out[dst + f"attn.qkv.{kind}"] = torch.cat(
                [sd[src + f"attention.{p}_proj.{kind}"] for p in ("q", "k", "v")], dim=0
            )
            out[dst + f"attn.proj.{kind}"] = sd[src + f"attention.projection_layer.{kind}"]
            out[dst + f"norm1.{kind}"] = sd[src + f"layernorm_before.{kind}"]
            out[dst + f"norm2.{kind}"] = sd[src + f"layernorm_after.{kind}"]
            out[dst + f"mlp.fc1.{kind}"] = sd[src + f"mlp.fc1.{kind}"]
            out[dst + f"mlp.fc2.{kind}"] = sd[src + f"mlp.fc2.{kind}"]
        out[dst + "ls1"] = sd[src + "lambda_1"]
        out[dst + "ls2"] = sd[src + "lambda_2"]
    for idx, hf in (("0", "layer_norm"), ("1", "linear_1"), ("3", "linear_2")):
        for kind in ("weight", "bias"):
            out[f"mlp1.{idx}.{kind}"] = sd[f"model.multi_modal_projector.{hf}.{kind}"]
    for k, v in sd.items():
        if k.startswith("model.language_model."):
            out["language_model.model." + k[len("model.language_model."):]] = v
    # lm_head is tied to embed_tokens (tie_word_embeddings true): not stored, as for a tied Qwen2 checkpoint
    used = {k for k in sd if not k.startswith("model.language_model.") and k != "lm_head.weight"}
    n_vision_src = len(used)
    n_vision_dst = len([k for k in out if not k.startswith("language_model.")])
    assert n_vision_dst == n_vision_src - 4 * L, (n_vision_src, n_vision_dst)  # q/k/v weight+bias -> one qkv pair
    return {k: v.contiguous() for k, v in out.items()}


def internvl_original_config(model, tokenizer) -> dict:
    vc, tc = model.config.vision_config, model.config.text_config
    llm = {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "vocab_size": tc.vocab_size,
        "hidden_size": tc.hidden_size,
        "intermediate_size": tc.intermediate_size,
        "num_hidden_layers": tc.num_hidden_layers,
        "num_attention_heads": tc.num_attention_heads,
        "num_key_value_heads": tc.num_key_value_heads,
        "max_position_embeddings": tc.max_position_embeddings,
        "max_window_layers": tc.num_hidden_layers,
        "rms_norm_eps": tc.rms_norm_eps,
        "rope_theta": IVL_TEXT["rope_theta"],
        "rope_scaling": None,
        "hidden_act": "silu",
        "tie_word_embeddings": True,
        "use_sliding_window": False,
        "sliding_window": None,
        "use_cache": True,
        "bos_token_id": tc.bos_token_id,
        "eos_token_id": tc.eos_token_id,
        "torch_dtype": "float32",
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
    }
    vision = {
        "architectures": ["InternVisionModel"],
        "model_type": "intern_vit_6b",
        "hidden_size": vc.hidden_size,
        "intermediate_size": vc.intermediate_size,
        "num_hidden_layers": vc.num_hidden_layers,
        "num_attention_heads": vc.num_attention_heads,
        "num_channels": 3,
        "image_size": 448,
        "patch_size": 14,
        "hidden_act": "gelu",
        "norm_type": "layer_norm",
        "layer_norm_eps": vc.layer_norm_eps,
        "qkv_bias": True,
        "qk_normalization": False,
        "use_flash_attn": False,
        "drop_path_rate": 0.0,
        "dropout": 0.0,
        "attention_dropout": 0.0,
        "initializer_factor": 1.0,
        "initializer_range": 0.02,
        "torch_dtype": "float32",
    }
    return {
        "architectures": ["InternVLChatModel"],
        "model_type": "internvl_chat",
        "downsample_ratio": 0.5,
        "dynamic_image_size": True,
        "force_image_size": 448,
        "min_dynamic_patch": IVL_MIN_TILES,
        "max_dynamic_patch": IVL_MAX_TILES,
        "use_thumbnail": True,
        "ps_version": "v2",
        "select_layer": -1,
        "template": "internvl2_5",
        "use_backbone_lora": 0,
        "use_llm_lora": 0,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "llm_config": llm,
        "vision_config": vision,
    }


def internvl_expected_gguf(model) -> tuple[dict, dict]:
    """GGUF name -> array, for model.gguf and mmproj.gguf, from the HF model (PyTorch order)."""
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    L = model.config.vision_config.num_hidden_layers
    vt = "model.vision_tower."
    mm = {
        "v.class_embd": sd[vt + "embeddings.cls_token"],
        "v.position_embd.weight": sd[vt + "embeddings.position_embeddings"],
        "v.patch_embd.weight": sd[vt + "embeddings.patch_embeddings.projection.weight"],
        "v.patch_embd.bias": sd[vt + "embeddings.patch_embeddings.projection.bias"],
    }
    for i in range(L):
        s = f"{vt}encoder.layer.{i}."
        for kind in ("weight", "bias"):
            mm[f"v.blk.{i}.attn_q.{kind}"] = sd[s + f"attention.q_proj.{kind}"]
            mm[f"v.blk.{i}.attn_k.{kind}"] = sd[s + f"attention.k_proj.{kind}"]
            mm[f"v.blk.{i}.attn_v.{kind}"] = sd[s + f"attention.v_proj.{kind}"]
            mm[f"v.blk.{i}.attn_out.{kind}"] = sd[s + f"attention.projection_layer.{kind}"]
            mm[f"v.blk.{i}.ln1.{kind}"] = sd[s + f"layernorm_before.{kind}"]
            mm[f"v.blk.{i}.ln2.{kind}"] = sd[s + f"layernorm_after.{kind}"]
            mm[f"v.blk.{i}.ffn_up.{kind}"] = sd[s + f"mlp.fc1.{kind}"]
            mm[f"v.blk.{i}.ffn_down.{kind}"] = sd[s + f"mlp.fc2.{kind}"]
        mm[f"v.blk.{i}.ls1.weight"] = sd[s + "lambda_1"]
        mm[f"v.blk.{i}.ls2.weight"] = sd[s + "lambda_2"]
    for idx, hf in (("0", "layer_norm"), ("1", "linear_1"), ("3", "linear_2")):
        for kind in ("weight", "bias"):
            mm[f"mm.model.mlp.{idx}.{kind}"] = sd[f"model.multi_modal_projector.{hf}.{kind}"]
    llm = text_expected("model.language_model.", sd, model.config.text_config, permute=False, tied=True)
    return llm, mm


def text_expected(prefix: str, sd: dict, tc, permute: bool, tied: bool) -> dict:
    """llama.cpp's names for a Qwen2 / Llama decoder; permute: the converter's q/k row permutation for llama."""
    def perm(w, n_head):
        return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    out = {"token_embd.weight": sd[prefix + "embed_tokens.weight"], "output_norm.weight": sd[prefix + "norm.weight"]}
    if not tied:
        out["output.weight"] = sd["lm_head.weight"]
    for i in range(tc.num_hidden_layers):
        s = f"{prefix}layers.{i}."
        q, k = sd[s + "self_attn.q_proj.weight"], sd[s + "self_attn.k_proj.weight"]
        if permute:
            q, k = perm(q, tc.num_attention_heads), perm(k, tc.num_key_value_heads)
        out[f"blk.{i}.attn_q.weight"] = q
        out[f"blk.{i}.attn_k.weight"] = k
        out[f"blk.{i}.attn_v.weight"] = sd[s + "self_attn.v_proj.weight"]
        out[f"blk.{i}.attn_output.weight"] = sd[s + "self_attn.o_proj.weight"]
        for p in ("q", "k", "v"):
            if s + f"self_attn.{p}_proj.bias" in sd:
                out[f"blk.{i}.attn_{p}.bias"] = sd[s + f"self_attn.{p}_proj.bias"]
        out[f"blk.{i}.attn_norm.weight"] = sd[s + "input_layernorm.weight"]
        out[f"blk.{i}.ffn_norm.weight"] = sd[s + "post_attention_layernorm.weight"]
        out[f"blk.{i}.ffn_gate.weight"] = sd[s + "mlp.gate_proj.weight"]
        out[f"blk.{i}.ffn_up.weight"] = sd[s + "mlp.up_proj.weight"]
        out[f"blk.{i}.ffn_down.weight"] = sd[s + "mlp.down_proj.weight"]
    return out


def internvl_grid(w: int, h: int) -> list[int]:
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import get_optimal_tiled_canvas

    cols, rows = get_optimal_tiled_canvas((h, w), (448, 448), IVL_MIN_TILES, IVL_MAX_TILES)
    return [int(cols), int(rows)]


def user(*parts) -> dict:
    return {"role": "user", "content": list(parts)}


def img_part() -> dict:
    return {"type": "image"}


def txt(t: str) -> dict:
    return {"type": "text", "text": t}


# Prompt cases: name, messages, images (w, h) in order of appearance, processor kwargs.
INTERNVL_CASES = [
    ("one_tile", [user(img_part(), txt("What is in the image?"))], [(448, 448)], {}),
    ("one_tile_resized", [user(img_part(), txt("Describe it."))], [(500, 470)], {}),
    ("grid_3x2", [user(img_part(), txt("Describe the picture in detail."))], [(900, 600)], {}),
    ("wide_4x1", [user(img_part(), txt("Read the banner."))], [(1000, 250)], {}),
    ("tall_1x3", [user(img_part(), txt("What is at the top?"))], [(300, 1000)], {}),
    ("two_images", [user(img_part(), img_part(), txt("Compare the two images."))], [(448, 448), (896, 448)], {}),
    ("image_not_first", [user(txt("Look at this: "), img_part(), txt(" What colour dominates?"))], [(640, 400)], {}),
    (
        "follow_up",
        [
            {"role": "system", "content": [txt("You are a careful assistant.")]},
            user(img_part(), txt("What is it?")),
            {"role": "assistant", "content": [txt("A field of noise.")]},
            user(txt("Are you sure?")),
        ],
        [(448, 448)],
        {},
    ),
    ("text_only", [user(txt("Hello there! 123"))], [], {}),
]
INTERNVL_WHOLE = [("one_tile", (448, 448)), ("two_tiles", (896, 448))]
INTERNVL_WHOLE_TEXT = "What is in the image?"


def run_prompt_cases(processor, tokenizer, cases, family: str, image_token: str) -> list[dict]:
    image_token_id = tokenizer.convert_tokens_to_ids(image_token)
    out = []
    for name, messages, sizes, kwargs in cases:
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        images = [lcg_image(w, h) for w, h in sizes]
        call = dict(text=[text], return_tensors="pt", **kwargs)
        if images:
            call["images"] = images if family == "internvl" else [images]
        enc = processor(**call)
        ids = [int(t) for t in enc["input_ids"][0]]
        row = {
            "name": name,
            "messages": messages,
            "add_generation_prompt": True,
            "processor_kwargs": kwargs,
            "images": [image_desc(w, h) for w, h in sizes],
            "text": text,
            "input_ids": ids,
            "n_tokens": len(ids),
            "n_image_tokens": sum(1 for t in ids if t == image_token_id),
        }
        if family == "internvl":
            row["image_layout"] = []
            for w, h in sizes:
                cols, rows = internvl_grid(w, h)
                views = cols * rows + (1 if cols * rows > 1 else 0)
                row["image_layout"].append({"grid": [cols, rows], "views": views, "image_tokens": 256 * views})
            if images:
                assert enc["pixel_values"].shape[0] == sum(v["views"] for v in row["image_layout"])
        else:
            row["image_layout"] = smolvlm_layout(processor.image_processor, images, kwargs)
            if images:
                assert enc["pixel_values"].shape[1] == sum(v["views"] for v in row["image_layout"])
        assert row["n_image_tokens"] == sum(v["image_tokens"] for v in row["image_layout"]), row["name"]
        out.append(row)
    return out


def internvl_references(model, processor, tokenizer, out_dir: Path) -> dict:
    import numpy as np
    import torch

    vc = model.config.vision_config
    refs: dict = {}
    # ---- embeddings, one view: a 448x448 image is one tile and needs no resize, so the processor's pixel_values are
    # exactly normalise(image) -- checked here -- and the Rust side can feed the tower without any preprocessing.
    w, h = 448, 448
    img = lcg_image(w, h)
    enc = processor.image_processor(images=[img], crop_to_patches=True, return_tensors="pt")
    pv = enc["pixel_values"]
    assert pv.shape == (1, 3, 448, 448), pv.shape
    recipe = normalise_like_processor(img, IMAGENET_MEAN, IMAGENET_STD)
    pixels_equal = bool(np.array_equal(pv[0].numpy(), recipe))
    assert pixels_equal, "processor pixel_values differ from the documented normalisation"
    with torch.no_grad():
        feats = model.model.get_image_features(pixel_values=pv, return_dict=True, output_hidden_states=True)
    hidden = torch.stack(list(feats.hidden_states), dim=1)[0]  # [L+1, 1025, d]
    assert hidden.shape == (vc.num_hidden_layers + 1, 1025, vc.hidden_size)
    assert torch.equal(feats.last_hidden_state[0], hidden[-1]), "use_mean_pooling: no final norm"
    proj1 = feats.pooler_output[0]
    refs["one_view"] = {
        "image": image_desc(w, h),
        "views": 1,
        "grid": [1, 1],
        "pixel_values_equal_recipe": pixels_equal,
        "pixel_values_recipe": "processor pixel_values[0] == float32(float64(byte) * (1/255)) then (x - mean) / std "
        "in float32 with mean/std = ImageNet's as float32, channel-first [3, 448, 448] (bit-identical, checked)",
        "pixel_values_sum": float(pv.double().sum()),
        "vit_hidden_states": write_bin(out_dir, "one_view.vit_hidden_states.bin", hidden.numpy()),
        "vit_hidden_states_note": "[n_layers + 1, 1025, vision hidden]: index 0 = embeddings output (class token at "
        "row 0 + position embeddings, before any block), index i = output of block i-1",
        "vit_last_hidden_state": {
            "file": "one_view.vit_hidden_states.bin",
            "offset": 4 * vc.num_hidden_layers * 1025 * vc.hidden_size,
            "shape": [1025, vc.hidden_size],
        },
        "vit_last_hidden_state_note": "the tower's last_hidden_state = the last index of vit_hidden_states (no final "
        "norm: use_mean_pooling), so it is not stored twice: offset is in bytes",
        "projected": write_bin(out_dir, "one_view.proj.bin", proj1.numpy()),
        "projected_note": "get_image_features: drop the class token, pixel shuffle 0.5 (32x32x32 -> 16x16x128), "
        "mlp1 (LayerNorm, Linear, erf GELU, Linear): [256, text hidden]",
    }
    # ---- embeddings, multi-view: 896x448 -> grid 2x1 + thumbnail = 3 views (tiles row-major, thumbnail last)
    w, h = 896, 448
    enc = processor.image_processor(images=[lcg_image(w, h)], crop_to_patches=True, return_tensors="pt")
    pv = enc["pixel_values"]
    with torch.no_grad():
        projm = model.model.get_image_features(pixel_values=pv, return_dict=True).pooler_output
    refs["multi_view"] = {
        "image": image_desc(w, h),
        "views": int(pv.shape[0]),
        "grid": internvl_grid(w, h),
        "pixel_values_sum": float(pv.double().sum()),
        "projected": write_bin(out_dir, "multi_view.proj.bin", projm.reshape(-1, projm.shape[-1]).numpy()),
        "projected_note": "views in processor order (tiles row-major, then the 448x448 thumbnail), 256 rows each",
    }
    return refs


def whole_model(model, processor, tokenizer, out_dir: Path, family: str, cases, text: str, kwargs_for) -> list[dict]:
    import torch

    rows = []
    for name, (w, h) in cases:
        messages = [user(img_part(), txt(text))]
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        img = lcg_image(w, h)
        kwargs = kwargs_for(name)
        enc = processor(text=[prompt], images=[img] if family == "internvl" else [[img]], return_tensors="pt", **kwargs)
        inputs = {k: v for k, v in enc.items()}
        with torch.no_grad():
            logits = model(**inputs).logits[0].float().numpy()
            gen = model.generate(**inputs, do_sample=False, max_new_tokens=GREEDY_N, output_logits=True,
                                 return_dict_in_generate=True)
        ids = [int(t) for t in enc["input_ids"][0]]
        new = [int(t) for t in gen.sequences[0, len(ids):]]
        step_logits = torch.cat([s.float() for s in gen.logits], dim=0).numpy()
        assert step_logits.argmax(axis=1).tolist() == new
        assert step_logits[0].tobytes() == logits[-1].tobytes() or abs(step_logits[0] - logits[-1]).max() < 1e-4
        eos = model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, list) else [eos])
        mg = margins(logits)
        rows.append(
            {
                "name": name,
                "messages": messages,
                "images": [image_desc(w, h)],
                "processor_kwargs": kwargs,
                "text": prompt,
                "input_ids": ids,
                "n_image_tokens": sum(1 for t in ids if t == model.config.image_token_id),
                "views": int(enc["pixel_values"].shape[0] if family == "internvl" else enc["pixel_values"].shape[1]),
                "logits": write_bin(out_dir, f"{name}.logits.bin", logits),
                "argmax": [int(a) for a in logits.argmax(axis=1)],
                "top1_top2_margin": mg,
                "min_margin": min(mg),
                "positions_margin_over_1e-3": sum(1 for m in mg if m > 1e-3),
                "generated_ids": new,
                "generated_margins": margins(step_logits),
                "generated_text": tokenizer.decode(new, skip_special_tokens=False, clean_up_tokenization_spaces=False),
                "stopped_on_eos": len(new) < GREEDY_N and bool(new) and new[-1] in eos,
                "eos_ids": sorted(eos),
            }
        )
        log(f"{family} whole model {name}: {len(ids)} positions, min margin {min(mg):.5f}, generated {new}")
    return rows


def save_internvl_original(model, tokenizer, tok_dir: Path, orig: Path) -> None:
    """The checkpoint llama.cpp's converter reads: OpenGVLab's InternVLChatModel layout (model.safetensors,
    config.json, preprocessor_config.json) and the tokenizer files from tok_dir."""
    from safetensors.torch import save_file

    orig.mkdir(parents=True, exist_ok=True)
    save_file(internvl_original_layout(model), str(orig / "model.safetensors"), metadata={"format": "pt"})
    (orig / "config.json").write_text(json.dumps(internvl_original_config(model, tokenizer), indent=2, sort_keys=True))
    (orig / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "crop_size": 448,
                "do_center_crop": True,
                "do_normalize": True,
                "do_resize": True,
                "image_mean": IMAGENET_MEAN,
                "image_std": IMAGENET_STD,
                "resample": 3,
                "size": 448,
            },
            indent=2,
            sort_keys=True,
        )
    )
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (orig / f).write_bytes((tok_dir / f).read_bytes())


def make_internvl(keep_hf: Path | None) -> None:
    import torch

    name = "tiny-internvl"
    out_dir = FIXTURES / name
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.bin"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        tok_dir = Path(tmp) / "tokenizer"
        tokenizer = build_internvl_tokenizer(tok_dir)
        specials = {t: tokenizer.convert_tokens_to_ids(t) for t in INTERNVL_SPECIALS}
        model = build_internvl(tokenizer)
        processor = internvl_processor(tokenizer)

        # ---- original layout for llama.cpp
        orig = Path(tmp) / name
        save_internvl_original(model, tokenizer, tok_dir, orig)
        llm_gguf, mm_gguf = out_dir / "model.gguf", out_dir / "mmproj.gguf"
        convert(orig, llm_gguf, "qwen2", "tiny-random-internvl", mmproj=False)
        convert(orig, mm_gguf, "qwen2", "tiny-random-internvl", mmproj=True)
        if keep_hf is not None:
            dst = keep_hf / name
            dst.mkdir(parents=True, exist_ok=True)
            model.save_pretrained(dst / "hf")
            tokenizer.save_pretrained(dst / "hf")
            subprocess.run(["cp", "-r", str(orig), str(dst / "original-layout")], check=True)

    exp_llm, exp_mm = internvl_expected_gguf(model)
    conversion = {"model.gguf": check_conversion(exp_llm, llm_gguf), "mmproj.gguf": check_conversion(exp_mm, mm_gguf)}
    template_in_gguf = gguf_string(llm_gguf, "tokenizer.chat_template")
    assert template_in_gguf == INTERNVL_TEMPLATE, "chat template not copied into the GGUF"

    cases = run_prompt_cases(processor, tokenizer, INTERNVL_CASES, "internvl", "<IMG_CONTEXT>")
    embeddings = internvl_references(model, processor, tokenizer, out_dir)
    whole = whole_model(model, processor, tokenizer, out_dir, "internvl", INTERNVL_WHOLE, INTERNVL_WHOLE_TEXT,
                        lambda _n: {})
    vc, tc = model.config.vision_config, model.config.text_config
    reference = {
        "family": "internvl",
        "made_by": "scripts/make_family_fixtures.py",
        "producer": f"transformers {__import__('transformers').__version__}, torch {torch.__version__}, float32, "
        "eager attention, 1 thread; InternVLForConditionalGeneration; InternVLProcessor + GotOcr2ImageProcessorPil; "
        f"GGUF files by llama.cpp (llama-cpp-python {LLAMACPP_VERSION} sdist) convert_hf_to_gguf.py --outtype f32 "
        "from the weights rewritten to OpenGVLab's InternVLChatModel layout",
        "files": {"llm": "model.gguf", "mmproj": "mmproj.gguf"},
        "config": {
            "vision": {
                "image_size": 448, "patch_size": 14, "grid": 32, "n_patches": 1024, "class_token": True,
                "n_positions": 1025, "hidden": vc.hidden_size, "ffn": vc.intermediate_size,
                "layers": vc.num_hidden_layers, "heads": vc.num_attention_heads,
                "head_dim": vc.hidden_size // vc.num_attention_heads, "norm": "LayerNorm",
                "eps": vc.layer_norm_eps, "qkv_bias": True, "qk_norm": False, "layer_scale": True,
                "act": "gelu (erf)", "final_norm": False,
            },
            "projector": {
                "type": "internvl (mlp1)", "pixel_shuffle": 0.5, "in": 4 * vc.hidden_size,
                "layers": "LayerNorm(eps 1e-5), Linear(in, text hidden), GELU (erf), Linear(text hidden, text hidden)",
                "out": tc.hidden_size,
            },
            "text": {
                "arch": "qwen2", "vocab": tc.vocab_size, "hidden": tc.hidden_size, "ffn": tc.intermediate_size,
                "layers": tc.num_hidden_layers, "heads": tc.num_attention_heads, "kv_heads": tc.num_key_value_heads,
                "head_dim": tc.hidden_size // tc.num_attention_heads, "rope_theta": IVL_TEXT["rope_theta"],
                "rms_norm_eps": tc.rms_norm_eps, "qkv_bias": True, "tied_output": True,
            },
            "tile_size": 448, "tokens_per_view": 256, "min_tiles": IVL_MIN_TILES, "max_tiles": IVL_MAX_TILES,
            "thumbnail": "a 448x448 resize of the whole image, last, when there is more than one tile",
            "resample": "PIL BICUBIC", "image_mean": IMAGENET_MEAN, "image_std": IMAGENET_STD,
            "image_token": "<IMG_CONTEXT>", "image_token_id": specials["<IMG_CONTEXT>"],
            "placeholder": "<img> + 256 x views <IMG_CONTEXT> + </img> in place of each <IMG_CONTEXT> the template wrote",
            "add_bos": False,
        },
        "special_tokens": specials,
        "chat_template": INTERNVL_TEMPLATE,
        "image_recipe": IMAGE_RECIPE,
        "prompt_cases": cases,
        "embeddings": embeddings,
        "whole_model": whole,
        "conversion_check": conversion,
        "tokenize_check": tokenize_check(tokenizer, llm_gguf, cases),
        "llamacpp_text_greedy": text_greedy_check(model, tokenizer, llm_gguf, next(c for c in cases if c["name"] == "text_only")),
        "gguf": {"model.gguf": gguf_listing(llm_gguf), "mmproj.gguf": gguf_listing(mm_gguf)},
    }
    write_json(out_dir / "reference.json", reference)
    log(f"{name}: wrote {sorted(p.name for p in out_dir.iterdir())}")


# --------------------------------------------------------------------------------------------- SmolVLM

SMOL_VISION = dict(hidden_size=32, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4, image_size=512,
                   patch_size=16, layer_norm_eps=1e-6)
SMOL_TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=8192, rms_norm_eps=1e-5, rope_theta=100000.0)
SMOL_PREPROC = {
    "image_processor_type": "Idefics3ImageProcessor",
    "do_convert_rgb": True,
    "do_image_splitting": True,
    "do_normalize": True,
    "do_pad": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
    "max_image_size": {"longest_edge": 512},
    "resample": 1,
    "rescale_factor": 1 / 255,
    "size": {"longest_edge": 2048},
}
ONE_VIEW_KWARGS = {"size": {"longest_edge": 512}}
SMOL_TEXT_SCALE = 0.5


def smolvlm_processor(tokenizer):
    from transformers import Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    kw = {k: v for k, v in SMOL_PREPROC.items() if k != "image_processor_type"}
    image_processor = Idefics3ImageProcessorPil(**kw)
    return Idefics3Processor(
        image_processor=image_processor, tokenizer=tokenizer, image_seq_len=64, chat_template=SMOLVLM_TEMPLATE
    )


def smolvlm_layout(image_processor, images, kwargs) -> list[dict]:
    out = []
    for img in images:
        enc = image_processor(images=[[img]], return_row_col_info=True, **kwargs)
        rows, cols = int(enc["rows"][0][0]), int(enc["cols"][0][0])
        views = rows * cols + 1 if rows * cols > 0 else 1
        out.append({"grid": [cols, rows], "views": views, "image_tokens": 64 * views})
    return out


def build_smolvlm(tokenizer):
    import torch
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration

    text = dict(SMOL_TEXT)
    theta = text.pop("rope_theta")
    config = Idefics3Config(
        vision_config=dict(hidden_act="gelu_pytorch_tanh", num_channels=3, **SMOL_VISION),
        text_config=dict(
            model_type="llama",
            vocab_size=SMOL_VOCAB,
            rope_parameters={"rope_type": "default", "rope_theta": theta},
            tie_word_embeddings=False,
            attention_bias=False,
            mlp_bias=False,
            hidden_act="silu",
            bos_token_id=tokenizer.convert_tokens_to_ids("<|im_start|>"),
            eos_token_id=tokenizer.convert_tokens_to_ids("<end_of_utterance>"),
            pad_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
            **text,
        ),
        scale_factor=4,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        tie_word_embeddings=False,
        attn_implementation="eager",
    )
    torch.manual_seed(0)
    model = Idefics3ForConditionalGeneration(config)
    randomise(model, seed=1302, text_prefixes=("model.text_model.", "lm_head."), text_scale=SMOL_TEXT_SCALE)
    model.eval()
    assert model.lm_head.weight.data_ptr() != model.model.text_model.embed_tokens.weight.data_ptr(), "untied"
    model.generation_config.eos_token_id = [tokenizer.convert_tokens_to_ids("<end_of_utterance>")]
    model.generation_config.pad_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.generation_config.bos_token_id = None
    return model


def smolvlm_expected_gguf(model) -> tuple[dict, dict]:
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    L = model.config.vision_config.num_hidden_layers
    vm = "model.vision_model."
    mm = {
        "v.patch_embd.weight": sd[vm + "embeddings.patch_embedding.weight"],
        "v.patch_embd.bias": sd[vm + "embeddings.patch_embedding.bias"],
        "v.position_embd.weight": sd[vm + "embeddings.position_embedding.weight"],
        "v.post_ln.weight": sd[vm + "post_layernorm.weight"],
        "v.post_ln.bias": sd[vm + "post_layernorm.bias"],
        "mm.model.fc.weight": sd["model.connector.modality_projection.proj.weight"],
    }
    for i in range(L):
        s = f"{vm}encoder.layers.{i}."
        for kind in ("weight", "bias"):
            mm[f"v.blk.{i}.attn_q.{kind}"] = sd[s + f"self_attn.q_proj.{kind}"]
            mm[f"v.blk.{i}.attn_k.{kind}"] = sd[s + f"self_attn.k_proj.{kind}"]
            mm[f"v.blk.{i}.attn_v.{kind}"] = sd[s + f"self_attn.v_proj.{kind}"]
            mm[f"v.blk.{i}.attn_out.{kind}"] = sd[s + f"self_attn.out_proj.{kind}"]
            mm[f"v.blk.{i}.ln1.{kind}"] = sd[s + f"layer_norm1.{kind}"]
            mm[f"v.blk.{i}.ln2.{kind}"] = sd[s + f"layer_norm2.{kind}"]
            mm[f"v.blk.{i}.ffn_up.{kind}"] = sd[s + f"mlp.fc1.{kind}"]
            mm[f"v.blk.{i}.ffn_down.{kind}"] = sd[s + f"mlp.fc2.{kind}"]
    llm = text_expected("model.text_model.", sd, model.config.text_config, permute=True, tied=False)
    return llm, mm


SMOLVLM_CASES = [
    ("one_view", [user(img_part(), txt("What is in the image?"))], [(512, 512)], ONE_VIEW_KWARGS),
    ("grid_4x3", [user(img_part(), txt("Describe the picture in detail."))], [(640, 480)], {}),
    ("square_4x4", [user(img_part(), txt("Describe it."))], [(300, 300)], {}),
    ("wide_4x1", [user(img_part(), txt("Read the banner."))], [(1000, 250)], {}),
    ("wide_odd_4x2", [user(img_part(), txt("Read the banner."))], [(1000, 271)], {}),
    ("tall_1x4", [user(img_part(), txt("What is at the top?"))], [(250, 1000)], {}),
    ("two_images", [user(img_part(), img_part(), txt("Compare the two images."))], [(512, 512), (1000, 250)], {}),
    ("image_not_first", [user(txt("Look at this: "), img_part(), txt(" What colour dominates?"))], [(250, 1000)], {}),
    (
        "follow_up",
        [
            user(img_part(), txt("What is it?")),
            {"role": "assistant", "content": [txt("A field of noise.")]},
            user(txt("Are you sure?")),
        ],
        [(1000, 250)],
        {},
    ),
    ("text_only", [user(txt("Hello there! 123"))], [], {}),
]
SMOLVLM_WHOLE = [("one_view", (512, 512)), ("wide_4x1", (1000, 250))]


def smolvlm_references(model, processor, out_dir: Path) -> dict:
    import numpy as np
    import torch

    vc = model.config.vision_config
    refs: dict = {}
    # one view: a 512x512 image with size.longest_edge = 512 (what --max-tiles 1 means for idefics3) is neither
    # resized nor split, so pixel_values are exactly normalise(image) -- checked.
    w, h = 512, 512
    img = lcg_image(w, h)
    enc = processor.image_processor(images=[[img]], return_tensors="pt", **ONE_VIEW_KWARGS)
    pv, pm = enc["pixel_values"], enc["pixel_attention_mask"]
    assert pv.shape == (1, 1, 3, 512, 512), pv.shape
    recipe = normalise_like_processor(img, [0.5] * 3, [0.5] * 3)
    pixels_equal = bool(np.array_equal(pv[0, 0].numpy(), recipe))
    assert pixels_equal, "processor pixel_values differ from the documented normalisation"
    with torch.no_grad():
        feats = model.model.get_image_features(pixel_values=pv, pixel_attention_mask=pm, return_dict=True,
                                               output_hidden_states=True)
    hidden = torch.stack(list(feats.hidden_states), dim=1)[0]  # [L+1, 1024, d]
    assert hidden.shape == (vc.num_hidden_layers + 1, 1024, vc.hidden_size)
    refs["one_view"] = {
        "image": image_desc(w, h),
        "processor_kwargs": ONE_VIEW_KWARGS,
        "views": 1,
        "grid": [0, 0],
        "pixel_values_equal_recipe": pixels_equal,
        "pixel_values_recipe": "processor pixel_values[0][0] == float32(float64(byte) * (1/255)) then (x - 0.5) / 0.5 "
        "in float32, channel-first [3, 512, 512] (bit-identical, checked)",
        "pixel_values_sum": float(pv.double().sum()),
        "vit_hidden_states": write_bin(out_dir, "one_view.vit_hidden_states.bin", hidden.numpy()),
        "vit_hidden_states_note": "[n_layers + 1, 1024, vision hidden]: index 0 = patch embeddings + position "
        "embeddings, index i = output of block i-1 (before post_layernorm)",
        "vit_last_hidden_state": write_bin(out_dir, "one_view.vit_last_hidden_state.bin", feats.last_hidden_state[0].numpy()),
        "vit_last_hidden_state_note": "post_layernorm(last block output): what the connector takes",
        "projected": write_bin(out_dir, "one_view.proj.bin", feats.pooler_output[0].numpy()),
        "projected_note": "get_image_features: Idefics3 pixel shuffle, scale 4 (32x32x32 -> 8x8x512), then "
        "modality_projection (Linear 512 -> text hidden, no bias): [64, text hidden]",
    }
    w, h = 1000, 250
    enc = processor.image_processor(images=[[lcg_image(w, h)]], return_tensors="pt", return_row_col_info=True)
    pv, pm = enc["pixel_values"], enc["pixel_attention_mask"]
    with torch.no_grad():
        projm = model.model.get_image_features(pixel_values=pv, pixel_attention_mask=pm, return_dict=True).pooler_output[0]
    refs["multi_view"] = {
        "image": image_desc(w, h),
        "processor_kwargs": {},
        "views": int(pv.shape[1]),
        "grid": [int(enc["cols"][0][0]), int(enc["rows"][0][0])],
        "pixel_values_sum": float(pv.double().sum()),
        "projected": write_bin(out_dir, "multi_view.proj.bin", projm.numpy()),
        "projected_note": "views in processor order (tiles row-major, then the whole image squashed to 512x512), "
        "64 rows each",
    }
    return refs


def save_smolvlm_hf(model, hf: Path) -> None:
    """The checkpoint as the hub's SmolVLM files are (transformers' save_pretrained, the text config naming its
    architecture, the processor configs) into hf, which already holds the tokenizer files."""
    model.save_pretrained(hf)
    # As HuggingFaceTB/SmolVLM-256M-Instruct's config.json: the text config names its architecture
    cfg = json.loads((hf / "config.json").read_text())
    cfg["text_config"]["architectures"] = ["VLlama3ForCausalLM"]
    (hf / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))
    (hf / "preprocessor_config.json").write_text(json.dumps(SMOL_PREPROC, indent=2, sort_keys=True))
    (hf / "processor_config.json").write_text(
        json.dumps({"image_seq_len": 64, "processor_class": "Idefics3Processor"}, indent=2, sort_keys=True)
    )


def make_smolvlm(keep_hf: Path | None) -> None:
    import torch

    name = "tiny-smolvlm"
    out_dir = FIXTURES / name
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.bin"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        hf = Path(tmp) / name
        tokenizer = build_smolvlm_tokenizer(hf)
        specials = {t: tokenizer.convert_tokens_to_ids(t) for t in SMOLVLM_HEAD + SMOLVLM_TAIL}
        model = build_smolvlm(tokenizer)
        processor = smolvlm_processor(tokenizer)
        save_smolvlm_hf(model, hf)
        llm_gguf, mm_gguf = out_dir / "model.gguf", out_dir / "mmproj.gguf"
        convert(hf, llm_gguf, "smollm", "tiny-random-smolvlm", mmproj=False)
        convert(hf, mm_gguf, "smollm", "tiny-random-smolvlm", mmproj=True)
        if keep_hf is not None:
            subprocess.run(["cp", "-r", str(hf), str(keep_hf / name)], check=True)

    exp_llm, exp_mm = smolvlm_expected_gguf(model)
    conversion = {"model.gguf": check_conversion(exp_llm, llm_gguf), "mmproj.gguf": check_conversion(exp_mm, mm_gguf)}
    assert gguf_string(llm_gguf, "tokenizer.chat_template") == SMOLVLM_TEMPLATE, "chat template not copied"

    cases = run_prompt_cases(processor, tokenizer, SMOLVLM_CASES, "smolvlm", "<image>")
    embeddings = smolvlm_references(model, processor, out_dir)
    whole = whole_model(model, processor, tokenizer, out_dir, "smolvlm", SMOLVLM_WHOLE, INTERNVL_WHOLE_TEXT,
                        lambda n: ONE_VIEW_KWARGS if n == "one_view" else {})
    vc, tc = model.config.vision_config, model.config.text_config
    reference = {
        "family": "smolvlm",
        "made_by": "scripts/make_family_fixtures.py",
        "producer": f"transformers {__import__('transformers').__version__}, torch {torch.__version__}, float32, "
        "eager attention, 1 thread; Idefics3ForConditionalGeneration; Idefics3Processor + Idefics3ImageProcessorPil; "
        f"GGUF files by llama.cpp (llama-cpp-python {LLAMACPP_VERSION} sdist) convert_hf_to_gguf.py --outtype f32",
        "files": {"llm": "model.gguf", "mmproj": "mmproj.gguf"},
        "config": {
            "vision": {
                "image_size": 512, "patch_size": 16, "grid": 32, "n_patches": 1024, "class_token": False,
                "hidden": vc.hidden_size, "ffn": vc.intermediate_size, "layers": vc.num_hidden_layers,
                "heads": vc.num_attention_heads, "head_dim": vc.hidden_size // vc.num_attention_heads,
                "norm": "LayerNorm", "eps": vc.layer_norm_eps, "qkv_bias": True,
                "act": "gelu_pytorch_tanh (tanh GELU)", "final_norm": "post_layernorm",
            },
            "projector": {
                "type": "idefics3", "pixel_shuffle_scale": 4, "in": 16 * vc.hidden_size,
                "layers": "Linear(in, text hidden), no bias", "out": tc.hidden_size,
            },
            "text": {
                "arch": "llama", "vocab": tc.vocab_size, "hidden": tc.hidden_size, "ffn": tc.intermediate_size,
                "layers": tc.num_hidden_layers, "heads": tc.num_attention_heads, "kv_heads": tc.num_key_value_heads,
                "head_dim": tc.hidden_size // tc.num_attention_heads, "rope_theta": SMOL_TEXT["rope_theta"],
                "rms_norm_eps": tc.rms_norm_eps, "qkv_bias": False, "tied_output": False,
            },
            "tile_size": 512, "tokens_per_view": 64, "preproc_longest_edge": 2048,
            "resample": "PIL LANCZOS", "image_mean": [0.5] * 3, "image_std": [0.5] * 3,
            "image_token": "<image>", "image_token_id": specials["<image>"],
            "placeholder": "split: per tile <fake_token_around_image><row_R_col_C> + 64 <image>, '\\n' after each tile "
            "row, then '\\n<fake_token_around_image><global-img>' + 64 <image> + '<fake_token_around_image>'; "
            "unsplit: '<fake_token_around_image><global-img>' + 64 <image> + '<fake_token_around_image>'",
            "add_bos": False,
        },
        "special_tokens": specials,
        "chat_template": SMOLVLM_TEMPLATE,
        "image_recipe": IMAGE_RECIPE,
        "prompt_cases": cases,
        "embeddings": embeddings,
        "whole_model": whole,
        "conversion_check": conversion,
        "tokenize_check": tokenize_check(tokenizer, llm_gguf, cases),
        "llamacpp_text_greedy": text_greedy_check(model, tokenizer, llm_gguf, next(c for c in cases if c["name"] == "text_only")),
        "gguf": {"model.gguf": gguf_listing(llm_gguf), "mmproj.gguf": gguf_listing(mm_gguf)},
    }
    mtmd = out_dir / "mtmd_token_counts.json"
    if mtmd.is_file():
        log(f"{name}: keeping {mtmd.name} (written by scripts/smolvlm_mtmd_token_counts.py)")
    write_json(out_dir / "reference.json", reference)
    log(f"{name}: wrote {sorted(p.name for p in out_dir.iterdir())}")


def main() -> None:
    if len(sys.argv) >= 7 and sys.argv[1] == "--convert":
        hf_dir, out_file, pre, model_name, outtype = sys.argv[2:7]
        convert_mode(hf_dir, out_file, pre, model_name, mmproj="--mmproj" in sys.argv[7:], outtype=outtype)
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--family", choices=["internvl", "smolvlm"], action="append")
    ap.add_argument("--keep-hf", type=Path, help="also save the transformers checkpoints here (for debugging)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)  # deterministic reductions, and the machine is shared
    families = args.family or ["internvl", "smolvlm"]
    if "internvl" in families:
        make_internvl(args.keep_hf)
    if "smolvlm" in families:
        make_smolvlm(args.keep_hf)


if __name__ == "__main__":
    main()
