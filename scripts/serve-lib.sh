# Sourced by the server scripts: build edgevl (test profile, optimised) and start `edgevl serve` on a free port.
#   start_server LOG ARGS...   -> sets SERVER_PID and SERVER_URL, waits for /health (model loaded)
#   stop_server                -> SIGTERM, waits for the drain; fails if it did not exit 0 or panicked
set -euo pipefail
CACHE="${EDGEVL_CACHE:-$HOME/.cache/edgevl}"
TARGET="${CARGO_TARGET_DIR:-target}"
# The test profile (opt-level 3): after `cargo test` the binary is already built.
EDGEVL="$TARGET/debug/edgevl"

build_edgevl() {
  cargo build --profile test -q -p edgevl-cli --bin edgevl >&2
}

start_server() {
  SERVER_LOG="$1"; shift
  "$EDGEVL" serve --host 127.0.0.1 --port 0 "$@" 2>"$SERVER_LOG" &
  SERVER_PID=$!
  trap 'kill $SERVER_PID 2>/dev/null || true' EXIT
  SERVER_URL=""
  for _ in $(seq 600); do
    SERVER_URL=$(sed -n 's/.*listening on \(http:\/\/[0-9.:]*\).*/\1/p' "$SERVER_LOG" | head -1)
    if [ -n "$SERVER_URL" ] && python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1] + '/health', timeout=5)" "$SERVER_URL" 2>/dev/null; then
      echo "server: $SERVER_URL (pid $SERVER_PID)" >&2
      return 0
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$SERVER_LOG" >&2; echo "server: exited before it was ready" >&2; return 1; }
    sleep 0.1
  done
  echo "server: not ready after 60 s" >&2
  return 1
}

stop_server() {
  kill -TERM "$SERVER_PID"
  local rc=0
  wait "$SERVER_PID" || rc=$?
  trap - EXIT
  if grep -q "panicked" "$SERVER_LOG"; then
    grep -n "panicked" "$SERVER_LOG" >&2
    echo "server: a thread panicked" >&2
    return 1
  fi
  [ "$rc" = 0 ] || { tail -5 "$SERVER_LOG" >&2; echo "server: exit status $rc after SIGTERM" >&2; return 1; }
  echo "server: drained and stopped" >&2
}
