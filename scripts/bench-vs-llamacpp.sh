#!/usr/bin/env bash
# edgevl vs llama.cpp on the same files, threads and machine, in one go; prints a markdown table
# (medians of -r runs, both figures and the ratio per row) on stdout, progress on stderr.
#
#   scripts/bench-vs-llamacpp.sh            # -p 512 -n 128 -r 5 -t 2
#   P=128 N=32 R=3 T=2 scripts/bench-vs-llamacpp.sh
#
# Models: SmolLM2-135M-Instruct Q4_1 (scripts/fetch-smollm2.sh) and a random-weight LLaMA with
# BlueLM-V-3B's shape in Q4_0 (`edgevl gen-random`, cached). llama-bench is built from the same
# llama.cpp sources as scripts/build-llamacpp.sh, with the CPU's instruction sets named explicitly
# instead of GGML_NATIVE: -march=native also enables AMX, whose kernels fault (SIGSEGV/SIGILL) on
# VMs that advertise AMX without supporting it. Peak RSS comes from /usr/bin/time -v (llama-bench
# and `edgevl bench` on the same -p/-n, so the same context of P + N positions; mmap'd pages count).
# EDGEVL_BIN overrides the edgevl binary (default: a release build of this checkout).
set -euo pipefail
cd "$(dirname "$0")/.."
P=${P:-512} N=${N:-128} R=${R:-5} T=${T:-2}
CACHE="${EDGEVL_CACHE:-$HOME/.cache/edgevl}"
VERSION=0.3.36
LCPP="$CACHE/llama.cpp-$VERSION"
log() { echo "bench-vs-llamacpp: $*" >&2; }

# --- llama-bench (cached) -------------------------------------------------------------------
BUILD="$LCPP/build-noamx-explicit"
if [ ! -x "$BUILD/bin/llama-bench" ]; then
  scripts/build-llamacpp.sh llama-tokenize >/dev/null # unpacks the sources (and installs cmake/ninja)
  flags=$(grep -m1 '^flags' /proc/cpuinfo)
  has() { [[ " $flags " == *" $1 "* ]] && echo ON || echo OFF; }
  log "building llama-bench into $BUILD"
  cmake -S "$LCPP/src" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF \
    -DGGML_AVX="$(has avx)" -DGGML_AVX2="$(has avx2)" -DGGML_FMA="$(has fma)" -DGGML_F16C="$(has f16c)" \
    -DGGML_BMI2="$(has bmi2)" -DGGML_AVX_VNNI="$(has avx_vnni)" -DGGML_AVX512="$(has avx512f)" \
    -DGGML_AVX512_VBMI="$(has avx512vbmi)" -DGGML_AVX512_VNNI="$(has avx512_vnni)" \
    -DGGML_AVX512_BF16="$(has avx512_bf16)" -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF >&2
  cmake --build "$BUILD" --target llama-bench -j "$(nproc)" >&2
fi
LLAMA_BENCH="$BUILD/bin/llama-bench"

# --- edgevl ---------------------------------------------------------------------------------
if [ -z "${EDGEVL_BIN:-}" ]; then
  log "building edgevl (release)"
  cargo build --release -q -p edgevl-cli >&2
  EDGEVL_BIN="${CARGO_TARGET_DIR:-target}/release/edgevl"
fi

# --- models ---------------------------------------------------------------------------------
SMOL=$(scripts/fetch-smollm2.sh)
BLUE="$CACHE/random/bluelm-v-3b.q4_0.seed1.gguf"
if [ ! -f "$BLUE" ]; then
  mkdir -p "$CACHE/random"
  log "generating $BLUE (about 1.5 GB)"
  "$EDGEVL_BIN" gen-random --preset bluelm-v-3b --type q4_0 --seed 1 -o "$BLUE"
fi

