#!/usr/bin/env bash
# Peak memory of `edgevl convert` on a checkpoint of BlueLM-V-3B's LLM shape (2.73B parameters, BF16,
# 5.5 GB in three shards; made once by scripts/make_bluelm_shaped_checkpoint.py into the cache), measured
# with GNU time after dropping the page cache. Prints the figures and checks the bound of issue 15:
# peak RSS < 1.0 GB + the largest tensor.
# Usage: scripts/measure-convert-rss.sh [SCHEME] [THREADS]     (default bluelm 2; needs root for drop_caches)
set -euo pipefail
cd "$(dirname "$0")/.."
SCHEME="${1:-bluelm}"
THREADS="${2:-2}"
CACHE="${EDGEVL_CACHE:-$HOME/.cache/edgevl}"
CKPT="${CKPT:-$CACHE/bluelm-shaped-2.7B}"
PY="${PY:-python3}"
if [ ! -f "$CKPT/config.json" ]; then
  HF=$(scripts/make-smollm2-hf.sh)
  "$CACHE/venv-hf/bin/python" scripts/make_bluelm_shaped_checkpoint.py "$HF" "$CKPT" >&2
fi
cargo build --release -p edgevl-cli >&2
BIN="${CARGO_TARGET_DIR:-target}/release/edgevl"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
OUT="$W/bluelm-shaped.gguf"
sync
if echo 3 > /proc/sys/vm/drop_caches 2>/dev/null; then dropped=yes; else dropped="no (not permitted)"; fi
/usr/bin/time -v "$BIN" convert "$CKPT" -o "$OUT" --scheme "$SCHEME" -t "$THREADS" 2> "$OUT.time"
rss_kb=$(grep "Maximum resident set size" "$OUT.time" | awk '{print $NF}')
wall=$(grep "Elapsed (wall clock)" "$OUT.time" | awk '{print $NF}')
largest=$(python3 - "$CKPT/model.safetensors.index.json" "$CKPT" <<'PY'
import json, sys, struct, os
idx = json.load(open(sys.argv[1]))
best = 0
for f in sorted(set(idx["weight_map"].values())):
    with open(os.path.join(sys.argv[2], f), "rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        h = json.loads(fh.read(n))
    for k, v in h.items():
        if k != "__metadata__":
            best = max(best, v["data_offsets"][1] - v["data_offsets"][0])
print(best)
PY
)
size=$(stat -c %s "$OUT")
echo "scheme $SCHEME, $THREADS threads, page cache dropped: $dropped"
echo "checkpoint: $(du -sb "$CKPT" | cut -f1) bytes; largest tensor: $largest bytes; output: $size bytes"
echo "peak RSS: $((rss_kb / 1024)) MiB; wall: $wall"
bound_kb=$(( (1000000000 + largest) / 1024 ))
if [ "$rss_kb" -lt "$bound_kb" ]; then echo "OK: under 1.0 GB + largest tensor ($((bound_kb / 1024)) MiB)"; else echo "OVER the bound ($((bound_kb / 1024)) MiB)"; exit 1; fi
