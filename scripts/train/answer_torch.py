#!/usr/bin/env python3
"""The PyTorch model's greedy answers (float32, as edgevl's `--temp 0` prompt; vlm.greedy_answers).

    # the held-out questions of eval_edgevl.py, for the agreement figure:
    /root/venv-ref/bin/python scripts/train/answer_torch.py --ckpt main/last.pt --per-task 500 -o torch.json
    # one image and question (the quick start's committed reference):
    /root/venv-ref/bin/python scripts/train/answer_torch.py --ckpt main/last.pt --image FILE -q "..." -o ref.json
"""

import argparse
import json
import os
import sys
import time

import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import eval_edgevl  # noqa: E402
import export_mmproj  # noqa: E402
import vlm  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--per-task", type=int, default=500)
    ap.add_argument("--image")
    ap.add_argument("-q", "--question")
    ap.add_argument("--strategy", default="relaxed")
    ap.add_argument("--max-tiles", type=int, default=9)
    ap.add_argument("--max-new", type=int, default=12)
    ap.add_argument("-o", "--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(1)
    model = export_mmproj.load_vision(a.ckpt)
    llm, pr = vlm.load_llm(torch.float32), vlm.Prompter()
    if a.image:
        items = [("user", 0, Image.open(a.image).convert("RGB"), [{"question": a.question}])]
    else:
        items = eval_edgevl.heldout(a.per_task)
    rows, t0 = [], time.time()
    for task, i, img, qs in items:
        with torch.no_grad():
            image_rows = model(vlm.views(img, a.strategy, a.max_tiles))
        answers = vlm.greedy_answers(llm, pr, image_rows, [q["question"] for q in qs], a.max_new)
        for q, ans in zip(qs, answers):
            rows.append({"task": task, "index": i, "question": q["question"], "torch": ans})
        print(f"{len(rows)} questions, {time.time() - t0:.0f} s", file=sys.stderr, end="\r")
    out = {"ckpt": a.ckpt, "strategy": a.strategy, "max_tiles": a.max_tiles, "max_new": a.max_new, "rows": rows}
    if a.image:
        out.update({"image": os.path.basename(a.image), "question": a.question, "answer": rows[0]["torch"]})
    json.dump(out, open(a.out, "w"), indent=1)
    print(json.dumps(rows[:3], indent=1))


if __name__ == "__main__":
    main()
