#!/usr/bin/env bash
# Regenerate the llama.cpp golden files for SmolLM2-135M-Instruct Q4_1 in tests/fixtures/smollm2/:
#   perplexity.json  llama-perplexity on tests/fixtures/text/devils-dictionary.txt, -c 512 -t 2
#   perplexity_q8_0.json  the same with a Q8_0 KV cache (-ctk q8_0 -ctv q8_0 -fa on), first 4 chunks
#   greedy.json      llama-completion -no-cnv --temp 0 -n 32 on 5 prompts: text and token ids
#   perplexity_q4_k_m.json  llama-perplexity, first 4 chunks, on `edgevl convert --scheme q4_k` of SmolLM2's
#                    Hugging Face directory (scripts/make-smollm2-hf.sh): Q4_K_M, mostly Q5_0 (576 is not 256k)
# Builds llama.cpp (scripts/build-llamacpp.sh) and fetches the model (scripts/fetch-smollm2.sh) first.
# Needs python3 with numpy (the sdist's gguf-py is used to cross-check the decoded text).
# Takes about 4 minutes on 2 cores. CI does not run this: it compares against the committed files.
# Usage: scripts/gen_llamacpp_goldens.sh [--only perplexity|perplexity-q8_0|greedy|perplexity-q4_k_m]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
bin="$("$here/build-llamacpp.sh" llama-perplexity llama-completion llama-tokenize | tail -n 1)"
model="$("$here/fetch-smollm2.sh" | tail -n 1)"
src="$(dirname "$(dirname "$bin")")/src"
python3 -c 'import numpy' 2>/dev/null || python3 -m pip install --quiet numpy >&2
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
q4km="$work/SmolLM2-135M-Instruct.edgevl-q4_k_m.gguf"
cargo build --release -p edgevl-cli --manifest-path "$repo/Cargo.toml" >&2
"${CARGO_TARGET_DIR:-$repo/target}/release/edgevl" convert "$("$here/make-smollm2-hf.sh" | tail -n 1)" \
  -o "$q4km" --scheme q4_k -t 2 2>/dev/null
PYTHONPATH="$src/gguf-py${PYTHONPATH:+:$PYTHONPATH}" python3 "$here/llamacpp_goldens.py" \
  --bin "$bin" --model "$model" \
  --text "$repo/tests/fixtures/text/devils-dictionary.txt" \
  --out "$repo/tests/fixtures/smollm2" --q4km-model "$q4km" "$@"
