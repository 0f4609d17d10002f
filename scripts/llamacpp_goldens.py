#!/usr/bin/env python3
"""Run llama.cpp's llama-perplexity and llama-completion on SmolLM2 and write golden JSON files.

Called by scripts/gen_llamacpp_goldens.sh (which builds llama.cpp and fetches the model first):

    python3 llamacpp_goldens.py --bin BIN_DIR --model MODEL.gguf --text TEXT.txt --out tests/fixtures/smollm2

Writes perplexity.json, perplexity_q8_0.json (Q8_0 KV cache, first chunks) and greedy.json into --out.  Needs only the Python standard library.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Every llama.cpp run gets --no-repack: this llama.cpp build (GGML_NATIVE=ON) compiles ggml's AMX kernels
# because the CPU advertises AMX, but this VM's kernel does not let a process use the AMX tiles, so the
# first AMX instruction (tilezero in tinygemm_kernel_amx) dies with SIGILL.  --no-repack turns off the
# "extra buffer types" (AMX and the CPU repack layouts), leaving ggml's plain CPU kernels, which are also
# the closest reference for edgevl's own Q4_1 x Q8_1 dot products.
COMMON_FLAGS = ["-t", "2", "--no-repack"]

GREEDY_PROMPTS = [
    {"kind": "prose", "prompt": "The old lighthouse keeper climbed the stairs every evening, and"},
    {"kind": "list", "prompt": "Things to pack for a camping trip:\n1. Tent\n2. Sleeping bag\n3."},
    {"kind": "code", "prompt": "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"},
    {"kind": "question", "prompt": "Q: Why do leaves change colour in autumn?\nA:"},
    {"kind": "numeric", "prompt": "Counting by sevens: 7, 14, 21, 28,"},
]
N_PREDICT = 32

LLAMA_SESSION_MAGIC = 0x6767736E  # 'ggsn', include/llama.h
LLAMA_SESSION_VERSION = 10


def log(msg: str) -> None:
    print(f"llamacpp_goldens: {msg}", file=sys.stderr, flush=True)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return path.name


def write_json(path: Path, obj) -> None:
    """Pretty JSON with every list of plain numbers kept on one line (token ids, logits margins)."""
    text = json.dumps(obj, indent=1, ensure_ascii=False)
    text = re.sub(r"\[\s*(-?[\d.e+-]+(?:,\s*-?[\d.e+-]+)*)\s*\]",
                  lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)
    path.write_text(text + "\n", encoding="utf-8")


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    log("running: " + " ".join(cmd))
    res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True)
    if res.returncode != 0:
        sys.stderr.write(res.stderr.decode("utf-8", "replace")[-4000:])
        sys.exit(f"llamacpp_goldens: {cmd[0]} failed with exit code {res.returncode}")
    return res


def shown(cmd: list[str], model: Path, text: Path | None = None) -> str:
    """The command with the binary's directory and the cache path stripped, for the JSON."""
    out = []
    for c in cmd:
        if c == str(model):
            c = model.name
        elif text is not None and c == str(text):
            c = rel(text)
        elif os.sep in c and Path(c).name.startswith("llama-"):
            c = Path(c).name
        out.append(c)
    return " ".join(json.dumps(c) if (" " in c or "\n" in c or '"' in c) else c for c in out)


def llama_cpp_version(bin_dir: Path) -> str:
    res = subprocess.run([str(bin_dir / "llama-completion"), "--version"], capture_output=True)
    lines = (res.stdout + res.stderr).decode("utf-8", "replace").strip().splitlines()
    return "; ".join(line.strip() for line in lines if line.startswith(("version", "built")))


def count_tokens(bin_dir: Path, model: Path, text: str) -> int:
    res = subprocess.run(
        [str(bin_dir / "llama-tokenize"), "-m", str(model), "--stdin", "--ids", "--no-escape",
         "--no-parse-special", "--log-disable"],
        input=text.encode("utf-8"),
        capture_output=True,
        check=True,
    )
    return len(json.loads(res.stdout.decode("utf-8").strip().splitlines()[-1]))


# ------------------------------------------------------------------------------------------------ perplexity

