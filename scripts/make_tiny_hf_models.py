#!/usr/bin/env python3
"""Build the tiny random reference models for edgevl's qwen2 / llama / SentencePiece / RoPE tests.

Run with the reference venv (torch, transformers, tokenizers, sentencepiece):

    /root/venv-ref/bin/python scripts/make_tiny_hf_models.py [NAME...]   (default: every model)

It writes, for NAME in {tiny-qwen2, tiny-llama-spm, tiny-llama3-rope}, into tests/fixtures/NAME/:

  model.gguf          the transformers model converted by llama.cpp's own convert_hf_to_gguf.py (--outtype f32),
                      taken from the llama-cpp-python==0.3.36 sdist (scripts/build-llamacpp.sh unpacks it)
  logits.json         index: for each prompt its text, the HF tokenizer's ids, the shape [n_tokens, n_vocab],
                      the .bin file name, HF's argmax per position and the top1-top2 logit margin per position
  logits-N.bin        transformers' float32 logits at EVERY prompt position, little-endian f32, row-major
                      [n_tokens][n_vocab]
                      and a cross-check: greedy continuations by transformers and by llama-completion on
                      model.gguf (ids from its session file)
  tokenize.json       22 strings: ids from `llama-tokenize` on model.gguf (the goldens), the HF tokenizer's ids,
                      (SPM model) the sentencepiece library's ids, and whether they agree

The HF checkpoint itself lives in a temporary directory only.  Needs llama.cpp built by
scripts/build-llamacpp.sh (its source tree for the converter, llama-tokenize and llama-completion).

The models:
  tiny-qwen2      Qwen2ForCausalLM, hidden 64, 2 layers, 4 heads, 2 KV heads (GQA), intermediate 128,
                  rope_theta 10000, tied embeddings, q/k/v biases (random, non-zero); byte-level BPE tokenizer
                  (vocab 512) trained here with the `tokenizers` library with Qwen2's pre-tokenizer regex
                  and NFC normalizer, special tokens <|endoftext|> <|im_start|> <|im_end|>.  qwen2 uses NeoX RoPE
                  in llama.cpp.
  tiny-llama-spm  LlamaForCausalLM, same sizes, untied output; SentencePiece BPE tokenizer (vocab 400,
                  byte_fallback) trained here with the `sentencepiece` package.  llama uses normal (non-NeoX)
                  RoPE in llama.cpp; the converter permutes the q/k rows.
  tiny-llama3-rope tiny-llama-spm's shapes and tokenizer (no tokenize.json) with Llama 3.1's RoPE scaling
                  (rope_type llama3, factor 8, original context 64), which the converter writes as
                  rope_freqs.weight (per-pair frequency factors).

All weights are random but seeded (torch.manual_seed), and scaled up from transformers' default init so the
logits have a real spread (a near-uniform distribution would make top-1 comparisons meaningless); RMSNorm
weights and the qwen2 attention biases are randomised too so that a decoder that ignores them fails.

Tokenizer training corpus: tests/fixtures/text/devils-dictionary.txt (public domain, see its README).

Converter workaround: convert_hf_to_gguf.py refuses BPE tokenizers whose pre-tokenizer hash it does not know
(TextModel.get_vocab_base_pre raises NotImplementedError).  Our freshly trained tokenizer necessarily has an
unknown hash, so in the `--convert` sub-mode this script imports the converter's `conversion` package from the
sdist tree and monkeypatches TextModel.get_vocab_base_pre to return "qwen2" (the pre-tokenizer we really
used), then runs convert_hf_to_gguf.main().  Nothing else in the converter is changed.  The sub-mode runs in a
child process with PYTHONPATH=<sdist>/gguf-py:<sdist> so the sdist's gguf-py, not the venv's, writes the file.
"""

from __future__ import annotations

import json
import os
import random
import shutil
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

SEED = 1234

# Qwen2's pre-tokenizer split regex, exactly as in Qwen/Qwen2-0.5B's tokenizer.json.
QWEN2_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Prompts whose logits are recorded (ids come from the HF tokenizer).
LOGIT_PROMPTS = [
    "The quick brown fox jumps over the lazy dog.",
    "ABSURDITY, n. A statement or belief manifestly inconsistent with one's own opinion. 1906!",
    "def add(a, b):\n    return a + b  # café ✓",
]

