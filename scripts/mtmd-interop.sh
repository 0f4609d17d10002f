#!/usr/bin/env bash
# llama.cpp loads edgevl's random-weight files: llama-mtmd-cli runs a random LLM that has the lfm2
# image tokens in its vocabulary with an edgevl-written mmproj of the same width and encodes images;
# and it runs the SmolVLM files `edgevl convert --mmproj-out` writes (tiny random checkpoint).
#
#   scripts/mtmd-interop.sh                 # tiny shapes (LLM `tiny`, mmproj `siglip-tiny`): seconds
#   scripts/mtmd-interop.sh --so400m        # also SigLIP-so400m Q8_0 + bluelm-v-3b Q4_0 (~1.9 GB, minutes)
#
# Each run must show, in llama-mtmd-cli's log: the mmproj loaded as an lfm2 vision encoder of the
# expected width, the image's slice encoded to that width and decoded into the LLM, and the image
# wrapped in <|image_start|> ... <|image_end|> in the prompt; and llama-tokenize must read every
# lfm2 image token of the generated vocabulary as one token. Otherwise the script exits non-zero.
# Images: 384x384 (llama.cpp resizes it to 392x392, 28x28 patches: position embeddings resized
# from 27x27) and 1024x512 (one non-square slice); PNGs drawn by python3 (standard library only). Files go to $EDGEVL_CACHE/interop
# (default ~/.cache/edgevl/interop); logs are kept there. EDGEVL_BIN overrides the edgevl binary
# (default: a release build of this checkout); T threads (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
SO400M=0
for arg in "$@"; do
  case "$arg" in
    --so400m) SO400M=1 ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "mtmd-interop: unknown argument '$arg' (known: --so400m)" >&2; exit 2 ;;
  esac
done
T=${T:-2}
CACHE="${EDGEVL_CACHE:-$HOME/.cache/edgevl}"
WORK="$CACHE/interop"
mkdir -p "$WORK"
log() { echo "mtmd-interop: $*" >&2; }

BIN="$(scripts/build-llamacpp.sh llama-mtmd-cli llama-tokenize)"
MTMD="$BIN/llama-mtmd-cli"
TOKENIZE="$BIN/llama-tokenize"
if [ -z "${EDGEVL_BIN:-}" ]; then
  log "building edgevl (release)"
  cargo build --release -q -p edgevl-cli >&2
  EDGEVL_BIN="${CARGO_TARGET_DIR:-target}/release/edgevl"
fi

