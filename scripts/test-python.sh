#!/usr/bin/env bash
# The Python bindings' tests (bindings/python/tests, pytest): makes a venv in the cache with
# maturin, pytest, numpy and Pillow, installs the bindings with `pip install ./bindings/python`
# (with the test profile's settings, into the workspace's target folder, so the crates `cargo test`
# built are reused), builds the `edgevl` CLI the tests compare with, and runs pytest.
# Run by scripts/test.sh; EDGEVL_SKIP_PYTHON=1 skips it there. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv-lib.sh
CACHE="${EDGEVL_CACHE:-$HOME/.cache/edgevl}"
VENV="$CACHE/venv-py"
TARGET="${CARGO_TARGET_DIR:-target}"
ensure_venv "$VENV" "maturin, pytest, numpy, PIL" "maturin>=1.5,<2" pytest numpy pillow
scripts/fetch-smollm2.sh >/dev/null
cargo build --profile test -q -p edgevl-cli --bin edgevl
# --no-build-isolation: the venv's maturin builds it (no per-run download of the build backend;
# the backend runs `maturin` from PATH). The dev profile at opt-level 3 has exactly the test
# profile's settings (Cargo.toml), so the crates `cargo test` built are reused and only the
# bindings compile. (`--profile test` itself cannot be used: `cargo rustc --profile test` builds a
# test harness, not a library.)
PATH="$VENV/bin:$PATH" MATURIN_PEP517_ARGS="--profile dev" CARGO_PROFILE_DEV_OPT_LEVEL=3 \
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-build-isolation --force-reinstall \
  --no-deps ./bindings/python
EDGEVL_BIN="$TARGET/debug/edgevl" "$VENV/bin/python" -m pytest -q bindings/python/tests "$@"
