#!/usr/bin/env bash
# `edgevl serve` against the official `openai` Python client (in a venv this script makes in the
# cache): on SmolLM2 at temperature 0, a non-streamed and a streamed chat both give exactly
# `edgevl run`'s greedy text; then the 1-minute soak (scripts/soak-server.sh 16 60). Run by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/serve-lib.sh
MODEL=$(scripts/fetch-smollm2.sh)
source scripts/venv-lib.sh
VENV="$CACHE/venv-server"
ensure_venv "$VENV" openai openai
build_edgevl
PROMPT="Name three primary colours and say why they are called primary."
N=48
expected=$(mktemp)
"$EDGEVL" run -m "$MODEL" -p "$PROMPT" --temp 0 -n $N -t 2 -c 2048 >"$expected" 2>/dev/null
log=$(mktemp /tmp/edgevl-openai.XXXXXX.log)
start_server "$log" -m "$MODEL" -t 2 -c 2048 --api-key test-key
rc=0
"$VENV/bin/python" scripts/server_openai_check.py "$SERVER_URL" test-key "$PROMPT" $N "$expected" || rc=$?
stop_server || rc=1
rm -f "$expected"
[ $rc = 0 ] || { echo "test-server-openai: server log in $log" >&2; exit $rc; }
rm -f "$log"
if [ "${SKIP_SOAK:-0}" != 1 ]; then
  scripts/soak-server.sh 16 60
fi
