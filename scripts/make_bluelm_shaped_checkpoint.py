#!/usr/bin/env python3
"""Writes a random Hugging Face checkpoint with BlueLM-V-3B's LLM shape (spec section 1: LLaMA decoder,
d=2560, 28 layers, 20 heads, 20 KV heads, FFN 6912, vocab 100000, untied output: 2.73B parameters) in
BF16 safetensors shards of about 2 GB, plus SmolLM2's tokenizer files (ids past its 49152 tokens
become [PADn] tokens). For measuring `edgevl convert`'s peak memory on a model of the paper's size.

Usage: make_bluelm_shaped_checkpoint.py TOKENIZER_DIR OUT_DIR     (needs numpy only)
"""
import json
import os
import shutil
import sys

import numpy as np

D, LAYERS, HEADS, FFN, VOCAB = 2560, 28, 20, 6912, 100000
SHARD_BYTES = 2_000_000_000


def shapes():
    yield "model.embed_tokens.weight", (VOCAB, D)
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        yield p + "input_layernorm.weight", (D,)
        for n in ("q", "k", "v", "o"):
            yield p + f"self_attn.{n}_proj.weight", (D, D)
        yield p + "post_attention_layernorm.weight", (D,)
        yield p + "mlp.gate_proj.weight", (FFN, D)
        yield p + "mlp.up_proj.weight", (FFN, D)
        yield p + "mlp.down_proj.weight", (D, FFN)
    yield "model.norm.weight", (D,)
    yield "lm_head.weight", (VOCAB, D)


def random_bf16(rng, shape):
    """Random bf16 bit patterns of magnitude 2^-8 .. 2^-4 with random signs (fast: no float maths)."""
    n = int(np.prod(shape))
    bits = rng.integers(0, 1 << 16, size=n, dtype=np.uint16)
    exp = (bits % 5).astype(np.uint16) + np.uint16(119)  # exponents 119..123
    return ((bits & np.uint16(0x807F)) | (exp << np.uint16(7))).astype("<u2")


def main():
    tok_dir, out = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(2411_10640)
    tmp = out + f".tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    plan, cur, size = [[]], 0, 0
    for name, shape in shapes():
        n = int(np.prod(shape)) * 2
        if size + n > SHARD_BYTES and plan[cur]:
            plan.append([])
            cur, size = cur + 1, 0
        plan[cur].append((name, shape))
        size += n
    weight_map, total = {}, 0
    for k, part in enumerate(plan):
        fname = f"model-{k + 1:05d}-of-{len(plan):05d}.safetensors"
        header, off = {"__metadata__": {"format": "pt"}}, 0
        for name, shape in part:
            n = int(np.prod(shape)) * 2
            header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + n]}
            off += n
            weight_map[name] = fname
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        with open(os.path.join(tmp, fname), "wb") as f:
            f.write(len(raw).to_bytes(8, "little") + raw)
            for name, shape in part:
                if len(shape) == 1:
                    f.write(np.full(shape, 0x3F80, dtype="<u2").tobytes())  # norms: 1.0
                else:
                    f.write(random_bf16(rng, shape).tobytes())
        total += off
        print(fname, off, file=sys.stderr)
    with open(os.path.join(tmp, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=1)
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": D, "intermediate_size": FFN,
        "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "num_key_value_heads": HEADS,
        "max_position_embeddings": 4096, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "vocab_size": VOCAB,
        "tie_word_embeddings": False, "torch_dtype": "bfloat16", "bos_token_id": 1, "eos_token_id": 2,
    }
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(tok_dir, name), os.path.join(tmp, name))
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)
    print(out)


if __name__ == "__main__":
    main()