PPL_NOTES = [
    "Reproduces tools/perplexity/perplexity.cpp `perplexity()` of llama.cpp 0.3.36 (the llama-cpp-python==0.3.36 sdist).",
    "Input: the file is read whole and exactly ONE trailing '\\n' is removed (common/arg.cpp, -f handler) before "
    "tokenizing. No escape processing (perplexity sets params.escape=false).",
    "Tokenization: the whole text once, common_tokenize(ctx, text, add_special=true, parse_special=false): a BOS "
    "is prepended only if tokenizer.ggml.add_bos_token is true, text that looks like a special token is tokenized "
    "as plain text, and add_eos must be false (asserted).",
    "n_chunks = floor(n_tokens / n_ctx); the remaining tokens are ignored; at least 2*n_ctx tokens are required.",
    "Chunk i is tokens[i*n_ctx .. (i+1)*n_ctx), evaluated from an empty KV cache at positions 0..n_ctx-1.",
    "BOS: if add_bos is true, the chunk's FIRST token is REPLACED by BOS for evaluation (not prepended; the chunk "
    "stays n_ctx tokens long). SmolLM2 has add_bos_token = false, so NOTHING is replaced or added: every chunk "
    "starts directly with its first text token, and the whole text has no BOS.",
    "Scoring: first = n_ctx/2 (256 for c=512). The logits at positions j = first .. n_ctx-2 predict token j+1; "
    "so n_ctx-1-first = 255 tokens are scored per chunk (the last position's logits are unused, the token at "
    "position `first` itself is never scored).",
    "Per token: nll = -(logit[tok] - max - log(sum_exp)), max over float logits, sum_exp = sum of expf(logit-max) "
    "accumulated in double; nll summed in double over all scored tokens of all chunks.",
    "ppl = exp(total_nll / count), count = n_chunks*(n_ctx-1-first). The values printed per chunk ('[i]x') and "
    "recorded in cumulative_ppl are RUNNING values: exp(mean nll over chunks 1..i), not per-chunk perplexities.",
    "Uncertainty: ppl_stderr = ppl * sqrt((mean(nll^2) - mean(nll)^2) / (count-1)).",
    "Batching detail (no numerical meaning): n_batch=2048 so 4 chunks are decoded in one batch as 4 independent "
    "sequences (n_seq=4); each sequence only attends to itself.",
    "Run with --no-repack (see `command`): this llama.cpp build's AMX kernels die with SIGILL on this VM; "
    "--no-repack selects ggml's plain CPU kernels (weights stay Q4_1, activations quantised to Q8_1 for the dot products).",
]


# The Q8_0 KV cache golden (perplexity_q8_0.json): the same measure with llama.cpp's q8_0 cache, which needs its
# flash attention, over the first Q8_CHUNKS chunks only (chunks are evaluated independently from an empty cache,
# so these are the first chunks of the full run; a short golden keeps the test that uses it cheap).
Q8_CHUNKS = 4
Q8_FLAGS = ["-ctk", "q8_0", "-ctv", "q8_0", "-fa", "on", "--chunks", str(Q8_CHUNKS)]
Q8_NOTES = [
    "KV cache: keys and values stored as Q8_0 blocks (-ctk q8_0 -ctv q8_0), which llama.cpp only allows with flash "
    "attention (-fa on). Its CPU flash attention then uses its one-query kernel for every batch size: the query is "
    "converted to Q8_0 (K's vec_dot_type) and dotted with the quantised keys, value rows are dequantised to f32 and "
    "accumulated in f32 with an online softmax.",
    f"--chunks {Q8_CHUNKS}: only the first {Q8_CHUNKS} chunks are evaluated (each chunk starts from an empty cache, so "
    "they are exactly the first chunks of a full run); ppl is over their scored tokens.",
]


# The Q4_K_M golden (perplexity_q4_k_m.json): llama-perplexity on `edgevl convert --scheme q4_k` of SmolLM2's
# Hugging Face directory (byte-identical tensors to llama-quantize Q4_K_M; SmolLM2 is 576 wide, so 166 of its
# matrices are Q5_0), first Q4KM_CHUNKS chunks.
Q4KM_CHUNKS = 4
Q4KM_FLAGS = ["--chunks", str(Q4KM_CHUNKS)]
Q4KM_REPACK_NOTE = ("Run with --no-repack (see `command`): ggml's plain CPU kernels, each matrix in its stored type "
                    "(Q4_K, Q6_K, Q5_0, Q8_0) with its vec_dot activation type; the repacked kernels give 40.6913.")
