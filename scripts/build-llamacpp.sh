#!/usr/bin/env bash
# Build llama.cpp (the reference peer) from the llama-cpp-python 0.3.36 sdist into a cache directory
# outside the repo. Prints the bin directory on stdout. Idempotent: a finished build is reused.
# Usage: scripts/build-llamacpp.sh [targets...]
#   LLAMACPP_VARIANT=native (default): GGML_NATIVE=ON (this CPU's best, AMX compiled out);
#   LLAMACPP_VARIANT=avx2: GGML_NATIVE=OFF with AVX, AVX2, FMA, F16C, BMI2 on and AVX-512, AVX-VNNI
#   and AMX off — what a Zen 3 / older Intel user's llama.cpp runs, to compare with edgevl under
#   EDGEVL_MAX_SIMD=avx2.
#   LLAMACPP_VARIANT=avxvnni: the avx2 build plus AVX-VNNI (GGML_AVX_VNNI=ON) — an Intel laptop's
#   (Alder Lake on: AVX-VNNI, no AVX-512) llama.cpp, to compare with EDGEVL_MAX_SIMD=avx-vnni.
set -euo pipefail
VERSION=0.3.36
CACHE="${EDGEVL_CACHE:-$HOME/.cache/edgevl}/llama.cpp-$VERSION"
# Some VMs advertise AMX in cpuid but fault on its instructions (seen here: llama-perplexity died
# with SIGILL in tinygemm_kernel_amx). GGML_NATIVE=ON ignores GGML_AMX_*=OFF (-march=native
# turns AMX on), so the AMX code is compiled out with -mno-amx-* as well.
VARIANT="${LLAMACPP_VARIANT:-native}"
NOAMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
case "$VARIANT" in
  native)
    BUILD="$CACHE/build-native-noamx"
    FLAGS=(-DGGML_NATIVE=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
      -DCMAKE_C_FLAGS="$NOAMX" -DCMAKE_CXX_FLAGS="$NOAMX") ;;
  avx2|avxvnni)
    BUILD="$CACHE/build-$VARIANT"
    AVX_VNNI=OFF; [ "$VARIANT" = avxvnni ] && AVX_VNNI=ON
    FLAGS=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
      -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF
      -DGGML_AVX_VNNI=$AVX_VNNI -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF) ;;
  *) echo "build-llamacpp: unknown LLAMACPP_VARIANT '$VARIANT' (native, avx2, avxvnni)" >&2; exit 1 ;;
esac
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(llama-bench llama-perplexity llama-completion llama-tokenize llama-quantize llama-mtmd-cli)
mkdir -p "$CACHE"
missing=0
for t in "${TARGETS[@]}"; do [ -x "$BUILD/bin/$t" ] || missing=1; done
if [ $missing = 0 ]; then echo "$BUILD/bin"; exit 0; fi
command -v cmake >/dev/null && command -v ninja >/dev/null || {
  echo "build-llamacpp: installing cmake and ninja" >&2
  (apt-get update -qq && apt-get install -y -qq cmake ninja-build) >&2
}
if [ ! -d "$CACHE/src" ]; then
  tmp=$(mktemp -d)
  python3 -m pip install --quiet scikit-build-core >&2
  python3 -m pip download --quiet --no-binary :all: --no-deps --no-build-isolation \
    "llama-cpp-python==$VERSION" -d "$tmp" >&2
  tar -xzf "$tmp"/llama_cpp_python-*.tar.gz -C "$tmp"
  mv "$tmp"/llama_cpp_python-$VERSION/vendor/llama.cpp "$CACHE/src.part"
  # keep the converter's python package too (convert_hf_to_gguf.py lives in the source tree)
  mv "$CACHE/src.part" "$CACHE/src"
  rm -rf "$tmp"
fi
cmake -S "$CACHE/src" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF "${FLAGS[@]}" >&2
cmake --build "$BUILD" --target "${TARGETS[@]}" -j "$(nproc)" >&2
echo "$BUILD/bin"
