#!/usr/bin/env bash
# llama.cpp reads edgevl's files: llama-perplexity on SmolLM2-135M-Instruct converted by `edgevl convert
# --scheme q4_0` must be within 0.1% of llama.cpp's own Q4_0 (convert_hf_to_gguf.py --outtype f32, then
# llama-quantize Q4_0). Not run in CI (needs llama.cpp's build and a torch venv for its converter).
# Usage: scripts/convert-perplexity.sh [SCHEME:LLAMA_QUANTIZE_TYPE ...]   (default q4_0:Q4_0)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-/root/venv-ref/bin/python}"
CACHE="${EDGEVL_CACHE:-$HOME/.cache/edgevl}"
SRC="$CACHE/llama.cpp-0.3.36/src"
BIN=$(scripts/build-llamacpp.sh llama-quantize llama-perplexity)
HF=$(scripts/make-smollm2-hf.sh)
TEXT=tests/fixtures/text/devils-dictionary.txt
cargo build --release -p edgevl-cli >&2
EDGEVL="${CARGO_TARGET_DIR:-target}/release/edgevl"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
PYTHONPATH="$SRC/gguf-py" "$PY" "$SRC/convert_hf_to_gguf.py" "$HF" --outtype f32 --outfile "$W/f32.gguf" >"$W/conv.log" 2>&1
ppl() { "$BIN/llama-perplexity" -m "$1" -f "$TEXT" -c 512 -t 2 2>&1 | grep -o "Final estimate: PPL = [0-9.]*" | awk '{print $NF}'; }
status=0
for pair in "${@:-q4_0:Q4_0}"; do
  scheme=${pair%%:*}; qtype=${pair#*:}
  "$BIN/llama-quantize" "$W/f32.gguf" "$W/ref-$scheme.gguf" "$qtype" 2 >"$W/q.log" 2>&1
  "$EDGEVL" convert "$HF" -o "$W/edgevl-$scheme.gguf" --scheme "$scheme" -t 2 2>/dev/null
  a=$(ppl "$W/ref-$scheme.gguf"); b=$(ppl "$W/edgevl-$scheme.gguf")
  rel=$(python3 -c "print(f'{abs($b - $a) / $a * 100:.4f}')")
  echo "$scheme: llama.cpp's file PPL $a, edgevl's file PPL $b (llama-perplexity -c 512), difference $rel%"
  python3 -c "import sys; sys.exit(0 if $rel <= 0.1 else 1)" || { echo "  OVER 0.1%"; status=1; }
  rm -f "$W/ref-$scheme.gguf" "$W/edgevl-$scheme.gguf"
done
exit $status