# --- runs -----------------------------------------------------------------------------------
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
run_pair() { # name model
  local name=$1 model=$2
  log "$name: llama-bench -p $P -n $N -r $R -t $T"
  # Also the scripted check that llama.cpp loads the file: a failure here stops the script.
  /usr/bin/time -v -o "$OUT/$name.lcpp.time" \
    "$LLAMA_BENCH" -m "$model" -p "$P" -n "$N" -r "$R" -t "$T" -o json >"$OUT/$name.lcpp.json"
  log "$name: edgevl bench -p $P -n $N -r $R -t $T"
  /usr/bin/time -v -o "$OUT/$name.edgevl.time" \
    "$EDGEVL_BIN" bench -m "$model" -p "$P" -n "$N" -r "$R" -t "$T" --json --no-bandwidth >"$OUT/$name.edgevl.json"
  # The bandwidth probe separately, so its buffer stays out of the measured peak RSS.
  "$EDGEVL_BIN" bench -m "$model" -p 0 -n 0 -t "$T" --json >"$OUT/$name.bw.json"
}
run_pair smollm2-135m-q4_1 "$SMOL"
run_pair bluelm-v-3b-q4_0 "$BLUE"

# --- table ----------------------------------------------------------------------------------
python3 - "$OUT" "$P" "$N" "$T" <<'PY'
import json, re, statistics, subprocess, sys, datetime
out, p, n, t = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]

def rss_mb(path):
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(path).read())
    return int(m.group(1)) / 1024

def lcpp(name):
    res = {}
    for test in json.load(open(f"{out}/{name}.lcpp.json")):
        tokens = test["n_prompt"] + test["n_gen"]
        rates = [tokens * 1e9 / ns for ns in test["samples_ns"]]
        key = "pp" if test["n_gen"] == 0 else "tg"
        res[key] = (statistics.median(rates), statistics.stdev(rates) if len(rates) > 1 else 0.0)
    return res

def ours(name):
    j = json.load(open(f"{out}/{name}.edgevl.json"))
    bw = json.load(open(f"{out}/{name}.bw.json"))
    j["read_bandwidth_gbs"] = bw["read_bandwidth_gbs"]
    j["tg_roofline_tok_s"] = bw["tg_roofline_tok_s"]
    res = {k[:2]: (j[k]["median"], j[k]["stddev"]) for k in ("pp_tok_s", "tg_tok_s") if j.get(k)}
    return res, j

cpu = next((l.split(":", 1)[1].strip() for l in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines() if l.startswith("Model name")), "?")
print(f"Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC  ")
print(f"CPU: {cpu}  ")
print(f"Threads: {t} (both engines); medians of the runs, ± standard deviation; tok/s.\n")
print("| model | test | llama.cpp | edgevl | edgevl / llama.cpp |")
print("|---|---|---:|---:|---:|")
notes = []
for name in ("smollm2-135m-q4_1", "bluelm-v-3b-q4_0"):
    a = lcpp(name)
    b, j = ours(name)
    for key, label in (("pp", f"pp{p}"), ("tg", f"tg{n}")):
        if key in a and key in b:
            print(f"| {name} | {label} | {a[key][0]:.2f} ± {a[key][1]:.2f} | {b[key][0]:.2f} ± {b[key][1]:.2f} | {b[key][0] / a[key][0]:.2f}x |")
    ra, rb = rss_mb(f"{out}/{name}.lcpp.time"), rss_mb(f"{out}/{name}.edgevl.time")
    print(f"| {name} | peak RSS (MB, lower is better) | {ra:.0f} | {rb:.0f} | {rb / ra:.2f}x |")
    if j.get("tg_roofline_tok_s") and "tg" in b:
        notes.append(f"- {name}: {j['bytes_per_token'] / 1e6:.0f} MB of weights per token, read bandwidth {j['read_bandwidth_gbs']:.1f} GB/s "
                     f"({t} threads) -> roofline {j['tg_roofline_tok_s']:.1f} tok/s; edgevl tg at {100 * b['tg'][0] / j['tg_roofline_tok_s']:.0f}%, "
                     f"llama.cpp at {100 * a['tg'][0] / j['tg_roofline_tok_s']:.0f}%. edgevl kernels: {j['simd']}.")
print()
print("\n".join(notes))
PY
