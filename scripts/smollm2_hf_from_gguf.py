#!/usr/bin/env python3
"""Turns SmolLM2-135M-Instruct's GGUF (from scripts/fetch-smollm2.sh) into a Hugging Face directory.

No torch: numpy + the `gguf` package dequantise every tensor to F32 and undo llama.cpp's Q/K row
permutation (convert_hf_to_gguf.py's `LlamaModel.permute`), so `convert_hf_to_gguf.py` (and
`edgevl convert`) read it as they read a checkpoint from the hub. Written:

  config.json                      LlamaForCausalLM, the GGUF's hyper-parameters, tied embeddings
  generation_config.json           bos/eos/pad ids
  model-0000{1,2}-of-00002.safetensors + model.safetensors.index.json   F32, two shards
  tokenizer.json                   byte-level BPE: the GGUF's vocabulary and merges, SmolLM's
                                   pre-tokenizer (digits split one by one, then GPT-2's byte level)
  tokenizer_config.json            special tokens and the GGUF's chat template

Usage: smollm2_hf_from_gguf.py SMOLLM2.gguf OUT_DIR
The directory is built in OUT_DIR.tmp-<pid> and renamed to OUT_DIR at the end.
"""
import json
import os
import shutil
import sys

import numpy as np
from gguf import GGUFReader
from gguf import quants

N_SHARDS = 2


def field(reader, key):
    f = reader.fields[key]
    return f.contents()


def unpermute(w, n_head):
    """Inverse of convert_hf_to_gguf.py's LlamaModel.permute (rows of Q or K)."""
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_safetensors(path, tensors):
    """safetensors layout: u64 header length, JSON header (padded with spaces to 8 bytes), data."""
    header = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, arr in tensors:
        n = arr.nbytes
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for _, arr in tensors:
            f.write(np.ascontiguousarray(arr, dtype="<f4").tobytes())
    return offset


def main():
    src, out = sys.argv[1], sys.argv[2]
    r = GGUFReader(src)
    n_layer = int(field(r, "llama.block_count"))
    n_head = int(field(r, "llama.attention.head_count"))
    n_head_kv = int(field(r, "llama.attention.head_count_kv"))
    n_embd = int(field(r, "llama.embedding_length"))
    gg = {t.name: t for t in r.tensors}

    def get(name):
        t = gg[name]
        a = quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        return a.reshape([int(d) for d in reversed(t.shape)])

    hf = [("model.embed_tokens.weight", get("token_embd.weight"))]
    block = {
        "input_layernorm.weight": "attn_norm.weight",
        "self_attn.q_proj.weight": "attn_q.weight",
        "self_attn.k_proj.weight": "attn_k.weight",
        "self_attn.v_proj.weight": "attn_v.weight",
        "self_attn.o_proj.weight": "attn_output.weight",
        "post_attention_layernorm.weight": "ffn_norm.weight",
        "mlp.gate_proj.weight": "ffn_gate.weight",
        "mlp.up_proj.weight": "ffn_up.weight",
        "mlp.down_proj.weight": "ffn_down.weight",
    }
    for i in range(n_layer):
        for hf_name, gg_name in block.items():
            w = get(f"blk.{i}.{gg_name}")
            if gg_name == "attn_q.weight":
                w = unpermute(w, n_head)
            elif gg_name == "attn_k.weight":
                w = unpermute(w, n_head_kv)
            hf.append((f"model.layers.{i}.{hf_name}", w))
    hf.append(("model.norm.weight", get("output_norm.weight")))
    assert "output.weight" not in gg, "SmolLM2 ties its output to the token embedding"

    tmp = f"{out}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)

    # Shards: split the list in two halves by bytes.
    total = sum(a.nbytes for _, a in hf)
    shards, cur, acc = [[]], 0, 0
    for name, a in hf:
        if acc >= total / N_SHARDS * (cur + 1) and cur + 1 < N_SHARDS:
            shards.append([])
            cur += 1
        shards[cur].append((name, a))
        acc += a.nbytes
    weight_map = {}
    for k, part in enumerate(shards):
        fname = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        write_safetensors(os.path.join(tmp, fname), part)
        for name, _ in part:
            weight_map[name] = fname
    with open(os.path.join(tmp, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)

    tokens = [str(t) for t in field(r, "tokenizer.ggml.tokens")]
    types = [int(t) for t in field(r, "tokenizer.ggml.token_type")]
    merges = [str(m) for m in field(r, "tokenizer.ggml.merges")]
    bos = int(field(r, "tokenizer.ggml.bos_token_id"))
    eos = int(field(r, "tokenizer.ggml.eos_token_id"))
    unk = int(field(r, "tokenizer.ggml.unknown_token_id"))
    pad = int(field(r, "tokenizer.ggml.padding_token_id"))
    template = str(field(r, "tokenizer.chat_template"))
    rope_theta = float(field(r, "llama.rope.freq_base"))
    eps = float(np.float32(field(r, "llama.attention.layer_norm_rms_epsilon")))

    config = {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "hidden_act": "silu",
        "hidden_size": n_embd,
        "initializer_range": 0.041666666666666664,
        "intermediate_size": int(field(r, "llama.feed_forward_length")),
        "max_position_embeddings": int(field(r, "llama.context_length")),
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": n_head,
        "num_hidden_layers": n_layer,
        "num_key_value_heads": n_head_kv,
        "pad_token_id": pad,
        "pretraining_tp": 1,
        "rms_norm_eps": round(eps, 12),
        "rope_scaling": None,
        "rope_theta": rope_theta,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "transformers_version": "4.42.3",
        "use_cache": True,
        "vocab_size": int(field(r, "llama.vocab_size")),
    }
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(tmp, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": bos, "eos_token_id": eos, "pad_token_id": pad}, f, indent=2)

    # llama.cpp token type 3 = CONTROL: the added special tokens.
    added = [
        {"id": i, "content": tokens[i], "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True}
        for i, t in enumerate(types) if t == 3
    ]
    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        ]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
            "vocab": {t: i for i, t in enumerate(tokens)},
            "merges": merges,
        },
    }
    with open(os.path.join(tmp, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer, f, ensure_ascii=False)
    tok_config = {
        "add_prefix_space": False,
        "added_tokens_decoder": {str(a["id"]): {k: v for k, v in a.items() if k != "id"} for a in added},
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "bos_token": tokens[bos],
        "chat_template": template,
        "clean_up_tokenization_spaces": False,
        "eos_token": tokens[eos],
        "model_max_length": 8192,
        "pad_token": tokens[pad],
        "tokenizer_class": "GPT2Tokenizer",
        "unk_token": tokens[unk],
        "vocab_size": len(tokens),
    }
    with open(os.path.join(tmp, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tok_config, f, indent=2, ensure_ascii=False)

    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)
    print(out)


if __name__ == "__main__":
    main()