# Strings for tokenize.json: ASCII, unicode, emoji, code, digits, runs of spaces, newlines, specials.
TOKENIZE_STRINGS = [
    "Hello world",
    " Hello world",
    "Hello  world",
    "   leading spaces and trailing   ",
    "The Devil's Dictionary, by Ambrose Bierce.",
    "I've been 'told he's there, 'RE you sure? We'Ve a'lL",
    "3 33 333 3333 33333 3.14159 1906-1911",
    "line one\nline two\n\nline four\r\n",
    "\ttabs\tand\t\ttabs",
    "def f(x):\n    return x * 2  # comment",
    "café naïve résumé",
    "Ünïcödé ẞ Straße",
    "日本語のテキスト",
    "нещо на Български",
    "🚀 emoji 😶\u200d🌫️ 🦙🦙",
    "e\u0301 vs \u00e9 (combining acute vs precomposed)",
    "<|im_start|>user\nhi<|im_end|>",
    "<|endoftext|>",
    "<s> and </s> look special",
    "!!!!?????......------=======",
    "",
    " ",
]


def log(msg: str) -> None:
    print(f"make_tiny_hf_models: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------- converter mode


def convert_mode(hf_dir: str, out_file: str) -> None:
    """Child-process entry: run llama.cpp's converter with the pre-tokenizer hash check patched out."""
    from conversion.base import TextModel  # from the sdist tree via PYTHONPATH

    def get_vocab_base_pre(self, tokenizer) -> str:  # noqa: ARG001 - signature of the patched method
        # Our tokenizer is trained here, so its hash is unknown to the converter; it uses Qwen2's regex.
        return "qwen2"

    TextModel.get_vocab_base_pre = get_vocab_base_pre
    import convert_hf_to_gguf

    sys.argv = ["convert_hf_to_gguf.py", hf_dir, "--outtype", "f32", "--outfile", out_file]
    convert_hf_to_gguf.main()


def convert(hf_dir: Path, out_file: Path) -> None:
    if not (LLAMACPP_SRC / "convert_hf_to_gguf.py").is_file():
        sys.exit(f"make_tiny_hf_models: {LLAMACPP_SRC}/convert_hf_to_gguf.py missing; run scripts/build-llamacpp.sh")
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{LLAMACPP_SRC / 'gguf-py'}{os.pathsep}{LLAMACPP_SRC}"
    subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--convert", str(hf_dir), str(out_file)],
        env=env,
        check=True,
        stdout=sys.stderr,
    )


# --------------------------------------------------------------------------------------------- helpers


