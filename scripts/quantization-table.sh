#!/usr/bin/env bash
# The figures of docs/quantization.md: for each `edgevl convert` scheme on SmolLM2-135M-Instruct, the file
# size and the perplexity (devils-dictionary.txt, -c 512) with an f16 and a q8_0 KV cache, by edgevl and by
# llama-perplexity on the same file, and each run's peak RSS (GNU time). Prints a markdown table.
# Usage: scripts/quantization-table.sh      (~20 minutes on a quiet 2-core machine; needs scripts/build-llamacpp.sh's build)
#   SCHEMES="q4_0;bluelm" KVS="f16" LLAMA=0 scripts/quantization-table.sh   measures a subset (LLAMA=0: edgevl only)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(scripts/build-llamacpp.sh llama-perplexity)
HF=$(scripts/make-smollm2-hf.sh)
TEXT=tests/fixtures/text/devils-dictionary.txt
cargo build --release -p edgevl-cli >&2
EDGEVL="${CARGO_TARGET_DIR:-target}/release/edgevl"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
rss() { grep "Maximum resident set size" "$1" | awk '{printf "%d", $NF / 1024}' || true; }
echo "| scheme | file MiB | KV | edgevl PPL | edgevl peak RSS MiB | llama.cpp PPL | llama.cpp peak RSS MiB |"
echo "|---|---|---|---|---|---|---|"
IFS=';' read -r -a schemes <<< "${SCHEMES:-f32;f16;q8_0;q4_0;q4_1;q4_k;q4_0 --pure;bluelm;bluelm --llm-type q4_k}"
for s in "${schemes[@]}"; do
  f="$W/m.gguf"
  # shellcheck disable=SC2086
  "$EDGEVL" convert "$HF" -o "$f" --scheme $s -t 2 2>/dev/null
  mib=$(python3 -c "print(f'{$(stat -c %s "$f") / 1048576:.1f}')")
  for kv in ${KVS:-f16 q8_0}; do
    /usr/bin/time -v "$EDGEVL" perplexity -m "$f" -f "$TEXT" -c 512 -t 2 --cache-type $kv --json >"$W/e.json" 2>"$W/e.time"
    e=$(python3 -c "import json; print(f'{json.load(open(\"$W/e.json\"))[\"ppl\"]:.4f}')")
    fa=""; [ $kv = q8_0 ] && fa="-fa on"
    l=""; : >"$W/l.txt"
    if [ "${LLAMA:-1}" = 1 ]; then
      # shellcheck disable=SC2086
      /usr/bin/time -v "$BIN/llama-perplexity" -m "$f" -f "$TEXT" -c 512 -t 2 -ctk $kv -ctv $kv $fa >"$W/l.txt" 2>&1 || true
      l=$(grep -o "Final estimate: PPL = [0-9.]*" "$W/l.txt" | awk '{print $NF}')
    fi
    echo "| \`$s\` | $mib | $kv | $e | $(rss "$W/e.time") | ${l:-n/a} | $(rss "$W/l.txt") |"
  done
  rm -f "$f"
done
