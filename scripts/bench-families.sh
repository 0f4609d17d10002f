#!/usr/bin/env bash
# Memory and speed of the public families edgevl runs (docs/models.md, "Memory and speed here"), on
# random-weight files with their real shapes (speed does not depend on the values):
#   - InternVL3-1B: `gen-random --preset internvl3-1b` (Qwen2.5-0.5B decoder) + `internvl3-1b-vision`
#     (InternViT-300M at 448, pixel shuffle, mlp1);
#   - SmolVLM-256M: `smolvlm-256m` (SmolLM2-135M shape) + `smolvlm-256m-vision` (SigLIP-B/16 at 512).
# Both in Q8_0 (the type of the GGUF pairs published for llama.cpp; the towers' rows that are not a
# multiple of 32 stay f16). Per family: the LLM's pp512 / tg128 beside llama-bench on the same file,
# thread count and machine (medians, ± standard deviation), peak RSS of both, the ViT's time per view
# (ViT batch 1 and 4) and the end-to-end run on a 1024x768 image with the family's own tiling
# (`edgevl bench --image`: load, image processing, prefill, decode, time to first token).
#
#   scripts/bench-families.sh                 # R=3 T=2, this CPU's best SIMD level
#   R=1 T=2 scripts/bench-families.sh
# Prints markdown on stdout, progress on stderr. EDGEVL_BIN overrides the edgevl binary.
set -euo pipefail
cd "$(dirname "$0")/.."
R=${R:-3} T=${T:-2}
CACHE="${EDGEVL_CACHE:-$HOME/.cache/edgevl}"
log() { echo "bench-families: $*" >&2; }

LBIN="$(scripts/build-llamacpp.sh llama-bench)"
if [ -z "${EDGEVL_BIN:-}" ]; then
  log "building edgevl (release)"
  cargo build --release -q -p edgevl-cli >&2
  EDGEVL_BIN="${CARGO_TARGET_DIR:-target}/release/edgevl"
fi
mkdir -p "$CACHE/random"
gen() { # file args...: generated once, cached
  [ -f "$1" ] || { log "generating $1"; "$EDGEVL_BIN" gen-random "${@:2}" -o "$1" >&2; }
}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
python3 - "$OUT/photo-1024x768.png" <<'PY'
import struct, sys, zlib
w, h = 1024, 768
rows = b"".join(b"\x00" + bytes(v for x in range(w) for v in ((x * 255) // w, (y * 255) // h, (x ^ y) & 255)) for y in range(h))
chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
open(sys.argv[1], "wb").write(png + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))
PY

for fam in internvl3-1b smolvlm-256m; do
  llm="$CACHE/random/$fam.q8_0.seed1.gguf" vis="$CACHE/random/$fam-vision.q8_0.seed1.gguf"
  gen "$llm" --preset "$fam" --type q8_0 --seed 1
  gen "$vis" --preset "$fam-vision" --type q8_0 --seed 1
  log "$fam: llama-bench -p 512 -n 128 -r $R -t $T"
  /usr/bin/time -v -o "$OUT/$fam.lcpp.time" "$LBIN/llama-bench" -m "$llm" -p 512 -n 128 -r "$R" -t "$T" -o json \
    >"$OUT/$fam.lcpp.json"
  log "$fam: edgevl bench -p 512 -n 128 -r $R -t $T"
  /usr/bin/time -v -o "$OUT/$fam.edgevl.time" "$EDGEVL_BIN" bench -m "$llm" -p 512 -n 128 -r "$R" -t "$T" --json --no-bandwidth \
    >"$OUT/$fam.edgevl.json"
  log "$fam: edgevl bench --mmproj --vit-batch 1,4"
  "$EDGEVL_BIN" bench -m "$llm" --mmproj "$vis" --vit-batch 1,4 -p 0 -n 0 -t "$T" --json --no-bandwidth \
    >"$OUT/$fam.vit.json"
  log "$fam: end to end on a 1024x768 image"
  /usr/bin/time -v -o "$OUT/$fam.e2e.time" "$EDGEVL_BIN" bench -m "$llm" --mmproj "$vis" --image "$OUT/photo-1024x768.png" \
    --vit-batch 4 --chunk 128 --typing-s 2 -n 32 -t "$T" --json --no-bandwidth >"$OUT/$fam.e2e.json"
done

python3 - "$OUT" "$T" <<'PY'
import json, re, statistics, subprocess, sys
out, t = sys.argv[1], sys.argv[2]
rss = lambda p: int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(p).read()).group(1)) / 1024
cpu = next((l.split(":", 1)[1].strip() for l in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines() if l.startswith("Model name")), "?")
print(f"CPU: {cpu}; {t} threads (both engines); Q8_0 random-weight files with the real shapes.\n")
print("| model | test | llama.cpp | edgevl | edgevl / llama.cpp |")
print("|---|---|---:|---:|---:|")
e2e_rows = []
for fam in ("internvl3-1b", "smolvlm-256m"):
    lc = {}
    for test in json.load(open(f"{out}/{fam}.lcpp.json")):
        tokens = test["n_prompt"] + test["n_gen"]
        rates = [tokens * 1e9 / ns for ns in test["samples_ns"]]
        lc["pp" if test["n_gen"] == 0 else "tg"] = (statistics.median(rates), statistics.pstdev(rates))
    ev = json.load(open(f"{out}/{fam}.edgevl.json"))
    simd = ev.get("simd", "?")
    for key, label in (("pp", "pp512"), ("tg", "tg128")):
        a, b = lc[key], (ev[f"{key}_tok_s"]["median"], ev[f"{key}_tok_s"]["stddev"])
        print(f"| {fam} | {label} (tok/s) | {a[0]:.1f} ± {a[1]:.1f} | {b[0]:.1f} ± {b[1]:.1f} | {b[0] / a[0]:.2f}x |")
    ra, rb = rss(f"{out}/{fam}.lcpp.time"), rss(f"{out}/{fam}.edgevl.time")
    print(f"| {fam} | peak RSS, ctx 640 (MB) | {ra:.0f} | {rb:.0f} | {rb / ra:.2f}x |")
    for row in json.load(open(f"{out}/{fam}.vit.json"))["vit"]:
        m = row["ms_per_tile"]
        print(f"| {fam}-vision | ViT + projector, {row['views']} view(s) at ViT batch {row['vit_batch']} (ms a view) | | {m['median']:.0f} ± {m['stddev']:.0f} | |")
    e = json.load(open(f"{out}/{fam}.e2e.json"))
    turn = e["turn"]
    ttft = {r["encode_ahead"]: r["ttft_ms"] for r in e["ttft"]}
    e2e_rows.append(f"| {fam} | {e['grid']} ({e['views']} views) | {e['image_tokens']} | {e['load_ms'] / 1e3:.2f} s | {e['image_ms'] / 1e3:.2f} s "
                    f"| {turn['prefill_tok_s']:.0f} tok/s | {turn['decode_tok_s']:.1f} tok/s | {ttft[False] / 1e3:.2f} s / {ttft[True] / 1e3:.2f} s "
                    f"| {rss(f'{out}/{fam}.e2e.time'):.0f} MB |")
print(f"\nedgevl kernels: {simd}.\n")
print("End to end, a 1024x768 image with the family's own tiling, ViT batch 4, prefill chunk 128, 32 tokens decoded "
      "(`edgevl bench --image`); time to first token after 2 s of typing, the image encoded on demand / ahead:\n")
print("| model | grid | image tokens | load | image processing | prefill | decode | time to first token (on demand / ahead) | peak RSS |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
print("\n".join(e2e_rows))
PY
