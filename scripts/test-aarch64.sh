#!/usr/bin/env bash
# aarch64 CI step (issue 8): cross-build the crates it runs for aarch64-unknown-linux-gnu with Debian's Rust and
# run under qemu-user (correctness only; emulation says nothing about speed):
#   1. the kernel tests (incl. tests/neon.rs) with qemu's default CPU (NEON + dotprod: the `sdot` kernels) and
#      again with QEMU_CPU=cortex-a53 (NEON without dotprod: the plain NEON kernels); EDGEVL_EXPECT_SIMD makes
#      tests/neon.rs fail if the detected level is not the one expected (no silent scalar fallback);
#   2. the GGUF and tokenizer tests and one small model test (tiny Qwen2/Llama decoders against transformers);
#   3. end to end: the aarch64 `edgevl` answers a greedy prompt on SmolLM2-135M-Instruct Q4_1 with the same text
#      (and token count) as the x86-64 build, and gives the same perplexity to the last bit.
# Installs the toolchain with apt when missing (idempotent). Budget: 25 minutes on 2 cores.
# Usage: scripts/test-aarch64.sh   (CARGO_TARGET_DIR is honoured; default target/aarch64-cross)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
TARGET=aarch64-unknown-linux-gnu
# .ci/run exports the host's expected level; each emulated step below names the one it expects.
unset EDGEVL_EXPECT_SIMD
start=$(date +%s)
step() { echo "== [$(($(date +%s) - start))s] $*"; }

# --- toolchain -------------------------------------------------------------------------------------------------
need_install=0
for f in /usr/bin/rustc /usr/bin/cargo /usr/bin/aarch64-linux-gnu-gcc /usr/bin/qemu-aarch64; do
  [ -x "$f" ] || need_install=1
done
[ -d /usr/lib/rustlib/$TARGET/lib ] || need_install=1
if [ "$need_install" = 1 ]; then
  step "installing the aarch64 toolchain (apt)"
  dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rustc-web cargo-web libstd-rust-web-dev:arm64 \
    gcc-aarch64-linux-gnu g++-aarch64-linux-gnu qemu-user >/dev/null
fi
# Debian's Rust (it has the aarch64 standard library; rustup's toolchain here has not). Linker and runner
# (`qemu-aarch64 -L /`) come from .cargo/config.toml.
export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
XCARGO=/usr/bin/cargo
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/aarch64-cross}"
step "toolchain: $($RUSTC --version); $(qemu-aarch64 --version | head -1)"

# --- build -------------------------------------------------------------------------------------------------------
# The `test` profile (opt-level 3, debug assertions and overflow checks on) for the tests and the binary alike,
# so everything is compiled once.
# Only the crates run below: the others hold no architecture-specific code, and the Python bindings would need an
# aarch64 libpython to link.
step "cross-building the crates run under qemu (all targets) for $TARGET"
$XCARGO build -p edgevl-kernels -p edgevl-gguf -p edgevl-tokenizer -p edgevl-model -p edgevl-cli --all-targets \
  --profile test --target $TARGET

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
xtest() { $XCARGO test --target $TARGET "$@"; }

# --- kernel tests, twice -------------------------------------------------------------------------------------
# kernels.rs' force_scalar_env_selects_the_scalar_table re-executes its own binary, which qemu-user cannot do
# without binfmt_misc; the same check is run directly instead (process_table_level with EDGEVL_FORCE_SCALAR=1).
step "edgevl-kernels, qemu default CPU (NEON + dotprod)"
EDGEVL_EXPECT_SIMD=neon-dotprod xtest -p edgevl-kernels -- --skip force_scalar_env_selects_the_scalar_table
EDGEVL_FORCE_SCALAR=1 xtest -p edgevl-kernels --test kernels -- --exact process_table_level --nocapture \
  >"$tmp/force-scalar.txt"
