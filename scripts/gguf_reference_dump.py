#!/usr/bin/env python3
"""Dump a GGUF file's layout with the `gguf` Python package (llama.cpp's gguf-py) as JSON.

Usage: scripts/gguf_reference_dump.py FILE.gguf > layout.json

The JSON is the independent reference the edgevl-gguf reader is tested against:
version, counts, alignment, data offset, every metadata key with its type (and scalar value,
or array length with a few sample elements), every tensor's name/type/shape/offset/size, and the
block geometry of every ggml type edgevl supports.

gguf-py is taken from the unpacked llama.cpp source in the edgevl cache when present (it matches
the ggml that llama.cpp builds; the PyPI `gguf` 0.19.0 wheel has a stale Q8_1 block size), else
from the installed `gguf` package.
"""
import json
import os
import sys
from pathlib import Path

CACHE = Path(os.environ.get("EDGEVL_CACHE", Path.home() / ".cache" / "edgevl"))
VENDORED = CACHE / "llama.cpp-0.3.36" / "src" / "gguf-py"
if VENDORED.is_dir():
    sys.path.insert(0, str(VENDORED))

import gguf  # noqa: E402
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFReader, GGUFValueType  # noqa: E402

TYPE_NAMES = {
    GGUFValueType.UINT8: "u8", GGUFValueType.INT8: "i8", GGUFValueType.UINT16: "u16",
    GGUFValueType.INT16: "i16", GGUFValueType.UINT32: "u32", GGUFValueType.INT32: "i32",
    GGUFValueType.FLOAT32: "f32", GGUFValueType.BOOL: "bool", GGUFValueType.STRING: "str",
    GGUFValueType.ARRAY: "array", GGUFValueType.UINT64: "u64", GGUFValueType.INT64: "i64",
    GGUFValueType.FLOAT64: "f64",
}
SUPPORTED = ["F32", "F16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K", "Q3_K",
             "Q4_K", "Q5_K", "Q6_K", "Q8_K", "I8", "I16", "I32", "I64", "F64", "BF16"]


def plain(x):
    """numpy scalars -> JSON numbers/bools."""
    if isinstance(x, (str, bool, int, float)):
        return x
    if hasattr(x, "item"):
        return x.item()
    return x


def kv_entry(field):
    types = field.types
    entry = {"key": field.name}
    if types[0] == GGUFValueType.ARRAY:
        entry["type"] = "array<%s>" % TYPE_NAMES[types[1]] if len(types) > 1 else "array<?>"
        values = field.contents()
        entry["len"] = len(values)
        if types[-1] != GGUFValueType.ARRAY and values:
            entry["first"] = [plain(v) for v in values[:3]]
            entry["last"] = plain(values[-1])
    else:
        entry["type"] = TYPE_NAMES[types[0]]
        entry["value"] = plain(field.contents())
    return entry


def main():
    path = sys.argv[1]
    r = GGUFReader(path)
    kvs = [kv_entry(f) for name, f in r.fields.items() if not name.startswith("GGUF.")]
    tensors = [
        {
            "name": t.name,
            "type": t.tensor_type.name,
            "type_id": int(t.tensor_type),
            "shape": [int(d) for d in t.shape],
            "offset": int(t.data_offset) - int(r.data_offset),
            "n_bytes": int(t.n_bytes),
        }
        for t in r.tensors
    ]
    geometry = {
        name: {"id": int(GGMLQuantizationType[name]),
               "block_size": GGML_QUANT_SIZES[GGMLQuantizationType[name]][0],
               "type_size": GGML_QUANT_SIZES[GGMLQuantizationType[name]][1]}
        for name in SUPPORTED
    }
    out = {
        "generator": "scripts/gguf_reference_dump.py with gguf-py from %s" % (
            "llama.cpp-0.3.36 source" if VENDORED.is_dir() else "gguf %s" % getattr(gguf, "__version__", "?")),
        "file": os.path.basename(path),
        "version": int(r.fields["GGUF.version"].contents()),
        "tensor_count": len(r.tensors),
        "kv_count": len(kvs),
        "alignment": int(r.alignment),
        "data_offset": int(r.data_offset),
        "kvs": kvs,
        "tensors": tensors,
        "ggml_types": geometry,
    }
    json.dump(out, sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
