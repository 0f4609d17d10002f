#!/usr/bin/env python3
"""Writes the quantisation fixtures of crates/edgevl-kernels/tests/quant_fixtures.rs into tests/fixtures/quant/.

The reference is the `gguf` Python package (pip install gguf numpy), independent of our Rust code:
  <type>.blocks  random blocks (raw bytes; scale fields set to finite f16 values)
  <type>.deq     gguf.quants.dequantize of those blocks, f32 little-endian
  quant_input.f32            random f32 rows (several scales, a zero block, tie-heavy blocks)
  <type>.quant   gguf.quants.quantize of quant_input.f32 (types the package can quantise)
Run: python3 scripts/gen_quant_fixtures.py   (deterministic: fixed seed)
"""
import pathlib
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "quant"
rng = np.random.default_rng(20261125)

# name -> (type, bytes per block, offsets of f16 scale fields)
BLOCK_TYPES = {
    "q8_0": (T.Q8_0, 34, [0]),
    "q4_0": (T.Q4_0, 18, [0]),
    "q4_1": (T.Q4_1, 20, [0, 2]),
    "q4_k": (T.Q4_K, 144, [0, 2]),
    "q6_k": (T.Q6_K, 210, [208]),
}
N_BLOCKS = 8


def random_blocks(block_bytes, scale_offsets, gen=None):
    gen = gen or rng
    raw = gen.integers(0, 256, size=(N_BLOCKS, block_bytes), dtype=np.uint8)
    for off in scale_offsets:
        scales = (gen.standard_normal(N_BLOCKS) * 10.0 ** gen.uniform(-4, 0, N_BLOCKS)).astype(np.float16)
        raw[:, off:off + 2] = scales.view(np.uint8).reshape(N_BLOCKS, 2)
    return raw


def float_values(n):
    v = rng.standard_normal(n) * 10.0 ** rng.uniform(-6, 3, n)
    v[:8] = [0.0, -0.0, 1e-7, -6.0e-8, 65504.0, -65504.0, 3.0e-5, 1.0]
    return v.astype(np.float32)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (qtype, block_bytes, scale_offsets) in BLOCK_TYPES.items():
        raw = random_blocks(block_bytes, scale_offsets)
        deq = quants.dequantize(raw.reshape(-1), qtype).astype("<f4")
        (OUT / f"{name}.blocks").write_bytes(raw.tobytes())
        (OUT / f"{name}.deq").write_bytes(deq.tobytes())

    f16_vals = float_values(256).astype(np.float16)
    (OUT / "f16.blocks").write_bytes(f16_vals.astype("<f2").tobytes())
    (OUT / "f16.deq").write_bytes(quants.dequantize(f16_vals.view(np.uint8), T.F16).astype("<f4").tobytes())
    bf16_bits = rng.integers(0, 1 << 16, size=256, dtype=np.uint16)
    bf16_bits[(bf16_bits & 0x7F80) == 0x7F80] &= 0xBFFF  # keep values finite (no inf/NaN exponents)
    (OUT / "bf16.blocks").write_bytes(bf16_bits.astype("<u2").tobytes())
    (OUT / "bf16.deq").write_bytes(quants.dequantize(bf16_bits.view(np.uint8), T.BF16).astype("<f4").tobytes())

    # Quantiser inputs: 8 rows of 256 with different scales, a zero block and blocks full of rounding ties.
    x = (rng.standard_normal((8, 256)) * 10.0 ** rng.uniform(-3, 2, (8, 1))).astype(np.float32)
    x[1, :32] = 0.0
    x[2, :32] = np.arange(-16, 16, dtype=np.float32) * 0.5  # ties for Q8_0/Q4_0 rounding
    x[3, :32] = np.float32(1.25)  # constant block
    x[4, 32:64] = np.linspace(-1, 1, 32, dtype=np.float32) ** 3
    x = x.reshape(-1)
    (OUT / "quant_input.f32").write_bytes(x.astype("<f4").tobytes())
    for name, qtype in [("q8_0", T.Q8_0), ("q4_0", T.Q4_0), ("q4_1", T.Q4_1), ("q5_0", T.Q5_0), ("q4_k", T.Q4_K), ("q6_k", T.Q6_K)]:
        try:
            q = quants.quantize(x.reshape(8, 256), qtype)
        except NotImplementedError:
            print(f"gguf {name}: no quantiser in this package version, skipped", file=sys.stderr)
            continue
        (OUT / f"{name}.quant").write_bytes(np.asarray(q, dtype=np.uint8).tobytes())
    # Q5_0 blocks come last, from their own generator, so the fixtures above keep their bytes.
    raw = random_blocks(22, [0], np.random.default_rng(20261203))
    (OUT / "q5_0.blocks").write_bytes(raw.tobytes())
    (OUT / "q5_0.deq").write_bytes(quants.dequantize(raw.reshape(-1), T.Q5_0).astype("<f4").tobytes())
    print(f"wrote {sorted(p.name for p in OUT.iterdir())}")


if __name__ == "__main__":
    main()
