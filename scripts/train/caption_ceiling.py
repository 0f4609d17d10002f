#!/usr/bin/env python3
"""The frozen LLM's ceiling: SmolLM2-135M-Instruct answers held-out questions with the image's exact
caption in place of the image rows, embedded as text tokens. No projector can give it more than the
words of a perfect caption, so this bounds what training the vision side alone can reach.

- shapes: "The image shows a green triangle, a blue circle." (colour and shape are in it; where and
  bigger are not: they measure the prior);
- ocr: "The image shows a red sign that says "535"." (every sign, with its colour);
- chart: "The image shows a bar chart. Bar E is 98 high. Bar G is 11 high." (the heights in percent).

Scores per question type: strict and lenient as eval_edgevl.py, and `contains` (the answer's words anywhere in
the first line, e.g. 'The sign says "535" and it is a').

    /root/venv-ref/bin/python scripts/train/caption_ceiling.py --images 40 [--task ocr]
"""

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vlm  # noqa: E402
import vqa_data as data  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=40, help="held-out images of the task (test split, from 0)")
    ap.add_argument("--task", default="shapes", choices=["shapes", "ocr", "chart"])
    ap.add_argument("--max-new", type=int, default=12)
    a = ap.parse_args()
    torch.set_num_threads(1)
    llm, pr = vlm.load_llm(torch.float32), vlm.Prompter()
    score = {}
    for i in range(a.images):
        img, qs, meta = data.sample("test", a.task, i)
        rows = llm.embed(pr.encode(caption(a.task, meta)))
        answers = vlm.greedy_answers(llm, pr, rows, [q["question"] for q in qs], a.max_new)
        for q, ans in zip(qs, answers):
            data.tally(score, q, ans)
    print(json.dumps(score, indent=1))


def caption(task, meta):
    """The exact caption of a sample, from its generator's metadata."""
    if task == "shapes":
        objs = sorted(meta["objects"], key=lambda o: o["x"])
        return "The image shows " + ", ".join(f"a {o['colour']} {o['shape']}" for o in objs) + ".\n"
    if task == "ocr":
        signs = [f'a {c} sign that says "{t}"' for c, t in zip(meta["sign_colours"], meta["texts"])]
        return "The image shows " + " and ".join(signs) + ".\n"
    bars = " ".join(f"Bar {b} is {round(100 * v)} high." for b, v in zip(meta["labels"], meta["values"]))
    return "The image shows a bar chart. " + bars + "\n"


if __name__ == "__main__":
    main()
