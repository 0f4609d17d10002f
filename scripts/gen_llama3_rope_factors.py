#!/usr/bin/env python3
"""Reference factors of Llama 3.1's RoPE scaling (tests/fixtures/convert/llama3_rope_factors.json).

Runs llama.cpp's own `LlamaModel.generate_extra_tensors` (conversion/llama.py of the llama-cpp-python
0.3.36 sdist that scripts/build-llamacpp.sh unpacks) on torch for six configurations: Llama 3.1 8B,
Llama 3.2 1B and 3B, the tiny checkpoint of crates/edgevl-convert/tests/bad_checkpoints.rs, a config
leaving every scaling field to its default, and odd values. `rope_parameters` is made as the
converter's `TextModel.__init__` makes it (rope_scaling plus rope_theta). Each factor is stored as
its float32 bits.

Usage: /path/to/venv-with-torch/bin/python scripts/gen_llama3_rope_factors.py
"""
import json
import os
import pathlib
import struct
import sys
import types

CACHE = pathlib.Path(os.environ.get("EDGEVL_CACHE", pathlib.Path.home() / ".cache/edgevl"))
SRC = CACHE / "llama.cpp-0.3.36/src"
sys.path.insert(0, str(SRC))
sys.path.insert(0, str(SRC / "gguf-py"))
from conversion.llama import LlamaModel  # noqa: E402

LLAMA3 = {"low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192, "rope_type": "llama3"}
CASES = [
    {"hidden_size": 4096, "num_attention_heads": 32, "rope_theta": 500000.0, "rope_scaling": {"factor": 8.0, **LLAMA3}},
    {"hidden_size": 2048, "num_attention_heads": 32, "head_dim": 64, "rope_theta": 500000.0,
     "rope_scaling": {"factor": 32.0, **LLAMA3}},
    {"hidden_size": 3072, "num_attention_heads": 24, "rope_theta": 500000.0, "rope_scaling": {"factor": 32.0, **LLAMA3}},
    {"hidden_size": 64, "num_attention_heads": 4, "rope_theta": 10000.0,
     "rope_scaling": {"factor": 8.0, **LLAMA3, "original_max_position_embeddings": 64}},
    {"hidden_size": 576, "num_attention_heads": 9, "rope_theta": 100000.0, "rope_scaling": {"factor": 4.0, "rope_type": "llama3"}},
    {"hidden_size": 960, "num_attention_heads": 15, "rope_theta": 12345.5,
     "rope_scaling": {"factor": 3.3, "low_freq_factor": 1.5, "high_freq_factor": 6.0,
                      "original_max_position_embeddings": 4000, "rope_type": "llama3"}},
]


def main() -> None:
    out = []
    for hp in CASES:
        params = dict(hp["rope_scaling"], rope_theta=hp["rope_theta"])
        model = types.SimpleNamespace(hparams=hp, rope_parameters=params, format_tensor_name=lambda _: "rope_freqs.weight")
        ((name, t),) = list(LlamaModel.generate_extra_tensors(model))
        bits = [struct.unpack("<I", struct.pack("<f", float(v)))[0] for v in t.numpy()]
        out.append({"config": hp, "tensor": name, "bits": bits})
    doc = {"producer": "llama.cpp's LlamaModel.generate_extra_tensors (llama-cpp-python 0.3.36 sdist, conversion/llama.py) "
           "on torch, float32; scripts/gen_llama3_rope_factors.py", "cases": out}
    path = pathlib.Path(__file__).resolve().parent.parent / "tests/fixtures/convert/llama3_rope_factors.json"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
