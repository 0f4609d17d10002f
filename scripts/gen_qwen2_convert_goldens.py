#!/usr/bin/env python3
"""Goldens of `edgevl convert` for Qwen2 (tests/fixtures/convert/tiny-qwen2-*.json).

Builds the tiny Qwen2ForCausalLM checkpoint that crates/edgevl-convert/tests/common/mod.rs builds (same
integer formula for every BF16 value, so nothing large is committed): width 256, 2 layers, 4 heads, 2 KV
heads, FFN 512, q/k/v biases, tied embeddings, SmolLM2's tokenizer files (vocabulary 49152); converts it
with llama.cpp's convert_hf_to_gguf.py --outtype f32, quantises that with llama-quantize (Q8_0, Q4_K_M) and
dumps each with scripts/convert_goldens.py.

Usage: PYTHONPATH=<llama.cpp>/gguf-py /root/venv-ref/bin/python scripts/gen_qwen2_convert_goldens.py
"""
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
CACHE = pathlib.Path(os.environ.get("EDGEVL_CACHE", pathlib.Path.home() / ".cache/edgevl"))
SRC = CACHE / "llama.cpp-0.3.36/src"
D, FF, LAYERS, HEADS, KV_HEADS, VOCAB = 256, 512, 2, 4, 2, 49152
KV = D // HEADS * KV_HEADS


def bf16(shape, seed):
    """BF16 bits of element i: ((((i * 2654435761) mod 2^32) ^ seed) >> 9) & 0x807f | 0x3c00."""
    n = int(np.prod(shape))
    i = np.arange(n, dtype=np.uint64)
    v = ((i * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)) ^ np.uint64(seed)
    return (((v >> np.uint64(9)) & np.uint64(0x807F)) | np.uint64(0x3C00)).astype("<u2")


def tensors():
    out = [("model.embed_tokens.weight", (VOCAB, D))]
    for l in range(LAYERS):
        p = f"model.layers.{l}."
        out += [(p + "input_layernorm.weight", (D,)), (p + "self_attn.q_proj.weight", (D, D)),
                (p + "self_attn.q_proj.bias", (D,)), (p + "self_attn.k_proj.weight", (KV, D)),
                (p + "self_attn.k_proj.bias", (KV,)), (p + "self_attn.v_proj.weight", (KV, D)),
                (p + "self_attn.v_proj.bias", (KV,)), (p + "self_attn.o_proj.weight", (D, D)),
                (p + "post_attention_layernorm.weight", (D,)), (p + "mlp.gate_proj.weight", (FF, D)),
                (p + "mlp.up_proj.weight", (FF, D)), (p + "mlp.down_proj.weight", (D, FF))]
    out.append(("model.norm.weight", (D,)))
    return out


def main():
    hf_src = subprocess.check_output([str(ROOT / "scripts/make-smollm2-hf.sh")], text=True).strip()
    work = pathlib.Path(tempfile.mkdtemp())
    d = work / "tiny-qwen2"
    d.mkdir()
    header, off, blobs = {"__metadata__": {"format": "pt"}}, 0, []
    for seed, (name, shape) in enumerate(tensors()):
        b = bf16(shape, seed + 1).tobytes()
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    raw = json.dumps(header, separators=(",", ":")).encode()
    with open(d / "model.safetensors", "wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw + b"".join(blobs))
    # No "model_type": with "qwen2" there, transformers 5's AutoTokenizer swaps in its Qwen2Tokenizer, which
    # ignores the pre-tokenizer of tokenizer.json (SmolLM2's here) and so changes llama.cpp's chkhsh. Without
    # it the converter reads config.json as it is (every field it needs is given).
    config = {"architectures": ["Qwen2ForCausalLM"], "hidden_size": D, "intermediate_size": FF,
              "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS,
              "vocab_size": VOCAB, "tie_word_embeddings": True, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
              "max_position_embeddings": 4096, "bos_token_id": 1, "eos_token_id": 2}
    (d / "config.json").write_text(json.dumps(config))
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(pathlib.Path(hf_src) / f, d / f)
    env = dict(os.environ, PYTHONPATH=str(SRC / "gguf-py"))
    subprocess.run([sys.executable, str(SRC / "convert_hf_to_gguf.py"), str(d), "--outtype", "f32", "--outfile",
                    str(work / "f32.gguf")], check=True, env=env, capture_output=True)
    out = ROOT / "tests/fixtures/convert"
    dump = [sys.executable, str(ROOT / "scripts/convert_goldens.py")]
    subprocess.run(dump + [str(work / "f32.gguf"), str(out / "tiny-qwen2-f32.json")], check=True, env=env)
    bin_dir = CACHE / "llama.cpp-0.3.36/build-native-noamx/bin"
    for q, name in (("Q8_0", "q8_0"), ("Q4_K_M", "q4_k")):
        subprocess.run([str(bin_dir / "llama-quantize"), str(work / "f32.gguf"), str(work / f"{name}.gguf"), q, "2"],
                       check=True, capture_output=True)
        subprocess.run(dump + [str(work / f"{name}.gguf"), str(out / f"tiny-qwen2-{name}.json")], check=True, env=env)
    shutil.rmtree(work)
    print("wrote", sorted(p.name for p in out.glob("tiny-qwen2-*.json")))


if __name__ == "__main__":
    main()