# --- images ---------------------------------------------------------------------------------
make_png() { # width height file
  python3 - "$@" <<'EOF'
import struct, sys, zlib
w, h, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rows = b"".join(
    b"\x00" + bytes(v for x in range(w) for v in ((x * 255) // w, (y * 255) // h, ((x // 32 + y // 32) % 2) * 200))
    for y in range(h)
)
chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
png += chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")
open(path, "wb").write(png)
EOF
}
SQUARE="$WORK/square-384x384.png"
WIDE="$WORK/wide-1024x512.png"
[ -f "$SQUARE" ] || make_png 384 384 "$SQUARE"
[ -f "$WIDE" ] || make_png 1024 512 "$WIDE"

# --- one check ------------------------------------------------------------------------------
failures=0
report() { # ok label what
  if [ "$1" = 1 ]; then echo "PASS $2: $3"; else echo "FAIL $2: $3"; failures=$((failures + 1)); fi
}
check() { # label llm mmproj width image slices [llama-mtmd-cli options...]
  local label=$1 llm=$2 mmproj=$3 width=$4 image=$5 slices=$6
  shift 6
  local out="$WORK/$label.$(basename "$image" .png).log"
  log "$label: llama-mtmd-cli on $(basename "$image") $* (log: $out)"
  local t0=$SECONDS rc=0
  "$MTMD" -m "$llm" --mmproj "$mmproj" --image "$image" -p "Describe the image." -n 4 --temp 0 \
    -t "$T" -c 4096 --chat-template chatml --no-warmup -v "$@" >"$out" 2>&1 || rc=$?
  local encoded decoded tokens ok=1
  # one "output embedding shape" line per slice the vision encoder ran on (a debug line: -v)
  encoded=$(grep -c "clip_encode: output embedding shape \[$width," "$out" || true)
  decoded=$(grep -c "image decoded (batch" "$out" || true)
  # image tokens = the rows of every slice's embedding ("output embedding shape [width, rows, 1]")
  tokens=$({ grep -o "output embedding shape \[$width, [0-9]*" "$out" || true; } | awk '{s += $NF} END {print s + 0}')
  # PROJ, WRAP_OPEN, WRAP_CLOSE: the projector and the text around an image (lfm2's by default)
  local proj=${PROJ:-lfm2} open=${WRAP_OPEN:-<|image_start|>} close=${WRAP_CLOSE:-<|image_end|>}
  grep -q "projector: *$proj" "$out" || { log "  FAIL: no 'projector: $proj' line"; ok=0; }
  grep -q "projection_dim: *$width\$" "$out" || { log "  FAIL: projection_dim is not $width"; ok=0; }
  [ "$rc" = 0 ] || { log "  FAIL: llama-mtmd-cli exited with $rc"; ok=0; }
  [ "$encoded" = "$slices" ] || { log "  FAIL: $encoded slice(s) encoded to width $width, expected $slices"; ok=0; }
  [ "$decoded" -ge 1 ] || { log "  FAIL: the image was not decoded into the LLM"; ok=0; }
  grep -qF "add_text: $open" "$out" && grep -qF "$close" "$out" ||
    { log "  FAIL: no $open ... $close in the prompt"; ok=0; }
  grep -E "load_hparams: (projector|projection_dim|patch_size)|copying image|output embedding shape|encoding done|image decoded" \
    "$out" | sed 's/^/    /' >&2 || true
  report "$ok" "$label $(basename "$image")" \
    "$encoded slice(s) encoded, $tokens image tokens decoded into the LLM ($((SECONDS - t0)) s)"
}

# llama.cpp's own tokenizer must read every image token of the vocabulary as one control token.
check_tokens() { # label llm
  local label=$1 llm=$2 text="<|image_start|><|image_end|><|img_thumbnail|>" n=3 r c ids count distinct
  for r in $(seq 1 16); do
    for c in $(seq 1 $((16 / r))); do text+="<|img_row_${r}_col_${c}|>"; n=$((n + 1)); done
  done
  ids=$("$TOKENIZE" -m "$llm" -p "$text" --ids --log-disable 2>/dev/null | tail -1)
  count=$(echo "$ids" | tr -d '[] ' | tr ',' '\n' | grep -c . || true)
  distinct=$(echo "$ids" | tr -d '[] ' | tr ',' '\n' | grep . | sort -u | wc -l)
  local ok=0
  [ "$count" = "$n" ] && [ "$distinct" = "$n" ] && ok=1
  report "$ok" "$label image tokens" "llama-tokenize reads the $n lfm2 image tokens as $count ids ($distinct distinct)"
}

gen() { # file args...
  local file=$1
  shift
  [ -f "$file" ] || "$EDGEVL_BIN" gen-random "$@" -o "$file"
}

# --- tiny: the LLM `tiny` (width 64) with image tokens + the mmproj `siglip-tiny` (projection 64)
TINY_LLM="$WORK/tiny-imgtok.q8_0.gguf"
TINY_MMPROJ="$WORK/siglip-tiny.f16.gguf"
rm -f "$TINY_LLM" "$TINY_MMPROJ" # always regenerated: they are what this checkout writes
gen "$TINY_LLM" --preset tiny --type q8_0 --image-tokens --seed 1
gen "$TINY_MMPROJ" --preset siglip-tiny --type f16 --seed 1
check_tokens tiny "$TINY_LLM"
check tiny "$TINY_LLM" "$TINY_MMPROJ" 64 "$SQUARE" 1
# Without the larger budget llama.cpp would slice this image into 512x512 tiles, which it cannot
# run at patch 14 (see docs/interop.md); with it the image is one 1036x504 slice.
check tiny "$TINY_LLM" "$TINY_MMPROJ" 64 "$WIDE" 1 --image-max-tokens 1024

# --- SmolVLM: `edgevl convert --mmproj-out` of the tiny random Idefics3 checkpoint (the model of
# tests/fixtures/tiny-smolvlm), LLM and mmproj both edgevl's, Q8_0 and F32 --------------------------
for scheme in q8_0 f32; do
  SMOL_LLM="$WORK/tiny-smolvlm.$scheme.gguf"
  SMOL_MMPROJ="$WORK/mmproj-tiny-smolvlm.$scheme.gguf"
  rm -f "$SMOL_LLM" "$SMOL_MMPROJ"
  "$EDGEVL_BIN" convert tests/fixtures/hf/tiny-smolvlm -o "$SMOL_LLM" --mmproj-out "$SMOL_MMPROJ" \
    --scheme "$scheme" --pre-tokenizer smollm -t "$T" 2>/dev/null
  # 384x384: 4x4 tiles of 512 + the overview (global image); 1024x512: 4x2 + 1; 64 tokens each.
  PROJ=idefics3 WRAP_OPEN="<fake_token_around_image><row_1_col_1>" WRAP_CLOSE="has_overview = 1" \
    check "smolvlm-$scheme" "$SMOL_LLM" "$SMOL_MMPROJ" 64 "$SQUARE" 17
  PROJ=idefics3 WRAP_OPEN="<fake_token_around_image><row_1_col_1>" WRAP_CLOSE="has_overview = 1" \
    check "smolvlm-$scheme" "$SMOL_LLM" "$SMOL_MMPROJ" 64 "$WIDE" 9
done

# --- so400m: SigLIP-so400m Q8_0 (ffn_down F16) + BlueLM-V-3B-shaped Q4_0 with image tokens ----
if [ "$SO400M" = 1 ]; then
  BIG_LLM="$CACHE/random/bluelm-v-3b-imgtok.q4_0.seed1.gguf"
  BIG_MMPROJ="$CACHE/random/siglip-so400m.q8_0.seed1.gguf"
  mkdir -p "$CACHE/random"
  gen "$BIG_LLM" --preset bluelm-v-3b --type q4_0 --image-tokens --seed 1
  gen "$BIG_MMPROJ" --preset siglip-so400m --type q8_0 --seed 1
  check_tokens so400m "$BIG_LLM"
  check so400m "$BIG_LLM" "$BIG_MMPROJ" 2560 "$SQUARE" 1
fi

if [ "$failures" -gt 0 ]; then
  log "$failures check(s) failed"
  exit 1
fi
log "all checks passed"
