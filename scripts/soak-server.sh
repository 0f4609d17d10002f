#!/usr/bin/env bash
# Soak `edgevl serve` on loopback: CLIENTS concurrent clients for SECONDS, 20% malformed or
# hostile (scripts/server_soak.py), against the tiny VLM of tests/fixtures (text and images,
# nothing to download). Fails on a panic, an answer other than 2xx/4xx/503, a server that does
# not drain on SIGTERM, or the heap in use growing 256 bytes a request or more from idle to idle
# (scripts/server_soak.py says how).
# Usage: scripts/soak-server.sh [CLIENTS=32] [SECONDS=600] [extra `edgevl serve` flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS="${1:-32}"; SECONDS_="${2:-600}"; shift $(( $# > 2 ? 2 : $# ))
source scripts/serve-lib.sh
build_edgevl
log=$(mktemp /tmp/edgevl-soak.XXXXXX.log)
# glibc's per-thread caches (tcache) keep freed chunks counted as in use, a bounded amount per thread that grows as
# threads first meet each size; off for the soak, so the heap in use counts live allocations only.
export GLIBC_TUNABLES="${GLIBC_TUNABLES:+$GLIBC_TUNABLES:}glibc.malloc.tcache_count=0"
start_server "$log" -m tests/fixtures/tiny-llama-spm/model.gguf --mmproj tests/fixtures/tiny-vlm/mmproj.gguf \
  -c 4096 --chunk 64 -t 2 --parallel 4 --queue 16 --image-cache-mb 64 "$@"
rc=0
python3 scripts/server_soak.py --url "$SERVER_URL" --clients "$CLIENTS" --seconds "$SECONDS_" --images \
  --json "${SOAK_JSON:-/dev/null}" || rc=$?
stop_server || rc=1
echo "soak-server: server log in $log" >&2
exit $rc
