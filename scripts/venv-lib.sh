# Sourced by the test scripts that need Python packages:
#   ensure_venv DIR "IMPORTS" PACKAGE...   -> a venv at DIR where `import IMPORTS` works, made (or
#                                             remade) with the packages when it does not
ensure_venv() {
  local venv="$1" imports="$2"
  shift 2
  if "$venv/bin/python" -c "import $imports" 2>/dev/null; then
    return 0
  fi
  rm -rf "$venv"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    # Debian's python3 ships venv apart.
    apt-get install -y -qq python3-venv >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null; }
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$@"
}