Q4KM_NOTES = [
    "Model: edgevl convert --scheme q4_k of the Hugging Face directory scripts/make-smollm2-hf.sh builds (16 Q4_K, "
    "14 Q6_K, 166 Q5_0, 15 Q8_0, 61 F32 tensors: llama-quantize Q4_K_M's types and bytes). Its Q5_0 matrices "
    "are multiplied with Q8_0 activations, Q4_K/Q6_K with Q8_K ones.",
    f"--chunks {Q4KM_CHUNKS}: only the first {Q4KM_CHUNKS} chunks are evaluated (each from an empty cache).",
]


def perplexity(bin_dir: Path, model: Path, text_path: Path, out_dir: Path,
               extra: list[str] | None = None, out_name: str = "perplexity.json",
               extra_notes: list[str] | None = None) -> None:
    cmd = [str(bin_dir / "llama-perplexity"), "-m", str(model), "-f", str(text_path), "-c", "512", *COMMON_FLAGS,
           *(extra or [])]
    res = run(cmd)
    stdout = res.stdout.decode("utf-8", "replace")
    stderr = res.stderr.decode("utf-8", "replace")
    both = stdout + "\n" + stderr
    cumulative = [float(m.group(2)) for m in re.finditer(r"\[(\d+)\](\d+\.\d+),", stdout)]
    m = re.search(r"Final estimate: PPL = (\d+\.\d+) \+/- (\d+\.\d+)", both)
    c = re.search(r"calculating perplexity over (\d+) chunks, n_ctx=(\d+), batch_size=(\d+), n_seq=(\d+)", both)
    if not m or not c or not cumulative:
        sys.exit("llamacpp_goldens: could not parse llama-perplexity output")
    n_chunks, n_ctx = int(c.group(1)), int(c.group(2))
    if len(cumulative) != n_chunks:
        sys.exit(f"llamacpp_goldens: {len(cumulative)} chunk values for {n_chunks} chunks")
    per_chunk_scored = n_ctx - 1 - n_ctx // 2
    # per-chunk perplexities derived from the running values (rounded to 4 decimals by llama.cpp)
    chunk_ppl, prev = [], 0.0
    for i, cp in enumerate(cumulative, start=1):
        total = i * per_chunk_scored * math.log(cp)
        chunk_ppl.append(round(math.exp((total - prev) / per_chunk_scored), 3))
        prev = total
    text = text_path.read_text(encoding="utf-8")
    if text.endswith("\n"):
        text = text[:-1]
    doc = {
        "command": shown(cmd, model, text_path),
        "llama_cpp": f"llama-cpp-python==0.3.36 sdist, vendor/llama.cpp ({llama_cpp_version(bin_dir)})",
        "model": model.name,
        "model_sha256": sha256(model),
        "text_file": rel(text_path),
        "text_sha256": sha256(text_path),
        "n_ctx": n_ctx,
        "n_tokens": count_tokens(bin_dir, model, text),
        "n_chunks": n_chunks,
        "n_scored_tokens": n_chunks * per_chunk_scored,
        "ppl": float(m.group(1)),
        "ppl_stderr": float(m.group(2)),
        "cumulative_ppl": cumulative,
        "chunk_ppl_derived": chunk_ppl,
        "chunk_ppl_derived_note": "per-chunk ppl recomputed from cumulative_ppl (which llama.cpp rounds to 4 "
        "decimals), so approximate (about 1e-3 relative); for diagnosing which chunk differs",
        "add_bos": False,
        "notes": (PPL_NOTES if out_name != "perplexity_q4_k_m.json" else PPL_NOTES[:-1] + [Q4KM_REPACK_NOTE])
        + (extra_notes or []),
    }
    write_json(out_dir / out_name, doc)
    log(f"{out_name}: ppl {doc['ppl']} over {n_chunks} chunks, {doc['n_tokens']} tokens")


# ------------------------------------------------------------------------------------------------ greedy


