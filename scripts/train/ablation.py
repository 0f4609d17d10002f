#!/usr/bin/env python3
"""The paper's Table 2 on our data: the same model trained three times with the same samples and
steps under relaxed, LLaVA-NeXT and InternVL tiling (budget 16 tiles each), then evaluated
through edgevl with the strategy it was trained with (docs/tiling-ablation.md).

    # the run in docs/tiling-ablation.md (from the shipped mmproj, on training images no earlier run saw):
    nice -n 10 /root/venv-ref/bin/python scripts/train/ablation.py --init models/edgevl-demo/mmproj-q8_0.gguf \
        --offset 300000 --s2 100 --per-task 100 --out docs/tiling-ablation.json
    ~/.cache/edgevl/venv-plot/bin/python scripts/train/plot_ablation.py   # the figure (matplotlib venv)

Every arm starts from the same checkpoint (a stage-1 one has seen no tiling; a shipped mmproj
has), then runs stage 2 on the same training images in the same order
(`train.py --s0 0 --s1 0 --s2 N --strategy S --max-tiles 16`). The arms run one after another,
each resumable (its folder under the train cache). Results go to
${EDGEVL_CACHE:-~/.cache/edgevl}/train/ablation/STRATEGY.json and, summarised, to
docs/tiling-ablation.json (mean image tokens per held-out image from the tiling rules, accuracy
per task from eval_edgevl.py).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import eval_edgevl  # noqa: E402
import vlm  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
STRATEGIES = ("relaxed", "llava-next", "internvl")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--init", default="main/stage1.pt")
    ap.add_argument("--s2", type=int, default=200, help="stage 2 training images per arm")
    ap.add_argument("--per-task", type=int, default=200, help="held-out questions per task per arm")
    ap.add_argument("--max-tiles", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--offset", type=int, default=0,
                    help="index of the first training image (past those the init checkpoint saw)")
    ap.add_argument("--edgevl", default=os.path.join(ROOT, "target", "release", "edgevl"),
                    help="the edgevl binary the evaluation runs")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "tiling-ablation.json"))
    ap.add_argument("--arm", choices=STRATEGIES, help="run only this arm (several arms can run as parallel processes)")
    ap.add_argument("--summarise", action="store_true", help="only write the summary of finished arms")
    a = ap.parse_args()
    out_dir = os.path.join(vlm.TRAIN_CACHE, "ablation")
    os.makedirs(out_dir, exist_ok=True)
    py = sys.executable
    images = eval_edgevl.heldout(a.per_task)
    table = {"init": a.init, "offset": a.offset, "s2_images": a.s2, "max_tiles": a.max_tiles,
             "per_task": a.per_task, "arms": {}}
    for s in STRATEGIES:
        run = f"abl-{s}-{a.s2}"
        res = os.path.join(out_dir, f"{s}-{a.s2}-{a.per_task}.json")
        if a.arm not in (None, s):
            continue
        if a.summarise and not os.path.exists(res):
            print(f"arm {s}: no result yet ({res})", file=sys.stderr)
            continue
        if not a.summarise:
            run_arm(a, py, s, run, res, out_dir)
        summary = json.load(open(res))["summary"]
        tokens = [vlm.plan(img.width, img.height, s, a.max_tiles)[9] for _, _, img, _ in images]
        train_tokens = {}
        for line in open(os.path.join(vlm.TRAIN_CACHE, run, "log.jsonl")):
            rec = json.loads(line)
            train_tokens[rec["done"]] = rec["tokens"]
        table["arms"][s] = {"mean_image_tokens": statistics.mean(tokens),
                            "train_image_tokens_per_image": sum(train_tokens.values()) / a.s2,
                            "accuracy": {t: v["accuracy"] for t, v in summary["tasks"].items()},
                            "questions": {t: v["questions"] for t, v in summary["tasks"].items()}}
    if a.arm is None:
        json.dump(table, open(a.out, "w"), indent=1)
    print(json.dumps(table, indent=1))


def run_arm(a, py, s, run, res, out_dir):
    """Train (resumable), export Q8_0 and evaluate one arm."""
    subprocess.check_call([py, os.path.join(HERE, "train.py"), "--run", run, "--init", a.init, "--s0", "0", "--s1", "0",
                           "--s2", str(a.s2), "--strategy", s, "--max-tiles", str(a.max_tiles),
                           "--threads", str(a.threads), "--offset", str(a.offset)])
    mmproj = os.path.join(out_dir, f"{run}.gguf")
    subprocess.check_call([py, os.path.join(HERE, "export_mmproj.py"), f"{run}/last.pt", "--type", "q8_0", "-o", mmproj])
    if not os.path.exists(res):
        subprocess.check_call([py, os.path.join(HERE, "eval_edgevl.py"), "--mmproj", mmproj, "--strategy", s,
                               "--max-tiles", str(a.max_tiles), "--per-task", str(a.per_task), "--check-run", "0",
                               "--edgevl", a.edgevl, "-o", res])


if __name__ == "__main__":
    main()
