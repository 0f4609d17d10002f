#!/usr/bin/env bash
# Build the Hugging Face directory of SmolLM2-135M-Instruct (F32 safetensors in two shards, tokenizer
# files) from its GGUF, into the edgevl cache, once. Needs no torch: a venv in the cache gets numpy
# and gguf from PyPI, and scripts/smollm2_hf_from_gguf.py does the work.
# Usage: scripts/make-smollm2-hf.sh        -> prints the directory on stdout
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${EDGEVL_CACHE:-$HOME/.cache/edgevl}"
# The directory's name is part of the test: llama.cpp's converter derives general.name from it.
DEST="$CACHE/smollm2-hf-v1/SmolLM2-135M-Instruct"
if [ -f "$DEST/config.json" ]; then echo "$DEST"; exit 0; fi
GGUF=$(scripts/fetch-smollm2.sh)
VENV="$CACHE/venv-hf"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import numpy, gguf" 2>/dev/null; then
  echo "make-smollm2-hf: installing numpy and gguf into $VENV" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV" >&2
  "$VENV/bin/python" -m pip install --quiet "numpy>=1.26,<3" "gguf==0.17.1" >&2
fi
mkdir -p "$(dirname "$DEST")"
"$VENV/bin/python" scripts/smollm2_hf_from_gguf.py "$GGUF" "$DEST" >&2
echo "$DEST"
