#!/usr/bin/env bash
# Goldens of `edgevl convert` (tests/fixtures/convert/): SmolLM2-135M-Instruct's Hugging Face directory
# (scripts/make-smollm2-hf.sh) converted by llama.cpp's convert_hf_to_gguf.py (f32, f16, bf16), and the
# F32 file quantised by llama-quantize (Q8_0, Q4_0, Q4_1, Q4_K_M), each dumped by scripts/convert_goldens.py.
# Needs: scripts/build-llamacpp.sh's build, and a python with torch + transformers (PY, default
# /root/venv-ref/bin/python) for the converter. ~3 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-/root/venv-ref/bin/python}"
CACHE="${EDGEVL_CACHE:-$HOME/.cache/edgevl}"
SRC="$CACHE/llama.cpp-0.3.36/src"
BIN=$(scripts/build-llamacpp.sh llama-quantize)
HF=$(scripts/make-smollm2-hf.sh)
OUT=tests/fixtures/convert
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"
for t in f32 f16 bf16; do
  PYTHONPATH="$SRC/gguf-py" "$PY" "$SRC/convert_hf_to_gguf.py" "$HF" --outtype $t --outfile "$WORK/$t.gguf" >"$WORK/$t.log" 2>&1
  PYTHONPATH="$SRC/gguf-py" "$PY" scripts/convert_goldens.py "$WORK/$t.gguf" "$OUT/smollm2-$t.json"
  [ $t = f32 ] || rm "$WORK/$t.gguf"
done
for q in Q8_0:q8_0 Q4_0:q4_0 Q4_1:q4_1 Q4_K_M:q4_k; do
  "$BIN/llama-quantize" "$WORK/f32.gguf" "$WORK/${q#*:}.gguf" "${q%%:*}" 2 >"$WORK/${q#*:}.log" 2>&1
  PYTHONPATH="$SRC/gguf-py" "$PY" scripts/convert_goldens.py "$WORK/${q#*:}.gguf" "$OUT/smollm2-${q#*:}.json"
  rm "$WORK/${q#*:}.gguf"
done
ls -la "$OUT"
