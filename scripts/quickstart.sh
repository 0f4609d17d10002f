#!/usr/bin/env bash
# Set up on a fresh machine and answer a prompt: fetch SmolLM2-135M-Instruct Q4_1, build edgevl
# in release mode, run it.  Usage: scripts/quickstart.sh ["your question"]
set -euo pipefail
cd "$(dirname "$0")/.."
PROMPT="${1:-Name three primary colours and say why they are called primary.}"
MODEL=$(scripts/fetch-smollm2.sh)
cargo build --release --quiet -p edgevl-cli
exec target/release/edgevl run -m "$MODEL" -p "$PROMPT" -n 128 --temp 0
