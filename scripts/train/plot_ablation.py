#!/usr/bin/env python3
"""docs/tiling-ablation.png from docs/tiling-ablation.json: held-out accuracy (each task and the
mean) against mean image tokens per image, one point per tiling strategy.

    python3 -m venv ~/.cache/edgevl/venv-plot
    ~/.cache/edgevl/venv-plot/bin/pip install -r scripts/train/requirements-plot.txt
    ~/.cache/edgevl/venv-plot/bin/python scripts/train/plot_ablation.py [TABLE.json [OUT.png]]
"""

import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

DOCS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs")


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(DOCS, "tiling-ablation.json")
    dst = sys.argv[2] if len(sys.argv) > 2 else os.path.join(DOCS, "tiling-ablation.png")
    table = json.load(open(src))
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    markers = {"relaxed": "o", "llava-next": "s", "internvl": "^"}
    tasks = list(next(iter(table["arms"].values()))["accuracy"])
    for s, arm in table["arms"].items():
        x = arm["mean_image_tokens"]
        for t in tasks:
            acc = 100 * arm["accuracy"][t]
            ax.scatter([x], [acc], marker=markers.get(s, "o"), s=70 if t == "all" else 30,
                       color={"shapes": "tab:blue", "ocr": "tab:orange", "chart": "tab:green", "all": "black"}.get(t))
        ax.annotate(s, (x, 100 * arm["accuracy"]["all"]), textcoords="offset points", xytext=(6, -12))
    for t, c in {"shapes": "tab:blue", "ocr": "tab:orange", "chart": "tab:green", "all": "black"}.items():
        ax.scatter([], [], color=c, label="mean" if t == "all" else t)
    ax.set_xlabel("mean image tokens per held-out image")
    ax.set_ylabel("held-out accuracy through edgevl (%)")
    ax.set_title(f"Tiling ablation: {table['s2_images']} stage-2 images per arm, max {table['max_tiles']} tiles")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(dst)


if __name__ == "__main__":
    main()
