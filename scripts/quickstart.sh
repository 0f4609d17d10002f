#!/usr/bin/env bash
# Set up on a fresh machine and ask a question about an image: fetch SmolLM2-135M-Instruct Q4_1,
# build edgevl in release mode, answer with the committed demo vision model
# (models/edgevl-demo, trained by scripts/train/, docs/training.md), then show how the image was
# tiled.  Usage: scripts/quickstart.sh [--image FILE] ["your question"]
# Without --image it asks about the committed sample image; without a question it asks the
# question of models/edgevl-demo/reference.json.
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO=models/edgevl-demo
IMAGE="$DEMO/sample.png"
if [ "${1:-}" = "--image" ]; then
  [ $# -ge 2 ] || { echo "usage: scripts/quickstart.sh [--image FILE] [\"question\"]" >&2; exit 2; }
  IMAGE="$2"; shift 2
fi
ref() { sed -n "s/^ *\"$1\": \"\(.*\)\",\{0,1\}$/\1/p" "$DEMO/reference.json" | head -n 1; }
QUESTION="${1:-$(ref question)}"
MODEL=$(scripts/fetch-smollm2.sh)
cargo build --release --quiet -p edgevl-cli
BIN="${CARGO_TARGET_DIR:-target}/release/edgevl"
echo "Q: $QUESTION  (image: $IMAGE)" >&2
"$BIN" run -m "$MODEL" --mmproj "$DEMO/mmproj-q8_0.gguf" --image "$IMAGE" -p "$QUESTION" \
  -n 32 --temp 0 --max-tiles 9
"$BIN" tiles --image "$IMAGE" --max-tiles 9
