#!/usr/bin/env bash
# The web page of `edgevl serve` in headless Chromium (not in CI): installs Debian's chromium and
# playwright (in the cache's venv) if missing, serves the tiny VLM of tests/fixtures, drops an
# image, checks the tile grid and costs, asks, checks the answer streams, keeps a screenshot.
# Usage: scripts/test-server-page.sh [SCREENSHOT.png]   (default: $EDGEVL_CACHE/edgevl-page.png)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/serve-lib.sh
SHOT="${1:-$CACHE/edgevl-page.png}"
command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
VENV="$CACHE/venv-server"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c "import playwright" 2>/dev/null || "$VENV/bin/pip" install --quiet playwright
build_edgevl
img=$(mktemp --suffix=.png)
python3 - "$img" <<'PY'
import sys, zlib, struct
w, h = 900, 500
def chunk(k, d): return struct.pack(">I", len(d)) + k + d + struct.pack(">I", zlib.crc32(k + d) & 0xFFFFFFFF)
rows = b"".join(b"\0" + bytes(v for x in range(w) for v in ((x * 255) // w, (y * 255) // h, 128)) for y in range(h))
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                              + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
PY
log=$(mktemp /tmp/edgevl-page.XXXXXX.log)
start_server "$log" -m tests/fixtures/tiny-llama-spm/model.gguf --mmproj tests/fixtures/tiny-vlm/mmproj.gguf -c 4096 -t 2
rc=0
"$VENV/bin/python" scripts/server_page_check.py "$SERVER_URL" "$img" "$SHOT" || rc=$?
stop_server || rc=1
rm -f "$img"
echo "test-server-page: screenshot $SHOT" >&2
exit $rc