def seed_all(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def corpus_lines() -> list[str]:
    text = CORPUS.read_text(encoding="utf-8")
    return [line for line in text.split("\n") if line.strip()]


def randomise(model, scale: float) -> None:
    """Seeded random weights with a real spread: matrices N(0, scale), norms 1+N(0,0.1), biases N(0,0.1)."""
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or "layernorm" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(scale * torch.randn_like(p))


def llama_bin_dir() -> Path:
    out = subprocess.run(
        ["bash", str(REPO / "scripts" / "build-llamacpp.sh"), "llama-tokenize", "llama-completion"],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(out.stdout.strip().splitlines()[-1])


def llama_tokenize(bin_dir: Path, gguf: Path, text: str) -> list[int]:
    """Ids from llama.cpp: add_bos from the GGUF metadata, special tokens parsed (the tool's defaults),
    the text passed verbatim on stdin (--no-escape)."""
    out = subprocess.run(
        [str(bin_dir / "llama-tokenize"), "-m", str(gguf), "--stdin", "--ids", "--no-escape", "--log-disable"],
        input=text.encode("utf-8"),
        check=True,
        capture_output=True,
    )
    return json.loads(out.stdout.decode("utf-8").strip().splitlines()[-1])


def llamacpp_greedy(bin_dir: Path, gguf: Path, prompt: str, n: int) -> tuple[list[int], list[int]]:
    """(prompt ids, generated ids) from llama-completion -no-cnv --temp 0 on the GGUF, ids read from the
    session file it saves (see scripts/llamacpp_goldens.py)."""
    from llamacpp_goldens import COMMON_FLAGS, parse_verbose_prompt, read_session_tokens

    with tempfile.TemporaryDirectory() as tmp:
        session = Path(tmp) / "session.bin"
        res = subprocess.run(
            [str(bin_dir / "llama-completion"), "-m", str(gguf), "-p", prompt, "-n", str(n), "--temp", "0",
             "-no-cnv", *COMMON_FLAGS, "--seed", "1", "--no-display-prompt", "--verbose-prompt",
             "--prompt-cache", str(session), "--prompt-cache-all"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=True,
        )
        prompt_ids = parse_verbose_prompt(res.stderr.decode("utf-8", "replace"))
        all_ids = read_session_tokens(session)
    assert all_ids[: len(prompt_ids)] == prompt_ids
    return prompt_ids, all_ids[len(prompt_ids):]


def hf_greedy(model, ids: list[int], n: int, eog: set[int]) -> list[int]:
    import torch

    out = list(ids)
    with torch.no_grad():
        for _ in range(n):
            nxt = int(model(torch.tensor([out], dtype=torch.long)).logits[0, -1].argmax())
            out.append(nxt)
            if nxt in eog:
                break
    return out[len(ids):]


GREEDY_N = 16


def write_logits(model, tokenizer, out_dir: Path, gguf: Path, bin_dir: Path, eog: set[int]) -> None:
    import numpy as np
    import torch

    entries = []
    for i, prompt in enumerate(LOGIT_PROMPTS):
        assert "\\" not in prompt, "llama-completion processes escapes in -p"
        ids = tokenizer(prompt)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([ids], dtype=torch.long)).logits[0].to(torch.float32).numpy()
        assert logits.shape == (len(ids), model.config.vocab_size)
        fname = f"logits-{i}.bin"
        (out_dir / fname).write_bytes(np.ascontiguousarray(logits, dtype="<f4").tobytes())
        top2 = np.sort(logits, axis=1)[:, -2:]
        entries.append(
            {
                "text": prompt,
                "ids": [int(t) for t in ids],
                "shape": [len(ids), int(logits.shape[1])],
                "file": fname,
                "argmax": [int(a) for a in logits.argmax(axis=1)],
                "top1_top2_margin": [round(float(m), 6) for m in (top2[:, 1] - top2[:, 0])],
            }
        )
        # Cross-check of the conversion: llama.cpp's own greedy continuation of the same prompt on model.gguf.
        lc_prompt_ids, lc_gen = llamacpp_greedy(bin_dir, gguf, prompt, GREEDY_N)
        hf_gen = hf_greedy(model, ids, GREEDY_N, eog)
        entries[-1].update(
            {
                "llamacpp_prompt_ids_equal": lc_prompt_ids == [int(t) for t in ids],
                "hf_greedy_ids": hf_gen,
                "llamacpp_greedy_ids": lc_gen,
                "greedy_equal": hf_gen == lc_gen,
            }
        )
        log(f"{out_dir.name} prompt {i}: llama.cpp greedy == transformers greedy: {hf_gen == lc_gen}")
    index = {
        "format": "each file: little-endian float32, row-major [n_tokens][n_vocab]; row t = logits after "
        "feeding ids[0..=t] (position t predicts token t+1)",
        "producer": f"transformers {__import__('transformers').__version__}, torch {torch.__version__}, "
        "float32, eager attention, model.eval()",
        "greedy": f"hf_greedy_ids: argmax continuation ({GREEDY_N} tokens, stops after an EOG id) by transformers; "
        f"llamacpp_greedy_ids: `llama-completion -m model.gguf -p TEXT -n {GREEDY_N} --temp 0 -no-cnv -t 2 "
        "--no-repack --seed 1` (ids from its --prompt-cache session file). Equal ids show that model.gguf and "
        "these logits agree through llama.cpp as a third party.",
        "prompts": entries,
    }
    write_json(out_dir / "logits.json", index)


QWEN2_TOKENIZE_NOTE = (
    "Expected HF/llama.cpp difference: the HF tokenizer applies Qwen2's NFC normalizer (e + U+0301 becomes "
    "U+00E9 before BPE); llama.cpp's BPE tokenizer does no Unicode normalization, so the decomposed sequence is "
    "tokenized as its own bytes. Follow llama.cpp."
)
SPM_TOKENIZE_NOTE = (
    "Expected HF/llama.cpp differences: (1) llama.cpp (add_space_prefix) always prepends one space to the text "
    "and after each special token, like sentencepiece's add_dummy_prefix; transformers 5's LlamaTokenizer "
    "(legacy=False, Metaspace prepend_scheme 'first') does not add it when the text already starts with a space "
    "and not after special tokens. sentencepiece itself (spm_ids) agrees with llama.cpp on every case without "
    "special tokens. (2) '<s>'/'</s>' in text are parsed as the BOS/EOS control tokens by llama-tokenize "
    "(parse_special) and by HF, but never by sentencepiece's encode. Follow llama.cpp."
)


def write_tokenize(tokenizer, gguf: Path, out_dir: Path, bin_dir: Path, spm_model: Path | None = None) -> list[str]:
    sp = None
    if spm_model is not None:
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    rows, disagreements = [], []
    for text in TOKENIZE_STRINGS:
        ids = llama_tokenize(bin_dir, gguf, text)
        hf = [int(t) for t in tokenizer(text)["input_ids"]]
        row = {"text": text, "ids": ids, "hf_ids": hf, "agree": ids == hf}
        if sp is not None:
            row["spm_ids"] = [sp.bos_id()] + [int(t) for t in sp.encode(text)]
            row["agree_spm"] = ids == row["spm_ids"]
        rows.append(row)
        if ids != hf:
            disagreements.append(text)
    doc = {
        "ids": "from llama-tokenize (llama.cpp 0.3.36) on model.gguf: `llama-tokenize -m model.gguf --stdin --ids "
        "--no-escape` with the text on stdin; BOS added iff the GGUF's add_bos_token is true; special tokens "
        "parsed (llama-tokenize's default). These are the golden ids.",
        "hf_ids": "from the transformers tokenizer the GGUF was converted from, tokenizer(text).input_ids "
        "(add_special_tokens=True). Informational; where they differ, llama.cpp is the reference.",
        "notes": SPM_TOKENIZE_NOTE if sp is not None else QWEN2_TOKENIZE_NOTE,
        "cases": rows,
    }
    if sp is not None:
        doc["spm_ids"] = ("from the sentencepiece library itself on the trained tokenizer.model: [bos] + "
                          "SentencePieceProcessor.encode(text); it never parses special tokens such as <s>. "
                          "Informational.")
    write_json(out_dir / "tokenize.json", doc)
    return disagreements


def model_done(name: str, out_dir: Path, gguf: Path, disagreements: list[str]) -> None:
    log(f"{name}: model.gguf {gguf.stat().st_size} bytes; tokenizer disagreements HF vs llama.cpp: "
        f"{len(disagreements)} {disagreements!r}")


# --------------------------------------------------------------------------------------------- tiny-qwen2


def build_qwen2_tokenizer(hf_dir: Path):
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
        vocab_size=512 - len(QWEN2_SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    tok.train_from_iterator(corpus_lines(), trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN2_SPECIALS])
    assert tok.get_vocab_size() == 512, tok.get_vocab_size()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
        add_bos_token=False,
        chat_template=CHATML_TEMPLATE,
    )
    fast.save_pretrained(hf_dir)
    # Like Qwen2's own tokenizer_config.json: say explicitly that no BOS/EOS is added, so the converter writes
    # tokenizer.ggml.add_bos_token = false (transformers 5 does not save these keys for a generic tokenizer).
    cfg_path = hf_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg.update({"add_bos_token": False, "add_eos_token": False, "add_prefix_space": False})
    cfg_path.write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    return AutoTokenizer.from_pretrained(hf_dir)


def make_qwen2(bin_dir: Path) -> None:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    name = "tiny-qwen2"
    out_dir = FIXTURES / name
    out_dir.mkdir(parents=True, exist_ok=True)
    seed_all(SEED)
    with tempfile.TemporaryDirectory() as tmp:
        hf_dir = Path(tmp) / name
        tokenizer = build_qwen2_tokenizer(hf_dir)
        eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
        config = Qwen2Config(
            vocab_size=512,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            rms_norm_eps=1e-6,
            tie_word_embeddings=True,
            use_sliding_window=False,
            bos_token_id=eos,
            eos_token_id=eos,
            pad_token_id=eos,
            attn_implementation="eager",
        )
        seed_all(SEED)
        model = Qwen2ForCausalLM(config)
        randomise(model, scale=0.15)
        model.eval()
        assert model.model.layers[0].self_attn.q_proj.bias is not None, "Qwen2 must have q/k/v biases"
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr(), "must be tied"
        model.save_pretrained(hf_dir)
        gguf = out_dir / "model.gguf"
        convert(hf_dir, gguf)
        # llama.cpp also treats <|im_end|> as end-of-generation for this vocabulary
        eog = {eos, tokenizer.convert_tokens_to_ids("<|im_end|>")}
        write_logits(model, tokenizer, out_dir, gguf, bin_dir, eog=eog)
        disagreements = write_tokenize(tokenizer, gguf, out_dir, bin_dir)
        model_done(name, out_dir, gguf, disagreements)


# --------------------------------------------------------------------------------------------- tiny-llama-spm


def build_spm_tokenizer(hf_dir: Path):
    import sentencepiece as spm
    from transformers import AutoTokenizer, LlamaTokenizer

    hf_dir.mkdir(parents=True, exist_ok=True)
    prefix = hf_dir / "spm"
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus_lines()),
        model_prefix=str(prefix),
        vocab_size=400,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        shuffle_input_sentence=False,
        input_sentence_size=0,
        minloglevel=2,
    )
    shutil.move(str(prefix) + ".model", hf_dir / "tokenizer.model")
    os.remove(str(prefix) + ".vocab")
    # transformers converts the SentencePiece model to its tokenizers-backed LlamaTokenizer (legacy=False).
    tok = LlamaTokenizer.from_pretrained(hf_dir, legacy=False, add_bos_token=True, add_eos_token=False)
    tok.save_pretrained(hf_dir)
    return AutoTokenizer.from_pretrained(hf_dir)