def read_session_tokens(path: Path) -> list[int]:
    """Token ids from a llama.cpp session file (llama_context::state_save_file): u32 magic, u32 version,
    u32 n_tokens, i32 tokens[n_tokens], then the KV state (ignored)."""
    data = path.read_bytes()
    magic, version, n = struct.unpack_from("<III", data, 0)
    if magic != LLAMA_SESSION_MAGIC or version != LLAMA_SESSION_VERSION:
        sys.exit(f"llamacpp_goldens: {path}: unexpected session magic/version {magic:#x}/{version}")
    if 12 + 4 * n > len(data):
        sys.exit(f"llamacpp_goldens: {path}: token count {n} past end of file")
    return list(struct.unpack_from(f"<{n}i", data, 12))


def parse_verbose_prompt(stderr: str) -> list[int]:
    """Prompt ids from --verbose-prompt: lines '   504 -> 'The'' after 'number of tokens in prompt = N'."""
    m = re.search(r"number of tokens in prompt = (\d+)", stderr)
    if not m:
        sys.exit("llamacpp_goldens: no --verbose-prompt output")
    n = int(m.group(1))
    ids = [int(x) for x in re.findall(r"^\S+ I\s+(\d+) -> '", stderr[m.end():], flags=re.M)[:n]]
    if len(ids) != n:
        sys.exit(f"llamacpp_goldens: parsed {len(ids)} verbose-prompt ids, expected {n}")
    return ids


def gpt2_byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's bytes_to_unicode table (byte-level BPE token text -> raw byte)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def detokenizer(model: Path):
    """ids -> text from the GGUF's own vocabulary (byte-level BPE; control tokens print as nothing), using
    the sdist's gguf-py. Only a cross-check of what llama-completion printed."""
    from gguf import GGUFReader

    reader = GGUFReader(str(model))
    assert reader.fields["tokenizer.ggml.model"].contents() == "gpt2"
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    types = reader.fields["tokenizer.ggml.token_type"].contents()
    dec = gpt2_byte_decoder()

    def decode(ids: list[int]) -> str:
        out = bytearray()
        for t in ids:
            if types[t] == 3:  # CONTROL
                continue
            out += bytes(dec[ch] for ch in tokens[t]) if types[t] == 1 else tokens[t].encode("utf-8")
        return out.decode("utf-8", "replace")

    return decode


