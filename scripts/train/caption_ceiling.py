#!/usr/bin/env python3
"""The frozen LLM's ceiling: SmolLM2-135M-Instruct answers the held-out shapes questions with the
scene's exact caption ("The image shows a green triangle, a blue circle") in place of the image
rows, embedded as text tokens. No projector can give it more than the words of a perfect caption,
so this bounds what training the vision side alone can reach on the colour and shape questions
(where and bigger are not in the caption; they measure the prior).

    /root/venv-ref/bin/python scripts/train/caption_ceiling.py --images 40
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
    ap.add_argument("--images", type=int, default=40, help="held-out shapes images (test split, from 0)")
    ap.add_argument("--max-new", type=int, default=12)
    a = ap.parse_args()
    torch.set_num_threads(1)
    llm, pr = vlm.load_llm(torch.float32), vlm.Prompter()
    score = {}
    for i in range(a.images):
        img, qs, meta = data.sample("test", "shapes", i)
        objs = sorted(meta["objects"], key=lambda o: o["x"])
        caption = "The image shows " + ", ".join(f"a {o['colour']} {o['shape']}" for o in objs) + ".\n"
        rows = llm.embed(pr.encode(caption))
        answers = vlm.greedy_answers(llm, pr, rows, [q["question"] for q in qs], a.max_new)
        for q, ans in zip(qs, answers):
            s = score.setdefault(q["type"], {"strict": 0, "lenient": 0, "questions": 0})
            s["questions"] += 1
            s["strict"] += int(data.normalise(ans) == data.normalise(q["answer"]))
            s["lenient"] += int(data.lenient(ans, q["answer"], q["type"]))
    print(json.dumps(score, indent=1))


if __name__ == "__main__":
    main()