def make_tiny_llama(bin_dir: Path, name: str, seed: int, rope: dict, tokenize: bool) -> None:
    """A tiny untied LlamaForCausalLM with a SentencePiece tokenizer trained here and `rope` as its
    rope_parameters: converted, its logits written, and (with `tokenize`) its tokenizer checked."""
    from transformers import LlamaConfig, LlamaForCausalLM

    out_dir = FIXTURES / name
    out_dir.mkdir(parents=True, exist_ok=True)
    seed_all(seed)
    with tempfile.TemporaryDirectory() as tmp:
        hf_dir = Path(tmp) / name
        tokenizer = build_spm_tokenizer(hf_dir)
        config = LlamaConfig(
            vocab_size=400,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            rope_parameters=rope,
            rms_norm_eps=1e-5,
            tie_word_embeddings=False,
            attention_bias=False,
            mlp_bias=False,
            bos_token_id=1,
            eos_token_id=2,
            attn_implementation="eager",
        )
        seed_all(seed)
        model = LlamaForCausalLM(config)
        randomise(model, scale=0.15)
        model.eval()
        assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr(), "must be untied"
        model.save_pretrained(hf_dir)
        gguf = out_dir / "model.gguf"
        convert(hf_dir, gguf)
        write_logits(model, tokenizer, out_dir, gguf, bin_dir, eog={2})
        disagreements = []
        if tokenize:
            disagreements = write_tokenize(tokenizer, gguf, out_dir, bin_dir, spm_model=hf_dir / "tokenizer.model")
        model_done(name, out_dir, gguf, disagreements)


