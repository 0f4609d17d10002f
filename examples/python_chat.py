#!/usr/bin/env python3
"""edgevl from Python: a streamed answer, a multi-turn session about an image, the tiling plan and
the image's embeddings. See docs/python.md.

    pip install ./bindings/python
    python examples/python_chat.py -m ~/.cache/edgevl/SmolLM2-135M-Instruct.Q4_1.gguf
    python examples/python_chat.py -m LLM.gguf --mmproj MMPROJ.gguf --image photo.jpg

Ctrl-C stops an answer; the session stays usable.
"""

import argparse
import sys

import edgevl


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", required=True, help="the LLM (GGUF)")
    ap.add_argument("--mmproj", help="the vision tower + projector (GGUF), for --image")
    ap.add_argument("--image", help="an image to ask about (needs --mmproj)")
    ap.add_argument("-p", "--prompt", default="Name three primary colours and say why they are called primary.")
    ap.add_argument("-n", "--max-tokens", type=int, default=128)
    ap.add_argument("-t", "--threads", type=int, default=None)
    ap.add_argument("-c", "--ctx", type=int, default=None)
    args = ap.parse_args()

    try:
        model = edgevl.Model(args.model, mmproj=args.mmproj, threads=args.threads, ctx=args.ctx)
    except (edgevl.ModelFileError, ValueError) as e:
        print(f"cannot load: {e}", file=sys.stderr)
        return 1
    print(f"# {model!r}, loaded in {model.load_ms:.0f} ms", file=sys.stderr)

    # One question, streamed: pieces arrive as tokens are generated (the GIL is released).
    messages = [{"role": "user", "content": args.prompt}]
    try:
        for piece in model.chat(messages, temperature=0, max_tokens=args.max_tokens, stream=True):
            print(piece, end="", flush=True)
    except KeyboardInterrupt:
        print(" [stopped]", end="")
    print()

    if args.image:
        # The tiling plan of the image (what it costs in the prompt), then a conversation about it.
        session = model.session()
        info = session.add_image(args.image)  # decoded and planned now, encoded in the background
        print(f"# {info['label']}: grid {info['grid'][0]}x{info['grid'][1]}"
              f"{' + global view' if info['thumbnail'] else ''} -> {info['tokens']} image tokens", file=sys.stderr)
        for question in ["What is in the picture?", "What colours stand out?"]:
            print(f"> {question}")
            print(session.ask(question, temperature=0, max_tokens=args.max_tokens))
        stats = session.stats()
        print(f"# ViT views encoded {stats['vit_tiles_encoded']}, prompt positions {stats['n_past']}"
              f"/{stats['n_ctx']}, follow-up reused {stats['last_turn']['reused_tokens']} positions",
              file=sys.stderr)
        emb = model.encode_image(args.image)  # cached: the ViT does not run again
        print(f"# embeddings {emb.shape} {emb.dtype}", file=sys.stderr)
    print(f"# a 1920x1080 photo under this project's relaxed tiling: {edgevl.tiles(1920, 1080)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
