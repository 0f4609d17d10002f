#!/usr/bin/env bash
# The figures of docs/quantization.md: for each `edgevl convert` scheme on SmolLM2-135M-Instruct, the file
# size and the perplexity (devils-dictionary.txt, -c 512) with an f16 and a q8_0 KV cache, by edgevl and by
# llama-perplexity on the same file, each run's peak RSS (GNU time), and decode speed (tg128, median of R=5
# runs: `edgevl bench` and llama-bench, -t 2; llama.cpp's faster of -fa 0/1 with the f16 cache, -fa 1 with
# q8_0, which needs it). Prints a markdown table.
# Usage: scripts/quantization-table.sh      (~30 minutes on a quiet 2-core machine; builds llama.cpp if needed)
#   SCHEMES="q4_0;bluelm" KVS="f16" LLAMA=0 scripts/quantization-table.sh   measures a subset (LLAMA=0: edgevl only)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(scripts/build-llamacpp.sh llama-perplexity llama-bench | tail -n 1)
R=${R:-5}
HF=$(scripts/make-smollm2-hf.sh)
TEXT=tests/fixtures/text/devils-dictionary.txt
cargo build --release -p edgevl-cli >&2
EDGEVL="${CARGO_TARGET_DIR:-target}/release/edgevl"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
rss() { grep "Maximum resident set size" "$1" | awk '{printf "%d", $NF / 1024}' || true; }
# Median tg tok/s of a JSON file: edgevl bench's, or llama-bench's (the fastest setting's median of samples).
tg() {
  python3 - "$1" <<'PY'
import json, statistics, sys
j = json.load(open(sys.argv[1]))
if isinstance(j, dict):
    print(f"{j['tg_tok_s']['median']:.1f}")
else:
    print(f"{max(statistics.median(t['samples_ts']) for t in j if t['n_gen'] > 0):.1f}")
PY
}
echo "| scheme | file MiB | KV | edgevl PPL | llama.cpp PPL | edgevl tg128 tok/s | llama.cpp tg128 tok/s | edgevl peak RSS MiB | llama.cpp peak RSS MiB |"
echo "|---|---|---|---|---|---|---|---|---|"
IFS=';' read -r -a schemes <<< "${SCHEMES:-f32;f16;q8_0;q4_0;q4_1;q4_k;q4_0 --pure;bluelm;bluelm --llm-type q4_k}"
for s in "${schemes[@]}"; do
  f="$W/m.gguf"
  # shellcheck disable=SC2086
  "$EDGEVL" convert "$HF" -o "$f" --scheme $s -t 2 2>/dev/null
  mib=$(python3 -c "print(f'{$(stat -c %s "$f") / 1048576:.1f}')")
  for kv in ${KVS:-f16 q8_0}; do
    /usr/bin/time -v "$EDGEVL" perplexity -m "$f" -f "$TEXT" -c 512 -t 2 --cache-type $kv --json >"$W/e.json" 2>"$W/e.time"
    e=$(python3 -c "import json; print(f'{json.load(open(\"$W/e.json\"))[\"ppl\"]:.4f}')")
    "$EDGEVL" bench -m "$f" -p 0 -n 128 -r "$R" -t 2 --cache-type $kv --json --no-bandwidth >"$W/eb.json" 2>/dev/null
    etg=$(tg "$W/eb.json")
    fa=""; [ $kv = q8_0 ] && fa="-fa on"
    fab="0,1"; [ $kv = q8_0 ] && fab="1"
    l=""; ltg=""; : >"$W/l.txt"
    if [ "${LLAMA:-1}" = 1 ]; then
      # shellcheck disable=SC2086
      /usr/bin/time -v "$BIN/llama-perplexity" -m "$f" -f "$TEXT" -c 512 -t 2 -ctk $kv -ctv $kv $fa >"$W/l.txt" 2>&1 || true
      l=$(grep -o "Final estimate: PPL = [0-9.]*" "$W/l.txt" | awk '{print $NF}')
      "$BIN/llama-bench" -m "$f" -p 0 -n 128 -r "$R" -t 2 -ctk $kv -ctv $kv -fa $fab -o json >"$W/lb.json" 2>/dev/null \
        && ltg=$(tg "$W/lb.json")
    fi
    echo "| \`$s\` | $mib | $kv | $e | ${l:-n/a} | $etg | ${ltg:-n/a} | $(rss "$W/e.time") | $(rss "$W/l.txt") |"
  done
  rm -f "$f"
done