def greedy(bin_dir: Path, model: Path, out_dir: Path) -> None:
    decode = detokenizer(model)
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, case in enumerate(GREEDY_PROMPTS):
            prompt = case["prompt"]
            assert "\\" not in prompt, "llama-completion processes escapes in -p; keep prompts backslash-free"
            session = Path(tmp) / f"session-{i}.bin"
            base = [str(bin_dir / "llama-completion"), "-m", str(model), "-p", prompt, "-n", str(N_PREDICT),
                    "--temp", "0", "-no-cnv", *COMMON_FLAGS, "--seed", "1"]
            extra = ["--no-display-prompt", "--verbose-prompt", "--prompt-cache", str(session), "--prompt-cache-all"]
            res = run(base + extra)
            stdout = res.stdout.decode("utf-8", "replace")
            stderr = res.stderr.decode("utf-8", "replace")
            prompt_ids = parse_verbose_prompt(stderr)
            all_ids = read_session_tokens(session)
            if all_ids[: len(prompt_ids)] != prompt_ids:
                sys.exit(f"llamacpp_goldens: session tokens do not start with the prompt ids ({prompt!r})")
            gen_ids = all_ids[len(prompt_ids):]
            # stdout (with --no-display-prompt) = generated text + "\n<func>: saving final output ..." + "\n\n"
            suffix = re.search(r"\n\S+: saving final output to session file '[^']*'\n", stdout)
            if not suffix:
                sys.exit("llamacpp_goldens: unexpected llama-completion stdout")
            text = stdout[: suffix.start()]
            # on an end-of-generation token llama-completion prints " [end of text]\n" (the EOG id is in ids)
            stopped_on_eog = text.endswith(" [end of text]\n")
            if stopped_on_eog:
                text = text[: -len(" [end of text]\n")]
            if len(gen_ids) != N_PREDICT and not stopped_on_eog:
                sys.exit(f"llamacpp_goldens: {len(gen_ids)} generated ids for {prompt!r}")
            if decode(gen_ids) != text:
                sys.exit(f"llamacpp_goldens: printed text {text!r} != decoded ids {decode(gen_ids)!r}")
            cases.append({
                "kind": case["kind"],
                "prompt": prompt,
                "prompt_ids": prompt_ids,
                "ids": gen_ids,
                "text": text,
                "n_generated": len(gen_ids),
                "stopped_on_eog": stopped_on_eog,
            })
            log(f"greedy {case['kind']}: {text!r}")
    shown_cmd = shown(base[:4] + ["PROMPT"] + base[5:], model)
    doc = {
        "command": shown_cmd,
        "command_for_ids": shown_cmd + " --no-display-prompt --verbose-prompt --prompt-cache SESSION --prompt-cache-all",
        "llama_cpp": f"llama-cpp-python==0.3.36 sdist, vendor/llama.cpp ({llama_cpp_version(bin_dir)})",
        "model": model.name,
        "model_sha256": sha256(model),
        "n_predict": N_PREDICT,
        "notes": [
            "Raw completion, no chat template (-no-cnv), greedy (--temp 0).",
            "Prompt handling in llama-completion: -p is escape-processed (\\n etc.; the prompts here contain no "
            "backslash, so they are used verbatim) and tokenized with common_tokenize(ctx, prompt, "
            "add_special=true, parse_special=true): BOS only if add_bos_token is true -- SmolLM2's is false, so "
            "NO BOS; prompt_ids are exactly the prompt's tokens.",
            "ids: the generated token ids, read directly from llama.cpp: --prompt-cache FILE --prompt-cache-all "
            "makes llama-completion save the session (prompt + generated tokens) with llama_state_save_file, whose "
            "header is u32 magic 'ggsn', u32 version 10, u32 n_tokens, i32 tokens[n]; ids = tokens[len(prompt_ids):]. "
            "prompt_ids come from --verbose-prompt and were checked to be the session's prefix. The prompt cache "
            "file does not exist before the run, so nothing is loaded and generation is unchanged.",
            "text: exactly what llama-completion printed for the generated tokens (--no-display-prompt, so no "
            "prompt echo), i.e. the concatenated token pieces (special tokens print as nothing); the trailing "
            "'\\n<func>: saving final output...' log line is stripped. Checked equal to the ids decoded with the "
            "GGUF's own vocabulary.",
            "If an end-of-generation token is sampled, llama-completion stops: ids then end with that token "
            "(stopped_on_eog true, fewer than n_predict ids) and text excludes its ' [end of text]' marker.",
            "Run with --no-repack: this llama.cpp build's AMX kernels die with SIGILL on this VM.",
        ],
        "cases": cases,
    }
    write_json(out_dir / "greedy.json", doc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", type=Path, required=True, help="llama.cpp build/bin directory")
    ap.add_argument("--model", type=Path, required=True, help="SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--text", type=Path, required=True, help="public-domain text for perplexity")
    ap.add_argument("--out", type=Path, required=True, help="output directory (tests/fixtures/smollm2)")
    ap.add_argument("--only", choices=["perplexity", "perplexity-q8_0", "greedy", "perplexity-q4_k_m"],
                    help="produce only one of the files")
    ap.add_argument("--q4km-model", type=Path,
                    help="edgevl convert --scheme q4_k of SmolLM2's HF directory (for perplexity_q4_k_m.json)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.only in (None, "perplexity"):
        perplexity(args.bin, args.model, args.text, args.out)
    if args.only in (None, "perplexity-q8_0"):
        perplexity(args.bin, args.model, args.text, args.out, Q8_FLAGS, "perplexity_q8_0.json", Q8_NOTES)
    if args.only in (None, "greedy"):
        greedy(args.bin, args.model, args.out)
    if args.only in (None, "perplexity-q4_k_m"):
        if args.q4km_model is None:
            sys.exit("llamacpp_goldens: perplexity_q4_k_m.json needs --q4km-model")
        perplexity(args.bin, args.q4km_model, args.text, args.out, Q4KM_FLAGS, "perplexity_q4_k_m.json", Q4KM_NOTES)


if __name__ == "__main__":
    main()
