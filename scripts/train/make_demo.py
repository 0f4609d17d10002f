#!/usr/bin/env python3
"""models/edgevl-demo/: the quick start's sample image, its question and the PyTorch model's
greedy answer (the reference the CI test `crates/edgevl-cli/tests/demo_model.rs` checks
edgevl against), and the Q8_0 mmproj.

    /root/venv-ref/bin/python scripts/train/make_demo.py --ckpt main/last.pt

The sample is chosen by a fixed rule, not by the answer: the first `test` shapes image that is
at least twice as wide as tall, at most 900 px wide, with a "What colour" question.
"""

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export_mmproj  # noqa: E402
import vlm  # noqa: E402
import vqa_data as data  # noqa: E402

OUT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "models", "edgevl-demo"))
STRATEGY, MAX_TILES, MAX_NEW = "relaxed", 9, 12


def pick():
    for i in range(1000):
        img, qs, _ = data.sample("test", "shapes", i)
        q = [q for q in qs if q["type"] == "colour"]
        if q and img.width >= 2 * img.height and img.width <= 900:
            return i, img, q[0]
    raise RuntimeError("no sample fits the rule")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default="main/last.pt")
    a = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    model = export_mmproj.load_vision(a.ckpt)
    export_mmproj.write(model, os.path.join(OUT, "mmproj-q8_0.gguf"), "q8_0")
    i, img, qa = pick()
    img.save(os.path.join(OUT, "sample.png"), optimize=True)
    llm, pr = vlm.load_llm(torch.float32), vlm.Prompter()
    with torch.no_grad():
        rows = model(vlm.views(img, STRATEGY, MAX_TILES))
    answer = vlm.greedy_answers(llm, pr, rows, [qa["question"]], MAX_NEW)[0]
    ref = {"image": "sample.png", "question": qa["question"], "answer": answer, "mmproj": "mmproj-q8_0.gguf",
           "strategy": STRATEGY, "max_tiles": MAX_TILES, "max_new": MAX_NEW, "truth": qa["answer"],
           "source": f"vqa_data.sample('test', 'shapes', {i})", "checkpoint": a.ckpt,
           "made_by": "scripts/train/make_demo.py (the PyTorch model: float32 ViT + projector, SmolLM2 Q4_1 dequantised)"}
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    print(json.dumps(ref, indent=1))


if __name__ == "__main__":
    main()
