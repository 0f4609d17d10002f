#!/usr/bin/env bash
# The paper's Table 5 row for the 768x1536 image (load, image processing, prefill, decode, time to
# first token with the image encoded ahead and on demand), this checkout beside an earlier commit
# (BASE, default d085959: the build issue 16 was filed against), both built and run in one go on the
# same random files, threads and machine. Prints a markdown table on stdout, progress on stderr.
#
#   scripts/bench-e2e-vs-base.sh              # BASE=d085959 R=1 T=2 INT8=1
#   BASE=<commit> R=3 scripts/bench-e2e-vs-base.sh
#   INT8=0 scripts/bench-e2e-vs-base.sh       # without the third row (this checkout with --vit-int8)
#   KVQ8=0 scripts/bench-e2e-vs-base.sh       # without the fourth (this checkout with a q8_0 KV cache,
#                                             # the paper's INT8 cache)
#
# Each run is `edgevl bench -m <2.7B Q4_0> --mmproj <so400m Q8_0> --image <768x1536> -n 32 -t T
# -c 4096 --vit-batch 4 --chunk 128 --typing-s 5 --json` (f16 KV cache; the q8_0 row adds --cache-type q8_0); the table gives medians of R.
# The base is built from a git worktree in the cache (kept for the next run).
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${BASE:-d085959} R=${R:-1} T=${T:-2} INT8=${INT8:-1} KVQ8=${KVQ8:-1}
CACHE="${EDGEVL_CACHE:-$HOME/.cache/edgevl}"
log() { echo "bench-e2e: $*" >&2; }

base_sha=$(git rev-parse --verify "$BASE^{commit}")
head_sha=$(git rev-parse HEAD)
WT="$CACHE/e2e-base/$base_sha"
if [ ! -d "$WT" ]; then
  log "checking out $BASE into $WT"
  mkdir -p "$CACHE/e2e-base"
  git worktree add --detach "$WT" "$base_sha" >&2
fi
log "building the base ($BASE, release)"
(cd "$WT" && CARGO_TARGET_DIR="$CACHE/e2e-base/target" cargo build --release -q -p edgevl-cli >&2)
BASE_BIN="$CACHE/e2e-base/target/release/edgevl"
log "building this checkout (release)"
cargo build --release -q -p edgevl-cli >&2
HEAD_BIN="${CARGO_TARGET_DIR:-target}/release/edgevl"

mkdir -p "$CACHE/random"
BLUE="$CACHE/random/bluelm-v-3b-imgtok.q4_0.seed1.gguf"
SO400M="$CACHE/random/siglip-so400m.q8_0.seed1.gguf"
[ -f "$BLUE" ] || "$HEAD_BIN" gen-random --preset bluelm-v-3b --type q4_0 --image-tokens --seed 1 -o "$BLUE"
[ -f "$SO400M" ] || "$HEAD_BIN" gen-random --preset siglip-so400m --type q8_0 --seed 1 -o "$SO400M"

OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
IMG="$OUT/e2e-768x1536.png"
python3 - "$IMG" <<'PY'
import struct, sys, zlib
w, h = 768, 1536
rows = b"".join(b"\x00" + bytes(v for x in range(w) for v in ((x * 255) // w, (y * 255) // h, (x * y) % 251)) for y in range(h))
chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
open(sys.argv[1], "wb").write(png + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))
PY

builds=(base head); [ "$INT8" = 1 ] && builds+=(int8); [ "$KVQ8" = 1 ] && builds+=(kvq8)
for i in $(seq 1 "$R"); do
  for which in "${builds[@]}"; do
    bin=$HEAD_BIN; extra=()
    [ "$which" = base ] && bin=$BASE_BIN
    [ "$which" = int8 ] && extra=(--vit-int8)
    [ "$which" = kvq8 ] && extra=(--cache-type q8_0)
    log "$which: run $i/$R"
    "$bin" bench -m "$BLUE" --mmproj "$SO400M" --image "$IMG" -n 32 -t "$T" -c 4096 --vit-batch 4 \
      --chunk 128 --typing-s 5 "${extra[@]}" --json >"$OUT/$which.$i.json"
  done
done

python3 - "$OUT" "$R" "$BASE" "$base_sha" "$head_sha" "$T" <<'PY'
import json, statistics, sys
out, reps, base, base_sha, head_sha, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
def runs(which):
    return [json.load(open(f"{out}/{which}.{i}.json")) for i in range(1, reps + 1)]
def row(rs):
    med = lambda f: statistics.median(f(r) for r in rs)
    ttft = lambda ahead: med(lambda r: next(t["ttft_ms"] for t in r["ttft"] if t["encode_ahead"] == ahead)) / 1e3
    turn = lambda k: med(lambda r: r["turn"][k])
    return {
        "load": med(lambda r: r["load_ms"]) / 1e3, "image": med(lambda r: r["image_ms"]) / 1e3,
        "prefill": turn("prefilled_tokens") / turn("prefill_tok_s"), "pp": turn("prefill_tok_s"),
        "tg": turn("decode_tok_s"), "ahead": ttft(True), "demand": ttft(False),
        "views": rs[0]["views"], "tokens": rs[0]["image_tokens"],
    }
import os
b, h = row(runs("base")), row(runs("head"))
i8 = row(runs("int8")) if os.path.exists(f"{out}/int8.1.json") else None
q8 = row(runs("kvq8")) if os.path.exists(f"{out}/kvq8.1.json") else None
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"768x1536 image: {h['views']} views, {h['tokens']} image tokens; 2.7B Q4_0 + so400m Q8_0 (random weights), "
      f"f16 KV cache unless said, {threads} threads, median of {reps}; CPU: {cpu}")
print()
print("| build | load | image (9 views) | prefill | decode | TTFT, image encoded ahead (5 s typing) | TTFT, on demand |")
print("|---|---:|---:|---:|---:|---:|---:|")
rows = [(f"{base} ({base_sha[:7]})", b), (f"this ({head_sha[:7]})", h)]
if i8:
    rows.append((f"this, --vit-int8", i8))
if q8:
    rows.append((f"this, q8_0 KV cache", q8))
for name, r in rows:
    print(f"| {name} | {r['load']:.2f} s | {r['image']:.1f} s | {r['prefill']:.1f} s ({r['pp']:.1f} tok/s) | "
          f"{r['tg']:.1f} tok/s | {r['ahead']:.1f} s | {r['demand']:.1f} s |")
for name, r in rows[1:]:
    print(f"| ratio ({name.split(' (')[0]} / base) | {r['load'] / b['load']:.2f}x | {r['image'] / b['image']:.2f}x | "
          f"{r['prefill'] / b['prefill']:.2f}x | {r['tg'] / b['tg']:.2f}x (speed) | {r['ahead'] / b['ahead']:.2f}x | "
          f"{r['demand'] / b['demand']:.2f}x |")
PY
