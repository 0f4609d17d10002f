#!/usr/bin/env python3
"""Dumps a GGUF file as the JSON golden `edgevl convert`'s tests compare with (tests/fixtures/convert/).

  key_order      metadata keys in file order
  metadata       key -> {"type": ..., "value": ...}; floats as their f32/f64 bit patterns (exact);
                 arrays and strings over 256 bytes as {"len", "sha256"} of their GGUF encoding
                 (strings: u64 length + UTF-8; numbers: little-endian values)
  tensor_order   tensor names in file order
  tensors        name -> {"type", "dims" (ggml order), "sha256" of the data bytes}

Usage: convert_goldens.py FILE.gguf OUT.json      (needs numpy and the gguf package)
"""
import hashlib
import json
import struct
import sys

from gguf import GGUFReader, GGUFValueType as VT

PACK = {VT.UINT8: "<B", VT.INT8: "<b", VT.UINT16: "<H", VT.INT16: "<h", VT.UINT32: "<I", VT.INT32: "<i",
        VT.FLOAT32: "<f", VT.UINT64: "<Q", VT.INT64: "<q", VT.FLOAT64: "<d", VT.BOOL: "<?"}
NAMES = {VT.UINT8: "u8", VT.INT8: "i8", VT.UINT16: "u16", VT.INT16: "i16", VT.UINT32: "u32", VT.INT32: "i32",
         VT.FLOAT32: "f32", VT.BOOL: "bool", VT.STRING: "str", VT.UINT64: "u64", VT.INT64: "i64", VT.FLOAT64: "f64"}


def enc(t, v):
    if t == VT.STRING:
        b = v.encode("utf-8") if isinstance(v, str) else bytes(v)
        return struct.pack("<Q", len(b)) + b
    return struct.pack(PACK[t], v)


def scalar(t, v):
    if t == VT.FLOAT32:
        return struct.unpack("<I", struct.pack("<f", v))[0]
    if t == VT.FLOAT64:
        return struct.unpack("<Q", struct.pack("<d", v))[0]
    if t == VT.BOOL:
        return bool(v)
    if t == VT.STRING:
        return v if len(v.encode("utf-8")) <= 256 else {"len": len(v.encode()), "sha256": hashlib.sha256(enc(t, v)).hexdigest()}
    return int(v)


def main():
    r = GGUFReader(sys.argv[1])
    md, order = {}, []
    for k, f in r.fields.items():
        if k.startswith("GGUF."):
            continue
        order.append(k)
        t = f.types[0]
        if t == VT.ARRAY:
            et = f.types[-1]
            items = f.contents()
            h = hashlib.sha256(b"".join(enc(et, x) for x in items)).hexdigest()
            md[k] = {"type": f"array<{NAMES[et]}>", "value": {"len": len(items), "sha256": h}}
        else:
            md[k] = {"type": NAMES[t], "value": scalar(t, f.contents())}
    tensors = {}
    for t in r.tensors:
        tensors[t.name] = {"type": t.tensor_type.name, "dims": [int(d) for d in t.shape],
                           "sha256": hashlib.sha256(t.data.tobytes()).hexdigest()}
    out = {"source": sys.argv[1].rsplit("/", 1)[-1], "key_order": order, "metadata": md,
           "tensor_order": [t.name for t in r.tensors], "tensors": tensors}
    with open(sys.argv[2], "w") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