def make_llama_spm(bin_dir: Path) -> None:
    make_tiny_llama(bin_dir, "tiny-llama-spm", SEED + 1, {"rope_type": "default", "rope_theta": 10000.0}, True)


def make_llama3_rope(bin_dir: Path) -> None:
    """tiny-llama-spm's shapes and tokenizer with Llama 3.1's RoPE scaling (rope_type llama3), which
    llama.cpp's converter writes as the frequency factors tensor rope_freqs.weight."""
    # original_max_position_embeddings 64 puts the 8 frequency pairs of a 16-wide head on all three
    # branches of the llama3 rule (factor 1, smoothed, factor 8) at these short prompts.
    rope = {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    make_tiny_llama(bin_dir, "tiny-llama3-rope", SEED + 2, rope, False)


MODELS = {"tiny-qwen2": make_qwen2, "tiny-llama-spm": make_llama_spm, "tiny-llama3-rope": make_llama3_rope}


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--convert":
        convert_mode(sys.argv[2], sys.argv[3])
        return
    import torch

    names = sys.argv[1:] or list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        sys.exit(f"make_tiny_hf_models: unknown model(s) {unknown}; known: {list(MODELS)}")
    torch.set_num_threads(1)  # deterministic reductions
    bin_dir = llama_bin_dir()
    for name in names:
        MODELS[name](bin_dir)


if __name__ == "__main__":
    main()