cat "$tmp/force-scalar.txt"
grep -q "process kernel level: Scalar" "$tmp/force-scalar.txt" || { echo "FAIL: EDGEVL_FORCE_SCALAR=1 ignored" >&2; exit 1; }
step "edgevl-kernels NEON tests, QEMU_CPU=cortex-a53 (NEON without dotprod)"
QEMU_CPU=cortex-a53 EDGEVL_EXPECT_SIMD=neon xtest -p edgevl-kernels --test neon --test kernels \
  -- --skip force_scalar_env_selects_the_scalar_table

# --- GGUF, tokenizer, one small model ------------------------------------------------------------------------
MODEL=$(scripts/fetch-smollm2.sh)
step "edgevl-gguf and edgevl-tokenizer"
xtest -p edgevl-gguf -p edgevl-tokenizer
step "edgevl-model: tiny decoders against transformers"
xtest -p edgevl-model --test tiny_models

# --- end to end: same greedy text as x86-64 -----------------------------------------------------------------
step "end to end: greedy SmolLM2-135M-Instruct Q4_1, aarch64 (qemu) vs x86-64"
PROMPT="Explain in a few sentences why the sky is blue."
args=(run -m "$MODEL" -p "$PROMPT" -n 16 --temp 0 -t 2)
# The x86-64 binary with the project's own (rustup) toolchain, in the x86 target directory (`target`, which the
# x86 test step has already filled, unless EDGEVL_X86_TARGET_DIR says otherwise).
X86_DIR="${EDGEVL_X86_TARGET_DIR:-$PWD/target}"
env -u RUSTC -u RUSTDOC CARGO_TARGET_DIR="$X86_DIR" cargo build --profile test -p edgevl-cli
"$X86_DIR/debug/edgevl" "${args[@]}" --stats-json "$tmp/x86.json" >"$tmp/x86.txt"
qemu-aarch64 -L / "$CARGO_TARGET_DIR/$TARGET/debug/edgevl" "${args[@]}" --stats-json "$tmp/arm.json" >"$tmp/arm.txt"
gen() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["generated_tokens"])' "$1"; }
echo "x86-64 : $(cat "$tmp/x86.txt") [$(gen "$tmp/x86.json") tokens]"
echo "aarch64: $(cat "$tmp/arm.txt") [$(gen "$tmp/arm.json") tokens]"
if ! cmp -s "$tmp/x86.txt" "$tmp/arm.txt" || [ "$(gen "$tmp/x86.json")" != "$(gen "$tmp/arm.json")" ]; then
  echo "FAIL: the aarch64 greedy answer differs from x86-64's" >&2
  exit 1
fi
[ "$(gen "$tmp/arm.json")" -gt 0 ] || { echo "FAIL: no tokens generated" >&2; exit 1; }

# --- perplexity: the same figure, to the last bit, as x86-64 --------------------------------------------------
# Every kernel computes its scalar twin's f32 sequence (the packed x86 kernels included), so NEON and x86-64 agree
# exactly; 2 chunks of 128 tokens keep the emulated run short.
step "perplexity: SmolLM2-135M-Instruct Q4_1, aarch64 (qemu) vs x86-64"
pargs=(perplexity -m "$MODEL" -f tests/fixtures/text/devils-dictionary.txt -c 128 --chunks 2 -t 2 --json)
"$X86_DIR/debug/edgevl" "${pargs[@]}" >"$tmp/x86-ppl.json" 2>/dev/null
qemu-aarch64 -L / "$CARGO_TARGET_DIR/$TARGET/debug/edgevl" "${pargs[@]}" >"$tmp/arm-ppl.json" 2>/dev/null
echo "x86-64 : $(cat "$tmp/x86-ppl.json")"
echo "aarch64: $(cat "$tmp/arm-ppl.json")"
cmp -s "$tmp/x86-ppl.json" "$tmp/arm-ppl.json" || { echo "FAIL: the aarch64 perplexity differs from x86-64's" >&2; exit 1; }
step "aarch64: all passed"
